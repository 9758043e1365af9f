"""What a batch job reads (pyml_jupyter.batch.query, .spark_types): only a query, by Spark's own parser; the
kept columns; the Spark type of every schema dtype. Real Spark session, real Hive catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_example_package
from pyml_jupyter.errors import BatchError
from pyml_jupyter.serving.schema import DATAFRAME_DTYPES, DataFrameSchema
from spark_fixtures import require_spark, spark, workdir  # noqa: F401 - fixtures are used by name

pytestmark = pytest.mark.spark

VICTIM_ROWS = [(1, 0.5, 1.5, "paris"), (2, -0.5, 2.5, "nice")]


@pytest.fixture(scope="module")
def package(workdir) -> Path:
    return write_example_package(workdir / "example")


@pytest.fixture
def victim(spark):
    """The table `victim` with two known rows, made afresh for each test; the refused statements aim at it."""
    spark.sql("DROP TABLE IF EXISTS victim")
    spark.createDataFrame(VICTIM_ROWS, "id BIGINT, x1 DOUBLE, x2 DOUBLE, city STRING").write.saveAsTable("victim")
    return "victim"


def _catalog_state(spark) -> tuple[list[str], list[tuple]]:
    """The current database's tables (and views), and the rows of `victim`."""
    tables = sorted(t.name for t in spark.catalog.listTables())
    rows = sorted(tuple(r) for r in spark.table("victim").collect()) if "victim" in tables else []
    return tables, rows


# ------------------------------------------------------------------------------------------ only a query


@pytest.mark.parametrize("query", [
    "SELECT id, x1, x2, city FROM victim",
    "WITH v AS (SELECT * FROM victim) SELECT id, x1, x2, city FROM v",
    "FROM victim SELECT id, x1, x2, city",
    "TABLE victim",
    "VALUES (1L, 0.5D, 1.5D, 'paris') AS t(id, x1, x2, city)",
    "(SELECT * FROM victim)",
    "-- the rows to score\nSELECT * FROM victim /* all of them */",
    "SELECT * FROM victim;",
    "SELECT * FROM victim WHERE id IN (SELECT id FROM victim) UNION ALL SELECT * FROM victim",
])
def test_every_form_of_query_is_accepted(spark, victim, query):
    from pyml_jupyter.batch import check_query

    assert check_query(spark, query) == query.rstrip(";")


@pytest.mark.parametrize(("query", "kind"), [
    ("FROM victim INSERT OVERWRITE TABLE victim SELECT id, x1, x2, 'lyon'", "an INSERT INTO statement"),
    ("WITH v AS (SELECT * FROM victim) INSERT INTO victim SELECT * FROM v", "an INSERT INTO statement"),
    ("FROM victim INSERT INTO victim SELECT * INSERT INTO victim SELECT *", "an INSERT INTO statement"),
    ("INSERT INTO victim VALUES (3L, 0D, 0D, 'lyon')", "an INSERT INTO statement"),
    ("CREATE TABLE made_by_query AS SELECT * FROM victim", "a CREATE TABLE AS SELECT statement"),
    ("CREATE TEMPORARY VIEW made_by_query AS SELECT * FROM victim", "a CREATE VIEW statement"),
    ("CACHE TABLE made_by_query AS SELECT * FROM victim", "a CACHE TABLE AS SELECT statement"),
    ("DROP TABLE victim", "a DROP TABLE statement"),
    ("TRUNCATE TABLE victim", "a TRUNCATE TABLE statement"),
    ("ALTER TABLE victim RENAME TO made_by_query", "a RENAME TABLE statement"),
    ("EXECUTE IMMEDIATE 'DROP TABLE victim'", "an EXECUTE IMMEDIATE statement"),
    ("SELECT * FROM victim; DROP TABLE victim", "more than one statement (the first is a query)"),
    ("DROP TABLE victim; SELECT * FROM victim", "more than one statement (the first is a DROP TABLE statement)"),
])
def test_a_statement_that_is_not_a_query_is_refused_by_kind_and_changes_no_table(spark, victim, package, query,
                                                                                    kind):
    from pyml_jupyter.batch import predict_offline

    before = _catalog_state(spark)
    with pytest.raises(BatchError, match="Nothing was run") as info:
        predict_offline(package, query, "scored_by_command", spark=spark)
    assert kind in str(info.value)
    assert _catalog_state(spark) == before
    assert not spark.catalog.tableExists("made_by_query")
    assert not spark.catalog.tableExists("scored_by_command")


def test_a_directory_insert_writes_no_file(spark, victim, package, tmp_path):
    from pyml_jupyter.batch import predict_offline

    target = tmp_path / "written"
    with pytest.raises(BatchError, match="INSERT INTO DIR statement"):
        predict_offline(package, f"INSERT OVERWRITE DIRECTORY '{target}' USING parquet SELECT * FROM victim",
                        "scored_by_command", spark=spark)
    assert not target.exists()


def test_a_set_statement_changes_no_setting(spark, victim, package):
    from pyml_jupyter.batch import predict_offline

    before = spark.conf.get("spark.sql.shuffle.partitions")
    with pytest.raises(BatchError, match="a SET statement"):
        predict_offline(package, "SET spark.sql.shuffle.partitions=3", "scored_by_command", spark=spark)
    assert spark.conf.get("spark.sql.shuffle.partitions") == before


def test_a_syntax_error_is_spark_s_own_message(spark, package):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="Spark cannot parse the query: .*SELEC"):
        predict_offline(package, "SELEC x1 FROM victim", "scored_by_command", spark=spark)


@pytest.mark.parametrize("query", ["", "   ", " ;\n"])
def test_an_empty_query_is_refused_before_spark_starts(package, query):
    from pyml_jupyter.batch import predict_offline

    with pytest.raises(BatchError, match="The query is empty"):
        predict_offline(package, query, "t", spark=object())


def test_the_accepted_query_is_what_runs(spark, victim, package):
    from pyml_jupyter.batch import predict_offline

    result = predict_offline(package, "TABLE victim;\n", "scored_table_form", spark=spark, keep=["id"])

    assert result.rows == len(VICTIM_ROWS)
    assert spark.table("scored_table_form").columns == ["id", "score", "label"]


# -------------------------------------------------------------------------------------------------- keep


@pytest.mark.parametrize(("given", "parsed"), [
    (None, None),
    ("", None),
    (" , ", None),
    ("id", ["id"]),
    (" id , city,", ["id", "city"]),
    (["id", "city"], ["id", "city"]),
    ([], []),
])
def test_keep_is_read_the_same_from_a_string_or_a_list(given, parsed):
    from pyml_jupyter.batch import parse_keep

    assert parse_keep(given) == parsed


def test_keep_may_be_given_as_the_faces_pass_it(spark, victim, package):
    from pyml_jupyter.batch import predict_offline

    predict_offline(package, "SELECT * FROM victim", "scored_keep_text", spark=spark, keep="id, city")

    assert spark.table("scored_keep_text").columns == ["id", "city", "score", "label"]


# -------------------------------------------------------------------------------------------- Spark types


def test_the_spark_type_table_covers_every_dtype_the_schema_accepts():
    require_spark()
    from pyml_jupyter.batch import spark_types

    assert list(spark_types()) == list(DATAFRAME_DTYPES)
    assert [d for d, t in spark_types().items() if t is None] == ["object"]


@pytest.mark.parametrize("dtype", [d for d in DATAFRAME_DTYPES if d != "object"])
def test_a_column_of_each_dtype_s_spark_type_fits_that_dtype(dtype):
    require_spark()
    from pyml_jupyter.batch import check_query_schema, spark_type
    from pyspark.sql import types as T

    spark_schema = T.StructType([T.StructField("v", spark_type(dtype))])
    assert check_query_schema(spark_schema, DataFrameSchema({"v": dtype})) == []


def test_the_sql_spelling_of_each_dtype_is_its_spark_type(spark):
    from pyml_jupyter.batch import spark_types
    from pyml_jupyter.batch.spark_types import sql_type

    for dtype, data_type in spark_types().items():
        if data_type is None:
            assert sql_type(dtype) is None
        else:
            assert spark.sql(f"SELECT CAST(NULL AS {sql_type(dtype)}) AS v").schema["v"].dataType == data_type


def test_object_has_no_spark_type():
    require_spark()
    from pyml_jupyter.batch import spark_type

    with pytest.raises(BatchError, match="'object' cannot be stored"):
        spark_type("object")
