"""The fast paths of pyml_jupyter.serving.schema give exactly what the exact path gives.

``dataframe_from_json`` and ``DataFrameSchema.enforce`` skip pandas' per-column inference when the values are
already of the declared kind with none missing; ``dataframe_to_json`` converts a frame of plain values in one
go. Each case here runs twice, with and without the fast paths, and the two results (or errors) must be
identical: dtypes, values, index, column order, ignored columns, JSON values and their Python types.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from pyml_jupyter.serving import schema as S
from pyml_jupyter.serving.schema import codec, dataframe

DataFrameSchema = S.DataFrameSchema
SchemaError = S.SchemaError

pytestmark = pytest.mark.filterwarnings("error")

SCHEMA = {"f": "float64", "g": "float32", "i": "int64", "j": "int32?", "u": "uint8", "b": "bool", "c": "bool?",
          "s": "string", "t": "string?", "y": "binary"}
ROW = [0.5, 1.5, 3, -4, 200, True, False, "paris", "x", base64.b64encode(b"\x00\xff").decode()]


def exact(monkeypatch, function, *args):
    """``function(*args)`` with the fast paths switched off (where the codec and the schema call them)."""
    with monkeypatch.context() as m:
        m.setattr(codec, "_fast_frame_from_json", lambda *a: None)
        m.setattr(dataframe, "_fast_enforce", lambda *a: None)
        m.setattr(codec, "_fast_json_rows", lambda *a: None)
        return outcome(function, *args)


def outcome(function, *args):
    try:
        return function(*args)
    except (SchemaError, OverflowError) as exc:
        return exc


def assert_same(fast, slow) -> None:
    assert type(fast) is type(slow)
    if isinstance(slow, Exception):
        assert str(fast) == str(slow)
        return
    if isinstance(slow, S.Enforced):
        assert (fast.ignored, fast.casts) == (slow.ignored, slow.casts)
        fast, slow = fast.data, slow.data
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert list(fast.dtypes) == list(slow.dtypes)
    assert type(fast.index) is type(slow.index) and type(fast.columns) is type(slow.columns)


def from_json_both_ways(monkeypatch, payload, spec):
    schema = DataFrameSchema.from_spec(spec)
    fast = outcome(S.dataframe_from_json, payload, schema)
    assert_same(fast, exact(monkeypatch, S.dataframe_from_json, payload, schema))
    return fast


def enforce_both_ways(monkeypatch, df, spec):
    schema = DataFrameSchema.from_spec(spec)
    fast = outcome(schema.enforce, df)
    assert_same(fast, exact(monkeypatch, schema.enforce, df))
    return fast


PAYLOADS = {
    "split, every kind": {"columns": list(SCHEMA), "data": [ROW, ROW]},
    "split, extra columns and index": {"columns": ["zz", *SCHEMA], "index": [7, 8], "data": [[1, *ROW]] * 2},
    "split, a duplicated column": {"columns": [*SCHEMA, "f"], "data": [[*ROW, 9.0]]},
    "records": [dict(zip(SCHEMA, ROW))] * 3,
    "records, a key missing": [dict(zip(SCHEMA, ROW)), {k: v for k, v in zip(SCHEMA, ROW) if k != "t"}],
    "columns form": {k: [v, v] for k, v in zip(SCHEMA, ROW)},
    "ints in float columns": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "f": [2], "g": [-3]},
    "a float in an int column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "i": [3.0]},
    "0/1 in a bool column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "b": [1]},
    "None in nullable columns": {**{k: [v, v] for k, v in zip(SCHEMA, ROW)}, "j": [None, 1], "t": [None, "a"]},
    "None in a required column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "s": [None]},
    "NaN in a float column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "f": [float("nan")]},
    "infinity in a float column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "f": [float("inf")]},
    "too large for float32": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "g": [1e300]},
    "too large for any float": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "f": [10**400]},
    "out of uint8 range": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "u": [256]},
    "negative for uint8": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "u": [-1]},
    "beyond int64": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "i": [2**63]},
    "a bool in an int column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "i": [True]},
    "a number in a string column": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "s": [1]},
    "not base64": {**{k: [v] for k, v in zip(SCHEMA, ROW)}, "y": ["%%%"]},
    "a column missing": {k: [v] for k, v in zip(SCHEMA, ROW) if k != "i"},
    "no rows": {"columns": list(SCHEMA), "data": []},
}


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_dataframe_from_json_fast_path_matches_the_exact_path(monkeypatch, case):
    from_json_both_ways(monkeypatch, PAYLOADS[case], SCHEMA)


def test_dataframe_from_json_takes_the_fast_path_for_plain_values(monkeypatch):
    schema = DataFrameSchema.from_spec(SCHEMA)
    monkeypatch.setattr(S.DataFrameSchema, "enforce", lambda *a: pytest.fail("took the exact path"))
    out = S.dataframe_from_json({"columns": list(SCHEMA), "data": [ROW]}, schema)
    assert [str(t) for t in out.dtypes] == ["float64", "float32", "int64", "Int32", "uint8", "bool", "boolean",
                                            "object", "object", "object"]


def test_dataframe_from_json_fast_path_matches_through_stdlib_json_text(monkeypatch):
    text = json.dumps({"columns": ["f", "s"], "data": [[1.25, "a"], [2, "b"]]})
    from_json_both_ways(monkeypatch, text, {"f": "float64", "s": "string"})


def test_dataframe_from_json_fast_path_keeps_strings_as_objects_when_pandas_infers_strings(monkeypatch):
    with pd.option_context("future.infer_string", True):
        out = from_json_both_ways(monkeypatch, {"columns": ["f", "s"], "data": [[1.0, "a"]]},
                                  {"f": "float64", "s": "string"})
    assert out["s"].dtype == object


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


FRAMES = {
    "exact dtypes": lambda: frame(f=[0.5, 1.0], i=np.array([1, 2]), b=[True, False], s=["a", "b"],
                                  t=pd.to_datetime(["2024-01-01", "2024-02-01"]).as_unit("ns")),
    "extra and non-string columns": lambda: pd.DataFrame({"zz": [1, 2], 3: [4, 5], "f": [0.5, 1.0],
                                                          "i": [1, 2], "b": [True, True], "s": ["a", "b"],
                                                          "t": pd.to_datetime(["2024-01-01"] * 2).as_unit("ns")}),
    "a duplicated schema column": lambda: pd.concat([FRAMES["exact dtypes"](), frame(f=[1.0, 2.0])], axis=1),
    "a duplicated extra column": lambda: pd.concat([FRAMES["exact dtypes"](), frame(zz=[1, 2]), frame(zz=[3, 4])],
                                                   axis=1),
    "a string index": lambda: FRAMES["exact dtypes"]().set_axis(["r1", "r2"]),
    "NaN in a float column": lambda: FRAMES["exact dtypes"]().assign(f=[np.nan, 1.0]),
    "NaT in a datetime column": lambda: FRAMES["exact dtypes"]().assign(t=pd.to_datetime([None, "2024-01-01"])),
    "int32 for int64": lambda: FRAMES["exact dtypes"]().assign(i=np.array([1, 2], dtype=np.int32)),
    "float32 for float64": lambda: FRAMES["exact dtypes"]().assign(f=np.array([1, 2], dtype=np.float32)),
    "numpy strings": lambda: FRAMES["exact dtypes"]().assign(s=np.array([np.str_("a"), np.str_("b")],
                                                                      dtype=object)),
    "None in a string column": lambda: FRAMES["exact dtypes"]().assign(s=["a", None]),
    "pandas string dtype": lambda: FRAMES["exact dtypes"]().assign(s=pd.array(["a", "b"], dtype="string")),
    "Int64 for int64": lambda: FRAMES["exact dtypes"]().assign(i=pd.array([1, 2], dtype="Int64")),
    "categorical strings": lambda: FRAMES["exact dtypes"]().assign(s=pd.Categorical(["a", "b"])),
    "a column missing": lambda: FRAMES["exact dtypes"]().drop(columns="b"),
    "no rows": lambda: FRAMES["exact dtypes"]().iloc[:0],
}
FRAME_SCHEMA = {"f": "float64", "i": "int64", "b": "bool", "s": "string", "t": "datetime"}


@pytest.mark.parametrize("case", list(FRAMES))
def test_enforce_fast_path_matches_the_exact_path(monkeypatch, case):
    enforce_both_ways(monkeypatch, FRAMES[case](), FRAME_SCHEMA)


@pytest.mark.parametrize("spec", [{"f": "float64?", "i": "int64?", "b": "bool?", "s": "string?", "t": "datetime?"},
                                  {"s": "binary", "f": "float32", "i": "object"}])
def test_enforce_fast_path_matches_the_exact_path_for_other_declarations(monkeypatch, spec):
    enforce_both_ways(monkeypatch, FRAMES["exact dtypes"](), spec)


def test_enforce_fast_path_shares_no_memory_and_leaves_the_input_alone():
    df = FRAMES["a string index"]()
    before = df.copy()
    out = DataFrameSchema.from_spec(FRAME_SCHEMA).enforce(df).data
    for name in FRAME_SCHEMA:
        assert not np.shares_memory(out[name].to_numpy(), df[name].to_numpy())
    out.iloc[0, 0] = 99.0
    pd.testing.assert_frame_equal(df, before)
    assert out.index is not df.index


def test_enforce_takes_the_fast_path_for_exact_dtypes(monkeypatch):
    monkeypatch.setattr(dataframe, "_convert_column", lambda *a: pytest.fail("took the exact path"))
    out = DataFrameSchema.from_spec(FRAME_SCHEMA).enforce(FRAMES["extra and non-string columns"]())
    assert list(out.data.columns) == list(FRAME_SCHEMA) and out.ignored == ["zz", "3"] and out.casts == []


OUTPUTS = {
    "floats and ints": lambda: frame(score=[0.25, 0.75], label=np.array([0, 1])),
    "every plain kind": lambda: frame(f=np.array([1.5, 2.5], dtype=np.float32), u=np.array([1, 2**64 - 1],
                                      dtype=np.uint64), b=[True, False], s=["a", "b"], inf=[np.inf, -np.inf]),
    "NaN": lambda: frame(score=[np.nan, 0.5], label=[1, 0]),
    "None in an object column": lambda: frame(s=["a", None]),
    "numpy scalars in an object column": lambda: frame(o=np.array([np.float64(1.5), np.int64(2)], dtype=object)),
    "numpy strings": lambda: frame(s=np.array([np.str_("a"), np.str_("b")], dtype=object)),
    "datetimes": lambda: frame(t=pd.to_datetime(["2024-01-01", "2024-02-01"])),
    "bytes": lambda: frame(y=[b"\x00", b"\xff"]),
    "nullable ints": lambda: frame(i=pd.array([1, None], dtype="Int64"), j=pd.array([1, 2], dtype="Int64")),
    "categorical and pandas strings": lambda: frame(c=pd.Categorical(["a", "b"]), s=pd.array(["x", "y"],
                                                                                              dtype="string")),
    "non-string and duplicated names": lambda: pd.DataFrame([[1, 2.5, 3]], columns=[0, "a", "a"]),
    "no columns": lambda: pd.DataFrame(index=range(2)),
    "no rows": lambda: frame(score=np.array([], dtype=float)),
}


def typed(value):
    """A JSON value with the Python type of every scalar in it, so that 1 and 1.0 or True and 1 differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_dataframe_to_json_fast_path_matches_the_exact_path(monkeypatch, case):
    df = OUTPUTS[case]()
    fast = (S.dataframe_to_json(df), S.dataframe_to_records(df))
    slow = exact(monkeypatch, lambda d: (S.dataframe_to_json(d), S.dataframe_to_records(d)), df)
    assert typed(list(fast)) == typed(list(slow))
    assert json.dumps(fast) == json.dumps(slow)


def test_the_fast_path_as_columns_builds_the_very_frame_it_returns_otherwise():
    schema = DataFrameSchema.from_spec(SCHEMA)
    payload = {"columns": list(SCHEMA), "data": [ROW, ROW]}
    columns = S.dataframe_from_json(payload, schema, as_columns=True)

    assert isinstance(columns, S.FrameColumns) and len(columns) == 2 and list(columns.arrays) == list(SCHEMA)
    assert_same(columns.frame(), S.dataframe_from_json(payload, schema))
    # input the fast path does not take comes back as the exact path's DataFrame
    with_missing = {"columns": list(SCHEMA), "data": [ROW, [None if k == "t" else v for k, v in zip(SCHEMA, ROW)]]}
    assert isinstance(S.dataframe_from_json(with_missing, schema, as_columns=True), pd.DataFrame)


ARRAY_SCHEMA = {"f": "float64", "g": "float32", "i": "int64", "u": "uint8", "b": "bool", "s": "string"}


def array_columns(**changes) -> dict:
    columns = {"f": np.array([0.5, 2.0]), "g": np.array([1.5, -3.0], dtype=np.float32), "i": np.array([3, -4]),
               "u": np.array([200, 0], dtype=np.uint8), "b": np.array([True, False]),
               "s": np.array(["paris", "x"], dtype=object), "extra": np.array([1, 2])}
    columns.update(changes)
    return {name: values for name, values in columns.items() if values is not None}


ARRAYS = {  # numpy columns (raw tensor contents) -> whether they are taken as they are
    "every column of its declared dtype": (array_columns(), True),
    "ints in a float column": (array_columns(f=np.array([2, 3])), False),
    "float64 in a float32 column": (array_columns(g=np.array([1.5, 2.5])), False),
    "int32 in an int64 column": (array_columns(i=np.array([1, 2], dtype=np.int32)), False),
    "NaN in a float column": (array_columns(f=np.array([np.nan, 1.0])), False),
    "bytes in a string column": (array_columns(s=np.array([b"a", b"b"], dtype=object)), False),
    "a column missing": (array_columns(i=None), False),
    "columns of different lengths": (array_columns(f=np.array([1.0])), False),
    "a two-dimensional column": (array_columns(f=np.array([[1.0], [2.0]])), False),
    "no rows": ({name: values[:0] for name, values in array_columns().items()}, False),
}


@pytest.mark.parametrize("case", list(ARRAYS))
def test_numpy_columns_of_the_declared_dtypes_are_taken_as_the_json_path_would_deliver_them(case):
    columns, taken = ARRAYS[case]
    schema = DataFrameSchema.from_spec(ARRAY_SCHEMA)
    out = S.frame_columns_from_arrays(schema, columns)
    if not taken:
        assert out is None  # the caller validates the values as JSON, which alone decides what is an error
        return
    as_json = {name: values.tolist() for name, values in columns.items()}
    assert list(out.arrays) == list(ARRAY_SCHEMA)  # schema order, the extra column dropped
    assert_same(out.frame(), S.dataframe_from_json(as_json, schema))


def test_numpy_columns_taken_as_they_are_share_no_memory_with_the_request():
    raw = np.array([0.5, 2.0]).tobytes()
    columns = {"f": np.frombuffer(raw, dtype="<f8")}  # read-only, over the request's bytes
    out = S.frame_columns_from_arrays(DataFrameSchema.from_spec({"f": "float64"}), columns)
    assert not np.shares_memory(out.arrays["f"], columns["f"]) and out.arrays["f"].flags.writeable
