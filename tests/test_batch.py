"""Offline predictions on Spark (pyml_jupyter.batch): a real local Spark session with a Hive catalog.

Spark tests fail (never skip) under CI=true when pyspark or Java is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from conftest import EXAMPLE_MODEL_SOURCE, example_frame, write_example_package
from pyml_jupyter.errors import BatchError, InvalidName
from pyml_jupyter.progress import Progress
from pyml_jupyter.serving.loader import load_package, read_package
from spark_fixtures import require_spark, spark, workdir  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 5000

pytestmark = pytest.mark.spark


# ----------------------------------------------------------------------------------------------- fixtures


def _variant(directory: Path, *, on_init: str = "", on_predict: str = "", header: str = "") -> Path:
    """The example package with extra lines in the model's constructor / predict (e.g. logging, raising)."""
    package = write_example_package(directory)
    source = EXAMPLE_MODEL_SOURCE.replace("import numpy as np", "import os\nimport numpy as np\n" + header)
    source = source.replace('        self.clf = artifacts["clf"]\n',
                            '        self.clf = artifacts["clf"]\n' + textwrap.indent(on_init, " " * 8))
    source = source.replace("        proba = ", textwrap.indent(on_predict, " " * 8) + "        proba = ")
    (package / "model.py").write_text(source)
    return package


@pytest.fixture(scope="module")
def source(spark):
    """The table `src`: N_ROWS synthetic rows with a key `id`; returns them as pandas."""
    pdf = example_frame(N_ROWS, seed=3)
    pdf.insert(0, "id", np.arange(N_ROWS, dtype=np.int64))
    spark.createDataFrame(pdf).write.mode("overwrite").saveAsTable("src")
    return pdf


@pytest.fixture(scope="module")
def package(workdir) -> Path:
    return write_example_package(workdir / "example")


@pytest.fixture(scope="module")
def failing_package(workdir) -> Path:
    """Raises on the batches holding a row with x1 > 2 (about 2% of the rows, so only some tasks fail)."""
    return _variant(workdir / "failing", on_predict=(
        'if (df["x1"] > 2).any():\n'
        '    raise ValueError("boom: x1 above 2")\n'))


def _table(spark, name: str) -> pd.DataFrame:
    return spark.table(name).toPandas().sort_values("id").reset_index(drop=True)


def _expected(package: Path, frame: pd.DataFrame) -> pd.DataFrame:
    return load_package(package).predict(frame.reset_index(drop=True))


def _database_dir(spark) -> Path:
    return Path(urlparse(spark.catalog.getDatabase(spark.catalog.currentDatabase()).locationUri).path)


def _leftovers(spark) -> list[str]:
    """Temporary tables, or their files, that a batch job left in the current database."""
    tables = [t.name for t in spark.catalog.listTables() if t.name.startswith("pyml_tmp_")]
    files = [p.name for p in _database_dir(spark).iterdir() if p.name.startswith("pyml_tmp_")]
    return tables + files


# --------------------------------------------------------------------------------------------- scoring


def test_scores_a_query_into_a_table_exactly_as_the_package_predicts(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    result = predict_offline(package, "SELECT id, x1, x2, city FROM src", "scored_basic", spark=spark, keep=["id"])

    assert result.output_table == "scored_basic"
    assert result.rows == N_ROWS
    assert result.rows_per_second > 0
    got = _table(spark, "scored_basic")
    assert list(got.columns) == ["id", "score", "label"]
    expected = _expected(package, source.sort_values("id"))
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=0, atol=1e-12)
    assert (got["label"].to_numpy() == expected["label"].to_numpy()).all()


def test_output_columns_get_the_spark_types_of_the_output_schema(spark, source, package):
    from pyml_jupyter.batch import predict_offline
    from pyspark.sql import types as T

    predict_offline(package, "SELECT id, x1, x2, city FROM src", "scored_types", spark=spark, keep=["id"])

    fields = {f.name: f.dataType for f in spark.table("scored_types").schema.fields}
    assert fields == {"id": T.LongType(), "score": T.DoubleType(), "label": T.LongType()}


def test_keep_defaults_to_every_query_column_and_empty_keeps_predictions_only(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, city AS town, x1, x2, city FROM src", "scored_keep_all", spark=spark)
    predict_offline(package, "SELECT x1, x2, city FROM src", "scored_keep_none", spark=spark, keep=[])

    assert spark.table("scored_keep_all").columns == ["id", "town", "x1", "x2", "city", "score", "label"]
    kept = _table(spark, "scored_keep_all")
    assert (kept["town"] == source.sort_values("id")["city"].to_numpy()).all()
    assert spark.table("scored_keep_none").columns == ["score", "label"]


def test_keep_must_name_query_columns(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="'customer'"):
        predict_offline(package, "SELECT id, x1, x2, city FROM src", "scored_bad_keep", spark=spark,
                        keep=["id", "customer"])
    assert not spark.catalog.tableExists("scored_bad_keep")


def test_a_kept_column_named_like_a_prediction_is_refused(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="'label'.*alias"):
        predict_offline(package, "SELECT id, x1, x2, city, 1 AS label FROM src", "scored_clash", spark=spark)


# ------------------------------------------------------------------------------------ the schema check


def test_a_missing_column_is_refused_by_name_before_any_job_runs(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    sc = spark.sparkContext
    sc.setJobGroup("pyml-test-schema-check", "the schema check must run no job")
    try:
        started = time.perf_counter()
        with pytest.raises(BatchError) as info:
            predict_offline(package, "SELECT id, x1, city FROM src", "scored_missing", spark=spark)
        elapsed = time.perf_counter() - started
        assert sc.statusTracker().getJobIdsForGroup("pyml-test-schema-check") == []
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    message = str(info.value)
    assert "missing column 'x2'" in message
    assert "no Spark job was started" in message
    assert [p["field"] for p in info.value.details["problems"]] == ["x2"]
    assert not spark.catalog.tableExists("scored_missing")
    assert elapsed < 10


def test_a_mistyped_column_is_refused_by_name_with_the_cast_that_fixes_it(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError) as info:
        predict_offline(package, "SELECT id, x1, x2, CAST(id AS INT) AS city FROM src", "scored_mistyped",
                        spark=spark)
    message = str(info.value)
    assert "column 'city' is INT in the query" in message
    assert "CAST(city AS STRING)" in message
    assert not spark.catalog.tableExists("scored_mistyped")


def test_a_case_mismatch_is_pointed_out(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="the query has 'X2': alias it AS x2"):
        predict_offline(package, "SELECT id, x1, x2 AS X2, city FROM src", "scored_case", spark=spark)


def test_an_int_column_is_widened_to_float_by_the_schema_rules(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    query = "SELECT id, CAST(round(x1 * 10) AS INT) AS x1, x2, city FROM src"
    predict_offline(package, query, "scored_widened", spark=spark, keep=["id"])

    frame = source.sort_values("id").reset_index(drop=True).copy()
    frame["x1"] = np.round(frame["x1"] * 10).astype(np.int32)  # what the query delivers
    expected = _expected(package, frame)
    got = _table(spark, "scored_widened")
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=0, atol=1e-12)


def test_the_input_schema_is_enforced_on_executors_too(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    query = "SELECT id, CASE WHEN id = 17 THEN NULL ELSE x1 END AS x1, x2, city FROM src"
    with pytest.raises(BatchError, match=r"'x1' has 1 missing value"):
        predict_offline(package, query, "scored_null", spark=spark)
    assert not spark.catalog.tableExists("scored_null")
    assert _leftovers(spark) == []


@pytest.mark.parametrize(
    ("sql_type", "declared", "fits"),
    [
        ("INT", "float64", True),
        ("BIGINT", "float64", True),
        ("FLOAT", "float64", True),
        ("DOUBLE", "int64", True),  # integral values only: checked row by row on the executors
        ("DECIMAL(10,2)", "float64", True),
        ("TINYINT", "int64", True),
        ("STRING", "float64", False),
        ("BOOLEAN", "float64", False),
        ("INT", "string", False),
        ("DATE", "string", False),
        ("DATE", "datetime", True),
        ("INT", "bool", True),  # 0 and 1 only: checked row by row on the executors
        ("STRING", "string", True),
        ("TIMESTAMP", "datetime", True),
        ("STRING", "datetime", True),  # ISO 8601 strings, as the schema module parses them
        ("ARRAY<INT>", "float64", False),
        ("ARRAY<INT>", "object", True),
        ("BINARY", "binary", True),
    ],
)
def test_query_types_are_judged_by_the_schema_module(sql_type, declared, fits):
    require_spark()
    from pyml_jupyter.batch import check_query_schema
    from pyml_jupyter.serving.schema import DataFrameSchema
    from pyspark.sql import types as T

    spark_types = {
        "INT": T.IntegerType(), "BIGINT": T.LongType(), "FLOAT": T.FloatType(), "DOUBLE": T.DoubleType(),
        "DECIMAL(10,2)": T.DecimalType(10, 2), "TINYINT": T.ByteType(), "STRING": T.StringType(),
        "BOOLEAN": T.BooleanType(), "DATE": T.DateType(), "TIMESTAMP": T.TimestampType(),
        "ARRAY<INT>": T.ArrayType(T.IntegerType()), "BINARY": T.BinaryType(),
    }
    spark_schema = T.StructType([T.StructField("v", spark_types[sql_type])])
    problems = check_query_schema(spark_schema, DataFrameSchema({"v": declared}))
    assert (problems == []) is fits, problems
    if not fits:
        assert problems[0]["field"] == "v"


def test_an_all_null_column_fits_only_a_nullable_input():
    require_spark()
    from pyml_jupyter.batch import check_query_schema
    from pyml_jupyter.serving.schema import DataFrameSchema
    from pyspark.sql import types as T

    spark_schema = T.StructType([T.StructField("v", T.NullType())])
    assert check_query_schema(spark_schema, DataFrameSchema({"v": "float64?"})) == []
    problems = check_query_schema(spark_schema, DataFrameSchema({"v": "float64"}))
    assert [p["field"] for p in problems] == ["v"]
    assert "NULL in every row" in problems[0]["error"]


def test_a_statement_that_is_not_a_query_is_refused(spark, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="is a DROP TABLE statement"):
        predict_offline(package, "DROP TABLE src", "scored_drop", spark=spark)
    assert spark.catalog.tableExists("src")


# ------------------------------------------------------------------------------------- table and modes


@pytest.mark.parametrize("name", ["x; DROP TABLE y", "1abc", "a.b.c", "a-b", "", "tbl`", "db..t", " t"])
def test_invalid_table_names_are_rejected(name, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(InvalidName):
        predict_offline(package, "SELECT 1.0 AS x1, 2.0 AS x2, 'paris' AS city", name, spark=object())


def test_an_unknown_mode_is_rejected(package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="mode"):
        predict_offline(package, "SELECT 1.0 AS x1", "t", mode="replace", spark=object())


def test_mode_error_refuses_an_existing_table(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    query = "SELECT id, x1, x2, city FROM src WHERE id < 10"
    predict_offline(package, query, "scored_exists", spark=spark, keep=["id"])
    with pytest.raises(BatchError, match="already exists.*overwrite"):
        predict_offline(package, query, "scored_exists", spark=spark, keep=["id"])
    assert spark.table("scored_exists").count() == 10


def test_overwrite_replaces_the_table(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 10", "scored_over", spark=spark,
                    keep=["id"])
    result = predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id >= 100 AND id < 130",
                             "scored_over", spark=spark, keep=["id"], mode="overwrite")
    got = _table(spark, "scored_over")
    assert result.rows == 30
    assert got["id"].tolist() == list(range(100, 130))


def test_overwrite_may_read_the_table_it_replaces(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 20", "scored_self", spark=spark)
    predict_offline(package, "SELECT id, x1, x2, city FROM scored_self WHERE id < 5", "scored_self", spark=spark,
                    mode="overwrite")
    assert _table(spark, "scored_self")["id"].tolist() == [0, 1, 2, 3, 4]


def test_append_adds_rows(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 10", "scored_append", spark=spark,
                    keep=["id"])
    result = predict_offline(package, "SELECT x1, x2, city, id FROM src WHERE id >= 10 AND id < 25",
                             "scored_append", spark=spark, keep=["id"], mode="append")
    got = _table(spark, "scored_append")
    assert result.rows == 15
    assert got["id"].tolist() == list(range(25))
    expected = _expected(package, source.sort_values("id").head(25))
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=0, atol=1e-12)


def test_append_refuses_a_table_with_other_columns(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 10", "scored_append_cols", spark=spark,
                    keep=["id"])
    with pytest.raises(BatchError, match="Cannot append"):
        predict_offline(package, "SELECT id, x1, x2, city FROM src", "scored_append_cols", spark=spark,
                        mode="append")
    assert spark.table("scored_append_cols").count() == 10


def test_a_database_qualified_table_is_written_there(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    database = f"pyml_test_scores_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {database}")
    try:
        predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 7", f"{database}.qualified",
                        spark=spark, keep=["id"])
        assert spark.table(f"{database}.qualified").count() == 7
        assert not spark.catalog.tableExists("qualified")
    finally:
        spark.sql(f"DROP DATABASE {database} CASCADE")


def test_a_view_is_not_overwritten(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    spark.sql("SELECT id, x1, x2, city FROM src WHERE id < 3").createOrReplaceTempView("a_view")
    with pytest.raises(BatchError, match="a_view is a view"):
        predict_offline(package, "SELECT x1, x2, city FROM src", "a_view", spark=spark, mode="overwrite")
    assert spark.table("a_view").count() == 3


def test_a_missing_database_is_named_before_the_job(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="Database nowhere does not exist"):
        predict_offline(package, "SELECT x1, x2, city FROM src", "nowhere.scored", spark=spark)


# --------------------------------------------------------------------------------------------- failures


def test_a_failed_job_leaves_no_table_behind(spark, source, failing_package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError) as info:
        predict_offline(failing_package, "SELECT id, x1, x2, city FROM src", "scored_failed", spark=spark,
                        batch_size=200)
    assert "ValueError: boom: x1 above 2" in str(info.value)
    assert "left no table behind" in str(info.value)
    assert not spark.catalog.tableExists("scored_failed")
    assert not (_database_dir(spark) / "scored_failed").exists()
    assert _leftovers(spark) == []


def test_a_failed_overwrite_keeps_the_previous_table(spark, source, package, failing_package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 10", "scored_keep_old", spark=spark)
    before = _table(spark, "scored_keep_old")
    with pytest.raises(BatchError, match="existing table is unchanged"):
        predict_offline(failing_package, "SELECT id, x1, x2, city FROM src", "scored_keep_old", spark=spark,
                        mode="overwrite")
    pd.testing.assert_frame_equal(_table(spark, "scored_keep_old"), before)
    assert _leftovers(spark) == []


def test_a_failed_append_adds_no_rows(spark, source, package, failing_package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 10", "scored_append_fail", spark=spark)
    with pytest.raises(BatchError, match="boom"):
        predict_offline(failing_package, "SELECT id, x1, x2, city FROM src", "scored_append_fail", spark=spark,
                        mode="append")
    assert spark.table("scored_append_fail").count() == 10


# ------------------------------------------------------------------------------------ executors, progress


def test_the_model_is_loaded_once_per_python_worker_from_the_shipped_runtime(spark, source, workdir):
    from pyml_jupyter.batch import predict_offline

    log = workdir / "loads.log"
    package = _variant(
        workdir / "counting",
        header="import pyml_jupyter.serving.contract as _contract\n",
        on_init=f'with open({str(log)!r}, "a") as f:\n    f.write(f"load {{os.getpid()}} {{_contract.__file__}}\\n")\n',
        on_predict=f'with open({str(log)!r}, "a") as f:\n    f.write(f"predict {{os.getpid()}} {{len(df)}}\\n")\n',
    )
    query = "SELECT /*+ REPARTITION(8) */ id, x1, x2, city FROM src"
    predict_offline(package, query, "scored_counting", spark=spark, keep=["id"], batch_size=100)
    predict_offline(package, query, "scored_counting", spark=spark, keep=["id"], batch_size=100, mode="overwrite")

    records = [line.split(" ", 2) for line in log.read_text().splitlines()]
    loads = [(pid, path) for kind, pid, path in records if kind == "load"]
    batches = [int(n) for kind, _, n in records if kind == "predict"]
    assert sum(batches) == 2 * N_ROWS
    assert max(batches) <= 100 and len(batches) >= 2 * N_ROWS // 100
    # (the runtime's path names the archive: a runtime edited between the two jobs is a new archive)
    assert len(loads) == len(set(loads)), f"a worker process loaded the same archive twice: {loads}"
    assert len(loads) <= 2 * spark.sparkContext.defaultParallelism  # 16 tasks, 2 jobs, 100 batches
    for _, path in loads:  # the serving runtime came with the package, not from this checkout
        assert path.endswith(os.path.join("runtime", "pyml_jupyter", "serving", "contract.py")), path
        assert not path.startswith(str(REPO)), path


def test_progress_follows_the_spark_job(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    progress = Progress("batch")
    fractions: list[float] = []
    progress.subscribe(lambda p, event, payload: fractions.append(p.fraction) if p.fraction is not None else None)
    predict_offline(package, "SELECT /*+ REPARTITION(4) */ id, x1, x2, city FROM src", "scored_progress",
                    spark=spark, progress=progress)

    assert progress.stage == "done" and progress.fraction == 1.0
    assert any(0 < f < 1 for f in fractions) or fractions.count(1.0) >= 1
    lines = progress.tail(100)
    assert any(line.startswith("Spark stage") and "finished" in line for line in lines), lines
    assert any(line.startswith("wrote 5,000 rows to scored_progress") for line in lines), lines


def test_batch_result_reads_well_in_text_and_html(spark, source, package):
    from pyml_jupyter.batch import predict_offline

    result = predict_offline(package, "SELECT id, x1, x2, city FROM src WHERE id < 3", "scored_repr", spark=spark)
    result.ref = "example/1"
    assert repr(result).startswith("BatchResult(example/1 -> scored_repr: 3 rows in ")
    assert "rows/s" in repr(result)
    html = result._repr_html_()
    assert "scored_repr" in html and "example/1" in html and "<table>" in html
    assert result.to_dict()["rows"] == 3


# -------------------------------------------------------------------------------------- tensor models

_TENSOR_MODEL = """
import numpy as np
from pyml_jupyter.serving.contract import TensorModel


class Tensors(TensorModel):
    def predict(self, tensors):
        x, w = tensors["x"], tensors["w"]
        return {"s": x.sum(axis=1) * w, "top2": np.argsort(-x, axis=1)[:, :2].astype(np.int64)}
"""


def _tensor_package(directory: Path, inputs: dict, outputs: dict) -> Path:
    """A TensorModel package written by hand: ``{name: (dtype, shape)}`` inputs and outputs."""
    from pyml_jupyter.serving.schema import TensorSchema

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(_TENSOR_MODEL)
    contract = {"format_version": 1, "kind": "tensor", "class_name": "Tensors", "takes_artifacts": False,
                "input_schema": TensorSchema(inputs).to_dict(), "output_schema": TensorSchema(outputs).to_dict(),
                "artifacts": {}, "python_version": ".".join(map(str, sys.version_info[:3])), "metadata": {}}
    (directory / "pyml.json").write_text(json.dumps(contract))
    return directory


@pytest.fixture(scope="module")
def tensor_package(workdir) -> Path:
    return _tensor_package(workdir / "tensors", {"x": ("float64", (-1, 3)), "w": ("float64", (-1,))},
                           {"s": ("float64", (-1,)), "top2": ("int64", (-1, 2))})


def test_a_tensor_model_scores_array_and_scalar_columns_into_array_and_scalar_columns(spark, tensor_package):
    from pyml_jupyter.batch import predict_offline

    x = np.random.default_rng(4).normal(size=(50, 3))
    spark.createDataFrame(pd.DataFrame({"id": np.arange(50), "x": list(x), "w": np.arange(50) % 3 + 0.5})
                          ).write.mode("overwrite").saveAsTable("tensor_src")

    result = predict_offline(tensor_package, "SELECT id, x, CAST(w AS FLOAT) AS w FROM tensor_src", "tensor_out",
                             spark=spark, keep="id", batch_size=7)

    assert result.rows == 50 and result.columns == ["id", "s", "top2"]
    table = spark.table("tensor_out")
    assert [f.dataType.simpleString() for f in table.schema.fields] == ["bigint", "double", "array<bigint>"]
    scored = table.toPandas().sort_values("id")
    expected = load_package(tensor_package).predict({"x": x, "w": (np.arange(50) % 3 + 0.5).astype(np.float32)})
    np.testing.assert_allclose(scored["s"].to_numpy(), expected["s"], rtol=1e-12)
    np.testing.assert_array_equal(np.stack(scored["top2"].to_list()), expected["top2"])


@pytest.mark.parametrize("shape", [(-1, 2, 2), (-1, -1), (3,), ()])
def test_a_tensor_without_a_column_form_is_refused_naming_it_before_spark_starts(workdir, shape):
    from pyml_jupyter.batch import predict_offline

    package = _tensor_package(workdir / f"tensors-{len(shape)}-{uuid.uuid4().hex[:6]}",
                              {"x": ("float64", shape), "w": ("float64", (-1,))}, {"s": ("float64", (-1,))})
    with pytest.raises(BatchError) as refused:
        predict_offline(package, "SELECT 1 AS x", "never_written", spark=object())  # not even a session

    message = refused.value.message
    assert "input tensor 'x' has shape (" in message and "No Spark job was started" in message
    assert "\n" not in message


def test_a_tensor_column_of_the_wrong_form_is_refused_with_a_cast(spark, tensor_package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match=r"column 'x' is DOUBLE in the query but tensor 'x' is float64, shape "
                                         r"\(None, 3\); CAST it in the query: CAST\(x AS ARRAY<DOUBLE>\)"):
        predict_offline(tensor_package, "SELECT 1.0D AS x, 2.0D AS w", "never_written", spark=spark)


# --------------------------------------------------------------------------------------- predict_frame


def test_predict_frame_equals_in_process_predictions_with_the_same_index(spark, package):
    from pyml_jupyter.batch import predict_frame

    frame = example_frame(37, seed=11)
    frame.index = pd.Index([f"r{i}" for i in range(37)][::-1], name="key")
    expected = load_package(package).predict(frame)
    got = predict_frame(package, frame, spark=spark)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-12)


def test_predict_frame_refuses_a_frame_missing_a_column(spark, package):
    from pyml_jupyter.batch import predict_frame

    with pytest.raises(BatchError, match="missing column 'city'"):
        predict_frame(package, example_frame(3).drop(columns=["city"]), spark=spark)


def test_predict_frame_of_no_rows_returns_no_rows(spark, package):
    from pyml_jupyter.batch import predict_frame

    got = predict_frame(package, example_frame(3).iloc[:0], spark=spark)
    assert len(got) == 0 and list(got.columns) == ["score", "label"]
    assert got.dtypes.astype(str).tolist() == ["float64", "int64"]


# -------------------------------------------------------------------------------------------- sessions


# pyml_jupyter comes from sys.path, not PYTHONPATH: Spark's Python workers cannot import it (where it is not
# installed) and must use the runtime shipped with the package.
_SESSION_SCRIPT = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(REPO)!r})
    from pyml_jupyter.batch import predict_offline, spark_session

    spark = spark_session(warehouse_dir=sys.argv[1])
    if sys.argv[2] == "write":
        spark.sql("CREATE DATABASE IF NOT EXISTS kept")
        query = "SELECT * FROM VALUES (1, 0.5D, -1.0D, 'paris'), (2, 1.5D, 2.0D, 'nice') AS t(id, x1, x2, city)"
        print(predict_offline(sys.argv[3], query, "kept.persisted", spark=spark))
    else:
        print("ROWS", sorted(r.id for r in spark.table("kept.persisted").collect()))
    spark.stop()
    """
)


def test_tables_persist_across_sessions(tmp_path, package):
    require_spark()
    script = tmp_path / "session.py"
    script.write_text(_SESSION_SCRIPT)
    warehouse = tmp_path / "wh" / "spark-warehouse"

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, str(script), str(warehouse), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "kept.persisted: 2 rows" in run("write", str(package))
    assert "ROWS [1, 2]" in run("read")
    assert (tmp_path / "wh" / "metastore_db").is_dir()


def test_a_metastore_held_by_another_process_is_a_clear_error(spark, tmp_path):
    warehouse = Path(urlparse(spark.conf.get("spark.sql.warehouse.dir")).path)
    if not (warehouse.parent / "metastore_db").is_dir():
        pytest.skip("the running session was not made by spark_session() (no Derby metastore beside its warehouse)")
    script = tmp_path / "second_kernel.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from pyml_jupyter.batch import spark_session
        from pyml_jupyter.errors import BatchError
        try:
            spark_session(warehouse_dir={str(warehouse)!r})
        except BatchError as e:
            print("REFUSED", e)
        else:
            print("OPENED")
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "REFUSED" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "cannot open its metastore" in done.stdout and "PYML_SPARK_WAREHOUSE" in done.stdout


def test_a_running_session_is_reused(spark):
    from pyml_jupyter.batch import spark_session

    assert spark_session() is spark
    assert spark.conf.get("spark.sql.catalogImplementation") == "hive"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
