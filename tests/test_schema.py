"""Specification of pyml_jupyter.serving.schema: one behaviour per test."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _load_schema_module():
    """The package under test. It is a leaf of the serving runtime, so it is loaded from its folder when the
    rest of pyml_jupyter cannot be imported (e.g. while other modules are being changed)."""
    try:
        from pyml_jupyter.serving import schema
    except ImportError:
        import importlib.util

        folder = Path(__file__).resolve().parents[1] / "pyml_jupyter" / "serving" / "schema"
        spec = importlib.util.spec_from_file_location("pyml_jupyter_serving_schema", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        schema = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = schema  # dataclasses and pickle look the module up by name
        spec.loader.exec_module(schema)
    return schema


S = _load_schema_module()
ColumnSpec = S.ColumnSpec
DataFrameSchema = S.DataFrameSchema
Enforced = S.Enforced
SchemaError = S.SchemaError
TensorSchema = S.TensorSchema
TensorSpec = S.TensorSpec
dataframe_from_json = S.dataframe_from_json
dataframe_to_json = S.dataframe_to_json
schema_from_dict = S.schema_from_dict
tensors_from_json = S.tensors_from_json
tensors_to_json = S.tensors_to_json

pytestmark = pytest.mark.filterwarnings("error")  # a pandas/numpy warning on these paths is a bug


def enforce(spec: dict, df: pd.DataFrame) -> Enforced:
    return DataFrameSchema.from_spec(spec).enforce(df)


def problem_of(spec: dict, df: pd.DataFrame) -> dict:
    with pytest.raises(SchemaError) as info:
        enforce(spec, df)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def pandas3_string_dtype() -> pd.StringDtype:
    """pandas 3's default ``str`` dtype (NaN as the missing value), created explicitly on pandas 2."""
    return pd.StringDtype("pyarrow", na_value=np.nan)


# ----------------------------------------------------------------------------------------- infer


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                   "float32", "float64", "bool"])
def test_infer_maps_numpy_dtypes_to_their_own_names_not_nullable(dtype):
    df = pd.DataFrame({"x": np.array([0, 1], dtype=dtype)})
    assert DataFrameSchema.infer(df).columns == (ColumnSpec("x", dtype, False),)


def test_infer_float_with_nan_is_nullable():
    assert DataFrameSchema.infer(pd.DataFrame({"x": [1.0, np.nan]})).columns[0] == ColumnSpec("x", "float64", True)


def test_infer_pandas_nullable_int_is_nullable_even_without_missing_values():
    df = pd.DataFrame({"x": pd.array([1, 2], dtype="Int64"), "y": pd.array([1, None], dtype="Int32")})
    assert DataFrameSchema.infer(df) == DataFrameSchema.from_spec({"x": "int64?", "y": "int32?"})


def test_infer_pandas_boolean_and_float64_are_nullable():
    df = pd.DataFrame({"b": pd.array([True, None], dtype="boolean"), "f": pd.array([1.5, None], dtype="Float64")})
    assert DataFrameSchema.infer(df) == DataFrameSchema.from_spec({"b": "bool?", "f": "float64?"})


def test_infer_object_strings_are_string_and_nullable_only_with_none():
    df = pd.DataFrame({"a": ["x", "y"], "b": ["x", None]}, dtype=object)
    assert DataFrameSchema.infer(df) == DataFrameSchema.from_spec({"a": "string", "b": "string?"})


@pytest.mark.parametrize("dtype", [pd.StringDtype("python"), pd.StringDtype("pyarrow"), pandas3_string_dtype()],
                         ids=["python", "pyarrow", "pandas3-str"])
def test_infer_pandas_string_dtypes_are_string(dtype):
    df = pd.DataFrame({"a": pd.array(["x", "y"], dtype=dtype), "b": pd.array(["x", None], dtype=dtype)})
    assert DataFrameSchema.infer(df) == DataFrameSchema.from_spec({"a": "string", "b": "string?"})


def test_infer_datetimes_of_any_unit_are_datetime():
    df = pd.DataFrame({"ns": pd.to_datetime(["2024-01-01", None]),
                       "s": np.array(["2024-01-01"], dtype="datetime64[s]").repeat(2)})
    assert DataFrameSchema.infer(df) == DataFrameSchema.from_spec({"ns": "datetime?", "s": "datetime"})


def test_infer_categorical_of_strings_is_string():
    assert DataFrameSchema.infer(pd.DataFrame({"c": pd.Categorical(["a", "b"])})).columns[0].dtype == "string"


def test_infer_mixed_object_column_is_object():
    df = pd.DataFrame({"m": pd.Series([1, "a"], dtype=object)})
    assert DataFrameSchema.infer(df).columns[0].dtype == "object"


def test_infer_rejects_non_string_column_names():
    with pytest.raises(SchemaError, match="astype\\(str\\)"):
        DataFrameSchema.infer(pd.DataFrame(np.zeros((2, 2))))


# ---------------------------------------------------------------------------- specs and value objects


def test_from_spec_question_mark_means_nullable():
    schema = DataFrameSchema.from_spec({"age": "int64", "city": "string?"})
    assert schema.columns == (ColumnSpec("age", "int64"), ColumnSpec("city", "string", True))


def test_from_spec_accepts_numpy_pandas_and_python_dtypes():
    schema = DataFrameSchema.from_spec({"a": np.int32, "b": np.dtype("float32"), "c": pd.Int64Dtype(),
                                        "d": pd.StringDtype(), "e": pd.BooleanDtype(), "f": str, "g": "Int16"})
    assert schema == DataFrameSchema.from_spec({"a": "int32", "b": "float32", "c": "int64?", "d": "string",
                                                "e": "bool?", "f": "string", "g": "int16?"})


def test_from_spec_rejects_unknown_dtype_naming_the_column():
    with pytest.raises(SchemaError, match="'age'.*unsupported dtype 'integr'"):
        DataFrameSchema.from_spec({"age": "integr"})


def test_from_spec_returns_a_schema_unchanged():
    schema = DataFrameSchema.from_spec({"a": "int64"})
    assert DataFrameSchema.from_spec(schema) is schema


def test_dataframe_schema_to_dict_format():
    schema = DataFrameSchema.from_spec({"age": "int64", "city": "string?"})
    assert schema.to_dict() == {"type": "dataframe", "columns": [
        {"name": "age", "dtype": "int64", "nullable": False},
        {"name": "city", "dtype": "string", "nullable": True}]}


def test_dataframe_schema_round_trips_through_json_dict():
    schema = DataFrameSchema.from_spec({"age": "int64", "city": "string?", "when": "datetime"})
    again = schema_from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema and hash(again) == hash(schema)


def test_schemas_with_different_nullability_or_order_are_not_equal():
    assert DataFrameSchema.from_spec({"a": "int64"}) != DataFrameSchema.from_spec({"a": "int64?"})
    ab = DataFrameSchema.from_spec({"a": "int64", "b": "bool"})
    assert ab != DataFrameSchema.from_spec({"b": "bool", "a": "int64"})


def test_dataframe_schema_repr_shows_the_spec_and_rebuilds_it():
    schema = DataFrameSchema.from_spec({"age": "int64", "city": "string?"})
    assert repr(schema) == "DataFrameSchema({'age': 'int64', 'city': 'string?'})"
    assert eval(repr(schema), {"DataFrameSchema": DataFrameSchema}) == schema


def test_names_lists_columns_in_order():
    assert DataFrameSchema.from_spec({"b": "int64", "a": "int64"}).names == ["b", "a"]


def test_duplicate_column_in_schema_is_rejected():
    with pytest.raises(SchemaError, match="declared twice"):
        DataFrameSchema([ColumnSpec("a", "int64"), ColumnSpec("a", "float64")])


# What both kinds of schema share (their common base): each case runs for a DataFrame and a tensor schema.
BOTH_KINDS = {
    "dataframe": (DataFrameSchema, {"a": "int64", "b": "string?"}, ColumnSpec("a", "int64")),
    "tensor": (TensorSchema, {"a": ("float32", (-1, 3)), "b": ("string", (-1,))}, TensorSpec("a", "int64", (-1,))),
}


@pytest.fixture(params=list(BOTH_KINDS))
def kind(request):
    return BOTH_KINDS[request.param]


def test_either_schema_round_trips_through_its_dict_form(kind):
    cls, spec, _ = kind
    schema = cls.from_spec(spec)
    again = cls.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema and hash(again) == hash(schema) and again.to_dict()["type"] == cls.kind
    assert cls.from_spec(schema.to_dict()) == schema and schema_from_dict(schema.to_dict()) == schema


def test_either_schema_iterates_its_specs_in_order(kind):
    cls, spec, _ = kind
    schema = cls(spec)
    assert [s.name for s in schema] == schema.names == list(spec) and len(schema) == len(spec)


def test_either_schema_is_built_from_a_list_of_its_specs(kind):
    cls, _, one = kind
    assert cls.from_spec([one]).names == [one.name] == cls([one]).names


def test_either_schema_refuses_a_name_declared_twice(kind):
    cls, _, one = kind
    with pytest.raises(SchemaError, match=f"'{one.name}' is declared twice"):
        cls([one, one])


def test_either_schema_refuses_what_is_not_one_of_its_specs(kind):
    cls, _, one = kind
    with pytest.raises(SchemaError, match=f"expected a {type(one).__name__}, got str"):
        cls([one, "b"])


def test_either_schema_refuses_the_dict_form_of_the_other_kind(kind):
    cls, spec, _ = kind
    other = next(c for c, _, _ in BOTH_KINDS.values() if c is not cls)
    with pytest.raises(SchemaError, match="not a .* schema: type"):
        cls.from_dict({"type": other.kind, cls.kind: []})


def test_either_schema_says_how_to_declare_it_when_given_something_else(kind):
    cls, _, _ = kind
    with pytest.raises(SchemaError, match="schema must be a mapping of .* such as .*, got int"):
        cls.from_spec(3)


def test_schemas_of_the_two_kinds_are_never_equal():
    assert DataFrameSchema([]) != TensorSchema([]) and TensorSchema([]) != DataFrameSchema([])


# --------------------------------------------------------------------------- enforce: columns


def test_enforce_names_every_missing_column():
    with pytest.raises(SchemaError) as info:
        enforce({"age": "int64", "city": "string", "score": "float64?"}, pd.DataFrame({"city": ["x"]}))
    assert [p["field"] for p in info.value.problems] == ["age", "score"]
    assert "missing column 'age' (int64)" in str(info.value)
    assert "missing column 'score' (float64?)" in str(info.value)


def test_enforce_drops_extra_columns_and_reports_them():
    result = enforce({"a": "int64"}, pd.DataFrame({"a": [1], "extra": [2], "more": ["x"]}))
    assert list(result.data.columns) == ["a"]
    assert result.ignored == ["extra", "more"]


def test_enforce_puts_columns_in_schema_order():
    result = enforce({"a": "int64", "b": "string"}, pd.DataFrame({"b": ["x"], "a": [1]}))
    assert list(result.data.columns) == ["a", "b"]


def test_enforce_keeps_the_input_index():
    df = pd.DataFrame({"a": [1, 2, 3]}, index=pd.Index(["r", "s", "r"], name="key"))
    out = enforce({"a": "float64"}, df).data
    pd.testing.assert_index_equal(out.index, df.index)


def test_enforce_does_not_mutate_or_share_memory_with_the_input():
    df = pd.DataFrame({"a": np.array([1, 2], dtype="int64"), "s": ["x", "y"], "f": [1.0, 2.0]})
    before = df.copy()
    out = enforce({"a": "int64", "s": "string", "f": "float64"}, df).data
    out.iloc[0, 0], out.iloc[0, 1], out.iloc[0, 2] = 99, "z", 9.0
    pd.testing.assert_frame_equal(df, before)


def test_enforce_collects_problems_across_columns_and_raises_once():
    with pytest.raises(SchemaError) as info:
        enforce({"a": "int64", "b": "float64", "c": "string"},
                pd.DataFrame({"a": [1.5], "b": ["x"], "c": [3]}))
    assert [p["field"] for p in info.value.problems] == ["a", "b", "c"]


def test_enforce_reports_duplicate_input_columns():
    df = pd.DataFrame([[1, 2]], columns=["a", "a"])
    assert "appears 2 times" in problem_of({"a": "int64"}, df)["error"]


def test_enforce_empty_frame_comes_out_with_schema_dtypes():
    spec = {"i": "int64", "n": "int32?", "f": "float32", "b": "bool?", "s": "string", "d": "datetime"}
    out = enforce(spec, pd.DataFrame({name: [] for name in spec})).data
    assert len(out) == 0
    assert [str(t) for t in out.dtypes] == ["int64", "Int32", "float32", "boolean", "object", "datetime64[ns]"]


def test_enforce_rejects_non_dataframe():
    with pytest.raises(SchemaError, match="expected a pandas DataFrame"):
        DataFrameSchema.from_spec({"a": "int64"}).enforce({"a": [1]})


# --------------------------------------------------------------------------- enforce: integers


def test_int32_is_widened_to_int64_and_noted():
    result = enforce({"age": "int64"}, pd.DataFrame({"age": np.array([1, 2], dtype="int32")}))
    assert result.data["age"].dtype == np.int64
    assert result.casts == ["age: int32 -> int64"]


def test_int64_narrows_to_int32_when_values_fit():
    out = enforce({"a": "int32"}, pd.DataFrame({"a": [1, -5]})).data
    assert out["a"].dtype == np.int32 and out["a"].tolist() == [1, -5]


def test_int64_to_int32_overflow_is_an_error_naming_the_column():
    problem = problem_of({"a": "int32"}, pd.DataFrame({"a": [1, 2**40]}))
    assert problem["field"] == "a"
    assert "outside the int32 range" in problem["error"] and str(2**40) in problem["error"]


def test_negative_values_do_not_fit_unsigned():
    assert "outside the uint8 range" in problem_of({"a": "uint8"}, pd.DataFrame({"a": [-1, 3]}))["error"]


def test_integral_floats_are_accepted_as_int():
    out = enforce({"a": "int64"}, pd.DataFrame({"a": [1.0, 2.0]})).data
    assert out["a"].dtype == np.int64 and out["a"].tolist() == [1, 2]


def test_non_integral_floats_in_int_column_are_an_error():
    problem = problem_of({"a": "int64"}, pd.DataFrame({"a": [1.0, 2.5]}))
    assert "non-integral values such as 2.5" in problem["error"]


def test_int_column_that_became_float_after_nan_is_an_error_when_not_nullable():
    problem = problem_of({"x": "int64"}, pd.DataFrame({"x": [1, None, 3]}))  # pandas makes this float64
    assert problem["field"] == "x"
    assert "column 'x' has 1 missing value but is declared int64 (not nullable)" in problem["error"]
    assert "declare it 'int64?'" in problem["error"]


def test_int_column_that_became_float_after_nan_becomes_nullable_int_with_na():
    out = enforce({"x": "int64?"}, pd.DataFrame({"x": [1, None, 3]})).data
    assert out["x"].dtype == pd.Int64Dtype()
    assert out["x"].tolist() == [1, pd.NA, 3]


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA], ids=["None", "NaN", "NA"])
def test_nullable_int_accepts_any_missing_marker_in_object_columns(missing):
    out = enforce({"x": "int16?"}, pd.DataFrame({"x": pd.Series([1, missing], dtype=object)})).data
    assert out["x"].dtype == pd.Int16Dtype() and out["x"].isna().tolist() == [False, True]


def test_nullable_int_input_is_delivered_as_numpy_int_when_declared_not_nullable():
    out = enforce({"x": "int64"}, pd.DataFrame({"x": pd.array([1, 2], dtype="Int64")})).data
    assert out["x"].dtype == np.int64


def test_large_json_integers_stay_exact():
    big = 2**53 + 1
    out = enforce({"x": "int64?"}, pd.DataFrame({"x": pd.Series([big, None], dtype=object)})).data
    assert out["x"][0] == big


def test_strings_in_int_column_are_an_error():
    problem = problem_of({"a": "int64"}, pd.DataFrame({"a": ["1", "2"]}))
    assert "declared int64 but holds str values such as '1'" in problem["error"]


def test_bools_are_not_ints():
    assert "holds bool values" in problem_of({"a": "int64"}, pd.DataFrame({"a": [True, False]}))["error"]


# ----------------------------------------------------------------------------- enforce: floats


def test_float64_is_narrowed_to_declared_float32():
    result = enforce({"f": "float32"}, pd.DataFrame({"f": [0.5, 1.5]}))
    assert result.data["f"].dtype == np.float32
    assert result.casts == ["f: float64 -> float32"]


def test_float32_is_widened_to_declared_float64():
    out = enforce({"f": "float64"}, pd.DataFrame({"f": np.array([0.5], dtype="float32")})).data
    assert out["f"].dtype == np.float64


def test_ints_are_accepted_as_float():
    out = enforce({"f": "float64"}, pd.DataFrame({"f": [1, 2]})).data
    assert out["f"].dtype == np.float64 and out["f"].tolist() == [1.0, 2.0]


def test_nan_in_non_nullable_float_column_is_an_error_naming_the_column():
    problem = problem_of({"score": "float64"}, pd.DataFrame({"score": [1.0, np.nan]}))
    assert problem["field"] == "score" and "declare it 'float64?'" in problem["error"]


def test_nullable_float_keeps_nan_and_turns_na_into_nan():
    df = pd.DataFrame({"a": [1.0, np.nan], "b": pd.array([1.0, None], dtype="Float64")})
    out = enforce({"a": "float64?", "b": "float64?"}, df).data
    assert out["a"].dtype == np.float64 and out["b"].dtype == np.float64
    assert np.isnan(out["b"][1])


def test_strings_in_float_column_are_an_error_naming_the_column_and_suggesting_a_fix():
    problem = problem_of({"price": "float64"}, pd.DataFrame({"price": ["1.5", "cheap"]}))
    assert problem["field"] == "price"
    assert "column 'price' is declared float64 but holds str values" in problem["error"]
    assert "pd.to_numeric" in problem["error"]


def test_values_too_large_for_float32_are_an_error():
    assert "too large for float32" in problem_of({"f": "float32"}, pd.DataFrame({"f": [1e300]}))["error"]


# ------------------------------------------------------------------------------ enforce: bools


def test_bool_is_delivered_as_numpy_bool():
    out = enforce({"b": "bool"}, pd.DataFrame({"b": pd.Series([True, False], dtype=object)})).data
    assert out["b"].dtype == np.bool_


def test_nullable_bool_is_delivered_as_pandas_boolean_with_na():
    out = enforce({"b": "bool?"}, pd.DataFrame({"b": [True, None, False]})).data
    assert out["b"].dtype == pd.BooleanDtype() and out["b"].tolist() == [True, pd.NA, False]


def test_zero_one_ints_are_accepted_as_bool():
    assert enforce({"b": "bool"}, pd.DataFrame({"b": [0, 1]})).data["b"].tolist() == [False, True]


def test_other_ints_are_not_bool():
    assert "other than 0 and 1 such as 2" in problem_of({"b": "bool"}, pd.DataFrame({"b": [0, 2]}))["error"]


# ---------------------------------------------------------------------------- enforce: strings


@pytest.mark.parametrize("dtype", [object, pd.StringDtype("python"), pd.StringDtype("pyarrow"),
                                   pandas3_string_dtype()], ids=["object", "python", "pyarrow", "pandas3-str"])
def test_strings_are_delivered_as_object_python_str_with_none_for_missing(dtype):
    df = pd.DataFrame({"s": pd.Series(["a", None, "c"], dtype=dtype)})
    out = enforce({"s": "string?"}, df).data
    assert out["s"].dtype == object
    assert out["s"].tolist() == ["a", None, "c"]
    assert all(type(v) is str for v in out["s"] if v is not None)


def test_ints_in_string_column_are_rejected():
    problem = problem_of({"city": "string"}, pd.DataFrame({"city": [1, 2]}))
    assert "column 'city' is declared string but holds int64 values such as 1" in problem["error"]
    assert "astype(str)" in problem["error"]


def test_floats_in_object_string_column_are_rejected():
    problem = problem_of({"city": "string"}, pd.DataFrame({"city": pd.Series(["a", 1.5], dtype=object)}))
    assert "1.5" in problem["error"]


def test_missing_strings_in_non_nullable_string_column_are_an_error():
    problem = problem_of({"city": "string"}, pd.DataFrame({"city": ["a", None]}))
    assert "declare it 'string?'" in problem["error"]


# -------------------------------------------------------------------------- enforce: datetimes


def test_datetimes_of_any_unit_become_nanoseconds():
    df = pd.DataFrame({"d": np.array(["2024-01-01T10:00"], dtype="datetime64[s]")})
    out = enforce({"d": "datetime"}, df).data
    assert out["d"].dtype == np.dtype("datetime64[ns]") and out["d"][0] == pd.Timestamp("2024-01-01T10:00")


def test_iso_strings_become_datetimes():
    out = enforce({"d": "datetime?"}, pd.DataFrame({"d": ["2024-01-31T12:00:00", None, "2024-02-01"]})).data
    assert out["d"].dtype == np.dtype("datetime64[ns]")
    assert out["d"].tolist()[::2] == [pd.Timestamp("2024-01-31T12:00"), pd.Timestamp("2024-02-01")]
    assert pd.isna(out["d"][1])


def test_non_dates_in_datetime_column_are_an_error():
    assert "ISO 8601" in problem_of({"d": "datetime"}, pd.DataFrame({"d": ["yesterday"]}))["error"]


def test_timezone_aware_datetimes_are_converted_to_naive_utc():
    df = pd.DataFrame({"d": pd.to_datetime(["2024-01-01T12:00"]).tz_localize("Europe/Paris")})
    result = enforce({"d": "datetime"}, df)
    assert result.data["d"][0] == pd.Timestamp("2024-01-01T11:00") and "UTC" in result.casts[0]


# ----------------------------------------------------------------------------------- problems()


def test_problems_is_empty_for_conforming_output():
    schema = DataFrameSchema.from_spec({"pred": "float64", "label": "string", "n": "int64?"})
    df = pd.DataFrame({"label": pd.array(["a", "b"], dtype="string"), "pred": [0.1, 0.2],
                       "n": pd.array([1, None], dtype="Int64")})
    assert schema.problems(df) == []


def test_problems_does_not_coerce_widths():
    schema = DataFrameSchema.from_spec({"pred": "float64"})
    [problem] = schema.problems(pd.DataFrame({"pred": np.array([0.5], dtype="float32")}))
    assert problem["field"] == "pred" and "float32" in problem["error"]


def test_problems_reports_missing_extra_and_missing_values():
    schema = DataFrameSchema.from_spec({"a": "float64", "b": "int64"})
    problems = schema.problems(pd.DataFrame({"a": [np.nan], "c": [1]}))
    assert [p["field"] for p in problems] == ["a", "b", "c"]


def test_problems_accepts_an_empty_object_column_for_any_dtype():
    assert DataFrameSchema.from_spec({"p": "float64"}).problems(pd.DataFrame({"p": []}, dtype=object)) == []


def test_problems_of_non_dataframe():
    assert DataFrameSchema.from_spec({"p": "float64"}).problems([1.0])[0]["field"] == "<data>"


# --------------------------------------------------------------------------------- SchemaError


def test_schema_error_message_is_one_paragraph_naming_every_field():
    error = SchemaError([{"field": "age", "error": "missing column 'age' (int64)"},
                         {"field": "city", "error": "not a string"}])
    assert "\n" not in str(error)
    assert "'age'" in str(error) and "'city'" in str(error) and "2 problems" in str(error)


def test_schema_error_to_dict_and_back():
    error = SchemaError([{"field": "age", "error": "missing column 'age' (int64)"}])
    assert error.to_dict() == {"error": "schema", "message": str(error), "problems": error.problems}
    assert SchemaError.from_dict(error.to_dict()).problems == error.problems


def test_schema_error_survives_pickling():
    error = SchemaError([{"field": "a", "error": "bad"}])
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems and str(again) == str(error)


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)


# ----------------------------------------------------------------------------- DataFrame JSON


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "n": pd.array([1, None, 3], dtype="Int64"),
        "f": [1.5, np.nan, 2.0],
        "s": ["a", None, "c"],
        "b": pd.array([True, None, False], dtype="boolean"),
        "d": pd.to_datetime(["2024-01-01T10:00:00", None, "2024-03-01T00:00:00"]),
        "i": np.array([7, 8, 9], dtype="int32"),
    })


def test_dataframe_to_json_is_strict_json_with_nulls_and_iso_dates():
    obj = dataframe_to_json(sample_frame())
    text = json.dumps(obj, allow_nan=False)  # no NaN tokens
    assert obj["columns"] == ["n", "f", "s", "b", "d", "i"]
    assert obj["data"][1] == [None, None, None, None, None, 8]
    assert obj["data"][0][4] == "2024-01-01T10:00:00" and type(obj["data"][0][5]) is int
    assert json.loads(text) == obj


@pytest.mark.parametrize("form", ["split", "records", "columns"])
def test_dataframe_json_round_trip_with_schema_gives_exact_dtypes(form):
    df = sample_frame()
    schema = DataFrameSchema.infer(df)
    split = json.loads(json.dumps(dataframe_to_json(df)))
    payload = {
        "split": split,
        "records": [dict(zip(split["columns"], row)) for row in split["data"]],
        "columns": {c: [row[j] for row in split["data"]] for j, c in enumerate(split["columns"])},
    }[form]
    back = dataframe_from_json(payload, schema)
    pd.testing.assert_frame_equal(back, schema.enforce(df).data)
    assert [str(t) for t in back.dtypes] == ["Int64", "float64", "object", "boolean", "datetime64[ns]", "int32"]


def test_dataframe_from_json_ignores_split_index_and_extra_columns():
    payload = {"columns": ["a", "zz"], "index": [5, 6], "data": [[1, 2], [3, 4]]}
    out = dataframe_from_json(payload, DataFrameSchema.from_spec({"a": "int64"}))
    assert list(out.columns) == ["a"] and list(out.index) == [0, 1]


def test_dataframe_from_json_accepts_text():
    out = dataframe_from_json('[{"a": 1}, {"a": 2}]', DataFrameSchema.from_spec({"a": "float32"}))
    assert out["a"].dtype == np.float32


def test_dataframe_from_json_without_schema_lets_pandas_infer():
    out = dataframe_from_json({"columns": ["a", "s"], "data": [[1, "x"], [2, "y"]]})
    assert out["a"].dtype == np.int64 and out["s"].tolist() == ["x", "y"]


def test_dataframe_from_json_rejects_rows_of_the_wrong_length():
    with pytest.raises(SchemaError, match="row 1 has 1 values but there are 2 columns"):
        dataframe_from_json({"columns": ["a", "b"], "data": [[1, 2], [3]]})


def test_dataframe_from_json_with_schema_reports_schema_problems():
    with pytest.raises(SchemaError, match="missing column 'b'"):
        dataframe_from_json([{"a": 1}], DataFrameSchema.from_spec({"a": "int64", "b": "string"}))


def test_binary_columns_travel_as_base64():
    df = pd.DataFrame({"blob": pd.Series([b"\x00\xff", None], dtype=object)})
    schema = DataFrameSchema.from_spec({"blob": "binary?"})
    back = dataframe_from_json(json.loads(json.dumps(dataframe_to_json(df))), schema)
    assert back["blob"].tolist() == [b"\x00\xff", None]


# ------------------------------------------------------------------------------------- tensors


def test_tensor_spec_stores_minus_one_as_none():
    assert TensorSpec("x", "float32", (-1, 28, 28)).shape == (None, 28, 28)


def test_tensor_schema_from_spec_and_dict_round_trip():
    schema = TensorSchema.from_spec({"image": ("float32", (-1, 28, 28)), "mask": (np.bool_, [None])})
    assert schema.to_dict() == {"type": "tensor", "tensors": [
        {"name": "image", "dtype": "float32", "shape": [None, 28, 28]},
        {"name": "mask", "dtype": "bool", "shape": [None]}]}
    assert schema_from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    assert eval(repr(schema), {"TensorSchema": TensorSchema}) == schema


def test_tensor_infer_makes_the_first_dimension_variable():
    schema = TensorSchema.infer({"x": np.zeros((4, 3), dtype="float32"), "ids": np.arange(4)})
    assert schema == TensorSchema.from_spec({"x": ("float32", (None, 3)), "ids": ("int64", (None,))})


def test_tensor_infer_of_strings():
    assert TensorSchema.infer({"t": np.array(["a", "b"])}).tensors[0].dtype == "string"


def test_tensor_enforce_turns_lists_into_arrays_of_the_declared_dtype():
    schema = TensorSchema.from_spec({"x": ("float32", (-1, 2))})
    result = schema.enforce({"x": [[1.0, 2.0], [3.0, 4.0]]})
    assert result.data["x"].dtype == np.float32 and result.data["x"].shape == (2, 2)
    assert result.casts == ["x: list -> float32"]


def test_tensor_enforce_casts_ints_to_float_and_float64_to_float32():
    schema = TensorSchema.from_spec({"a": ("float64", (None,)), "b": ("float32", (None,))})
    out = schema.enforce({"a": np.arange(3), "b": np.ones(3)}).data
    assert out["a"].dtype == np.float64 and out["b"].dtype == np.float32


def test_tensor_enforce_casts_integral_floats_to_int_and_rejects_fractions():
    schema = TensorSchema.from_spec({"a": ("int64", (None,))})
    assert schema.enforce({"a": np.array([1.0, 2.0])}).data["a"].dtype == np.int64
    with pytest.raises(SchemaError, match="non-integral values such as 1.5"):
        schema.enforce({"a": np.array([1.5])})


def test_tensor_enforce_rejects_int_overflow():
    with pytest.raises(SchemaError, match="outside the uint8 range"):
        TensorSchema.from_spec({"a": ("uint8", (None,))}).enforce({"a": np.array([1, 300])})


def test_tensor_enforce_rejects_non_numeric_where_numeric_declared():
    with pytest.raises(SchemaError) as info:
        TensorSchema.from_spec({"a": ("float32", (None,))}).enforce({"a": np.array(["x", "y"])})
    assert info.value.problems == [{"field": "a", "error": "tensor 'a' is declared float32 but holds str "
                                                          "values; send numbers"}]


def test_tensor_enforce_names_missing_tensors_and_ignores_extra_ones():
    schema = TensorSchema.from_spec({"a": ("float32", (None,)), "b": ("int64", (None,))})
    with pytest.raises(SchemaError, match="missing tensor 'b' \\(int64, shape \\(None,\\)\\)"):
        schema.enforce({"a": np.zeros(2)})
    assert schema.enforce({"a": np.zeros(2), "b": np.zeros(2, "int64"), "c": 1}).ignored == ["c"]


def test_tensor_enforce_shape_errors_name_expected_and_got():
    schema = TensorSchema.from_spec({"image": ("float32", (-1, 28, 28))})
    with pytest.raises(SchemaError) as info:
        schema.enforce({"image": np.zeros((2, 28, 27), dtype="float32")})
    assert info.value.problems == [{"field": "image", "error": "tensor 'image' has shape (2, 28, 27) but the "
                                    "schema declares (None, 28, 28)", "rule": "tensor-shape"}]
    with pytest.raises(SchemaError, match="has shape \\(28, 28\\)"):
        schema.enforce({"image": np.zeros((28, 28), dtype="float32")})


@pytest.mark.parametrize("values", [[[1.0, True, 3.0]], [[1, 2, False]], [[True, False, True]],
                                    [[0.5, 1.0, 2.0], [True, 0.0, 1.0]]])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_json_booleans_in_a_numeric_tensor_are_refused_whether_mixed_with_numbers_or_not(values, dtype):
    """numpy alone reads [1.0, true] as [1.0, 1.0]; JSON Schema's number excludes booleans, and so does the schema."""
    schema = TensorSchema.from_spec({"x": (dtype, (-1, 3))})
    with pytest.raises(SchemaError, match=f"tensor 'x' is declared {dtype} but holds bool values"):
        schema.enforce({"x": values})


def test_a_bool_tensor_takes_booleans_and_zeros_and_ones():
    schema = TensorSchema.from_spec({"flags": ("bool", (-1,))})
    assert schema.enforce({"flags": [True, 0, 1]}).data["flags"].tolist() == [True, False, True]
    with pytest.raises(SchemaError, match="numbers other than 0 and 1"):
        schema.enforce({"flags": [True, 2]})


def test_numbers_that_equal_zero_or_one_are_still_numbers_in_a_numeric_tensor():
    schema = TensorSchema.from_spec({"x": ("float64", (-1, 2))})
    assert schema.enforce({"x": [[0, 1.0], [1, 0.0]]}).data["x"].tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("values", [[1.5, True], [1, False], [True, False]])
@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_json_booleans_in_a_numeric_column_are_refused_naming_it(values, dtype):
    schema = DataFrameSchema.from_spec({"x": dtype})
    with pytest.raises(SchemaError, match="column 'x' is declared .* but holds"):
        dataframe_from_json({"x": values}, schema)


def test_a_string_tensor_without_values_is_valid_whatever_its_dtype():
    """JSON's [] reads as float64: no value of it is of a wrong type."""
    schema = TensorSchema.from_spec({"tag": ("string", (-1,))})
    assert schema.enforce({"tag": []}).data["tag"].shape == (0,)


def test_tensor_enforce_accepts_any_size_in_variable_dimensions():
    schema = TensorSchema.from_spec({"x": ("float64", (None, None))})
    assert schema.enforce({"x": np.zeros((0, 5))}).data["x"].shape == (0, 5)


def test_tensor_enforce_does_not_share_memory_with_the_input():
    arr = np.zeros(3, dtype="float64")
    out = TensorSchema.from_spec({"x": ("float64", (None,))}).enforce({"x": arr}).data["x"]
    out[0] = 1.0
    assert arr[0] == 0.0


def test_tensor_enforce_accepts_a_bare_array_for_a_single_tensor_schema():
    out = TensorSchema.from_spec({"x": ("int32", (None,))}).enforce([1, 2]).data
    assert out["x"].dtype == np.int32


def test_tensor_enforce_rejects_ragged_lists():
    with pytest.raises(SchemaError, match="ragged"):
        TensorSchema.from_spec({"x": ("float32", (None, None))}).enforce({"x": [[1.0], [1.0, 2.0]]})


def test_tensor_problems_is_strict_about_dtype_shape_and_type():
    schema = TensorSchema.from_spec({"y": ("float32", (None,))})
    assert schema.problems({"y": np.zeros(2, dtype="float32")}) == []
    assert "dtype float64" in schema.problems({"y": np.zeros(2)})[0]["error"]
    assert "shape (2, 1)" in schema.problems({"y": np.zeros((2, 1), dtype="float32")})[0]["error"]
    assert "not a numpy array" in schema.problems({"y": [1.0]})[0]["error"]
    assert schema.problems({"y": np.zeros(1, dtype="float32"), "z": 1})[0]["field"] == "z"


def test_tensor_json_round_trip_with_nan_and_schema():
    tensors = {"x": np.array([[1.0, np.nan]], dtype="float32"), "ids": np.array([1, 2], dtype="int32"),
               "t": np.array(["a", "b"])}
    schema = TensorSchema.infer(tensors)
    obj = json.loads(json.dumps(tensors_to_json(tensors), allow_nan=False))
    assert obj["x"] == [[1.0, None]]
    back = tensors_from_json(obj, schema)
    assert back["x"].dtype == np.float32 and np.isnan(back["x"][0, 1])
    assert back["ids"].dtype == np.int32 and back["t"].tolist() == ["a", "b"]


def test_tensors_from_json_without_schema_turns_null_into_nan():
    out = tensors_from_json('{"x": [1, null, 2.5]}')
    assert out["x"].dtype == np.float64 and np.isnan(out["x"][1])


def test_tensors_from_json_accepts_the_mlflow_inputs_envelope():
    out = tensors_from_json({"inputs": {"x": [1, 2]}}, TensorSchema.from_spec({"x": ("int64", (None,))}))
    assert out["x"].tolist() == [1, 2]


# ------------------------------------------------------------------------------------ the leaf


def test_package_imports_with_only_stdlib_numpy_and_pandas(tmp_path: Path):
    shutil.copytree(Path(S.__file__).parent, tmp_path / "schema", ignore=shutil.ignore_patterns("__pycache__"))
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, ".")
        import schema
        df = schema.dataframe_from_json([{"a": 1}], schema.DataFrameSchema.from_spec({"a": "int64"}))
        assert df["a"].dtype == "int64"
        assert not any(m == "pyml_jupyter" or m.startswith("pyml_jupyter.") for m in sys.modules), sys.modules
        banned = {"mlflow", "IPython", "pyspark", "docker", "tornado", "jupyter_server"}
        assert not banned & {m.split(".")[0] for m in sys.modules}
    """)
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
