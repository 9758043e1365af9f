"""Offline predictions on Spark: score the rows of a SQL query with a model package, into a table.

    predict_offline(package_dir, "SELECT id, x1, x2, city FROM events", "scores.events_scored", keep=["id"])

The same model package the notebook checked, MLflow logged and the container serves is shipped to the
executors with Spark's own means (``SparkContext.addArchive``), together with the serving runtime
(``pyml_jupyter/serving``), so executors need neither this package nor MLflow: only the model's own
requirements. On every executor Python process the package is loaded once (:func:`~.serving.loader.load_package`)
and rows are scored in Arrow batches with ``mapInPandas``, through :meth:`LoadedModel.predict`, which enforces
the input schema with the one schema module (:mod:`pyml_jupyter.serving.schema`) before the model's code runs.

Before any Spark job starts, the query's column types are checked against the package's input schema by the
same schema module (:func:`check_query_schema`): a missing or mistyped column is refused at once, by name.

Writing is all-or-nothing. ``mode="error"`` and ``"overwrite"`` write into a temporary table and rename it
to ``output_table`` only once the job succeeded (an overwritten table is replaced only then; the query may
even read the table it overwrites); ``"append"`` inserts through Spark's commit protocol, which adds no file
of a failed job. A failed job leaves no table (and no half-written files) behind.

Types. The model sees what ``mapInPandas`` delivers (Spark ``INT`` -> ``int32``, ``BIGINT`` -> ``int64``,
``STRING`` -> ``str`` objects, ``DATE`` -> ``datetime.date``, ``DECIMAL`` -> ``Decimal``, ``TIMESTAMP`` ->
naive ``datetime64[ns]`` in the session time zone, integers with NULLs -> pandas ``IntN``), coerced to the
declared dtypes by the schema module. Prediction columns get the Spark type of their output dtype
(:func:`spark_type`): ``bool`` BOOLEAN, ``int8/16/32/64`` TINYINT/SMALLINT/INT/BIGINT, ``uint8/16/32`` the
next wider signed type, ``uint64`` DECIMAL(20,0), ``float32/64`` FLOAT/DOUBLE, ``string`` STRING,
``datetime`` TIMESTAMP, ``binary`` BINARY; nullable as declared.

Sessions. :func:`spark_session` is the embedded default: ``local[*]`` with a Hive catalog whose warehouse
(``./spark-warehouse``) and Derby metastore (``./metastore_db``) live in the working directory, so tables
written in one notebook session are there in the next. ``PYML_SPARK_WAREHOUSE`` and ``PYML_SPARK_MASTER``
move them; a session passed as ``spark=`` (a cluster's) is used as given.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import hashlib
import html
import os
import re
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from .errors import BatchError, InvalidName, PymlError
from .progress import Progress
from .serving.loader import PackageInfo, package_digest, read_package
from .serving.schema import ColumnSpec, DataFrameSchema, SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

__all__ = [
    "BatchResult",
    "MODES",
    "spark_session",
    "check_query_schema",
    "spark_type",
    "predict_offline",
    "predict_frame",
]

MODES = ("error", "overwrite", "append")
ENV_WAREHOUSE = "PYML_SPARK_WAREHOUSE"
ENV_MASTER = "PYML_SPARK_MASTER"
DEFAULT_WAREHOUSE = "spark-warehouse"
ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_QUERY_START = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*(\w+)", re.S)
_QUERY_WORDS = {"SELECT", "WITH", "FROM", "TABLE", "VALUES"}
_ROW_ID = "__pyml_row_id"
_CACHE_MODULE = "_pyml_batch_models"  # per executor Python process: archive name -> LoadedModel

# The stub ``pyml_jupyter/__init__.py`` shipped beside the runtime: it lets an executor without pyml_jupyter
# import ``pyml_jupyter.serving`` (and, where pyml_jupyter is installed, still find its other modules).
_RUNTIME_INIT = (
    '"""pyml_jupyter\'s serving runtime, shipped to Spark executors by pyml_jupyter.batch."""\n'
    "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
)

# Quiet JVM logs for the embedded session (errors only; the notebook gets progress from us).
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# PySpark's shell level: set, so Spark does not announce "Setting default log level to WARN"
logger.repl.name = org.apache.spark.api.python.PythonGatewayServer
logger.repl.level = error
# A metastore that cannot open is reported to the caller (BatchError); its stack traces would only be noise.
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = fatal
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = fatal
"""


# ------------------------------------------------------------------------------------------- sessions


def _pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise PymlError("Spark scoring needs pyspark: pip install 'pyml_jupyter[spark]' (and a Java 17+ "
                        "runtime).") from None


def spark_session(conf: Mapping[str, str] | None = None, *, warehouse_dir: str | os.PathLike | None = None,
                  master: str | None = None) -> "SparkSession":
    """The Spark session batch scoring uses by default: this process's running session, else a new local one.

    A new session runs ``master`` (default ``$PYML_SPARK_MASTER`` or ``local[*]``) with a Hive catalog: the
    warehouse is ``warehouse_dir`` (default ``$PYML_SPARK_WAREHOUSE`` or ``./spark-warehouse``) and the Derby
    metastore ``metastore_db`` sits beside it, so tables survive kernel restarts. Arrow is on, logs are quiet,
    and local Python workers run this interpreter (``PYSPARK_PYTHON=sys.executable``). ``conf`` entries are
    applied last (they win). Derby allows one process at a time per metastore: a second kernel in the same
    directory gets a clear error (point it at another warehouse, or use a shared metastore).
    """
    _pyspark()
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    if running is None and SparkContext._active_spark_context is not None:
        running = SparkSession.builder.getOrCreate()
    if running is not None:
        for key, value in (conf or {}).items():
            try:
                running.conf.set(key, value)
            except Exception:  # a static setting of a session that already runs
                warnings.warn(f"Spark is already running in this process; {key} cannot change now (restart the "
                              f"kernel to apply it).", stacklevel=2)
        return running

    master = master or os.environ.get(ENV_MASTER) or "local[*]"
    warehouse = Path(warehouse_dir or os.environ.get(ENV_WAREHOUSE) or DEFAULT_WAREHOUSE).expanduser().resolve()
    home = warehouse.parent
    home.mkdir(parents=True, exist_ok=True)
    metastore = home / "metastore_db"
    if master.startswith("local"):
        # Workers must run the kernel's interpreter: same pandas/pyarrow, same libraries as the model.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    log4j = Path(tempfile.gettempdir()) / "pyml-spark-log4j2.properties"
    if not log4j.is_file() or log4j.read_text() != _LOG4J2:
        log4j.write_text(_LOG4J2)
    settings: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": "pyml_jupyter",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home} -Dlog4j2.configurationFile={log4j.as_uri()}",
    }
    for key, value in (conf or {}).items():
        if key == "spark.driver.extraJavaOptions":
            value = f"{settings[key]} {value}"
        settings[key] = str(value)
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    if "spark.sql.catalogImplementation" not in settings:  # conf may ask for the in-memory catalog instead
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if spark.conf.get("spark.sql.catalogImplementation", "hive") != "hive":
        return spark
    try:
        spark.sql("SHOW DATABASES").collect()  # open the metastore now, so a locked one fails here, clearly
    except Exception as exc:
        spark.stop()
        raise BatchError(
            f"Spark started but cannot open its metastore at {metastore}: {_first_line(exc)}. Derby lets one "
            f"process at a time use it; another kernel or Spark application in {home} probably holds it. Stop that "
            f"one, or set {ENV_WAREHOUSE} to a folder of this session's own."
        ) from exc
    return spark


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "desc", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -------------------------------------------------------------------------------------------- types

# schema dtype -> Spark SQL type (DDL spelling); also the CAST target suggested for a mistyped column.
_SQL_TYPES = {
    "bool": "BOOLEAN", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INT", "int64": "BIGINT",
    "uint8": "SMALLINT", "uint16": "INT", "uint32": "BIGINT", "uint64": "DECIMAL(20,0)",
    "float32": "FLOAT", "float64": "DOUBLE", "string": "STRING", "datetime": "TIMESTAMP", "binary": "BINARY",
}


def spark_type(dtype: str) -> "DataType":
    """The Spark type of a schema dtype (``int64`` -> ``LongType()``, ...); ``object`` has none."""
    _pyspark()
    from pyspark.sql import types as T

    types = {
        "bool": T.BooleanType, "int8": T.ByteType, "int16": T.ShortType, "int32": T.IntegerType,
        "int64": T.LongType, "uint8": T.ShortType, "uint16": T.IntegerType, "uint32": T.LongType,
        "uint64": lambda: T.DecimalType(20, 0), "float32": T.FloatType, "float64": T.DoubleType,
        "string": T.StringType, "datetime": T.TimestampType, "binary": T.BinaryType,
    }
    dtype = ColumnSpec("_", dtype).dtype
    if dtype not in types:
        raise BatchError(f"a column of dtype {dtype!r} cannot be stored in a Spark table; declare it with one of "
                         f"{', '.join(types)}.")
    return types[dtype]()


def _representative(data_type: "DataType") -> pd.Series | None:
    """One non-null value of a Spark type exactly as ``mapInPandas`` hands it to Python, or None for NULL.

    The schema module decides by dtype and content (and, for a few rules, values: integral floats may become
    ints, 0/1 may become bools, ISO strings may become datetimes); a neutral value lets it decide for a type
    what it would decide for the column's rows, which are then enforced again, batch by batch, on executors.
    """
    from pyspark.sql import types as T

    numpy = {T.ByteType: "int8", T.ShortType: "int16", T.IntegerType: "int32", T.LongType: "int64",
             T.FloatType: "float32", T.DoubleType: "float64"}
    for spark_cls, dtype in numpy.items():
        if isinstance(data_type, spark_cls):
            return pd.Series(np.zeros(1, dtype=dtype))
    if isinstance(data_type, T.BooleanType):
        return pd.Series(np.zeros(1, dtype=bool))
    if isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        return pd.Series(np.zeros(1, dtype="datetime64[ns]"))
    if isinstance(data_type, T.NullType):
        return None
    value: Any
    if isinstance(data_type, (T.StringType, T.VarcharType, T.CharType)):
        value = "1970-01-01"
    elif isinstance(data_type, T.BinaryType):
        value = b""
    elif isinstance(data_type, T.DateType):
        value = _dt.date(1970, 1, 1)
    elif isinstance(data_type, T.DecimalType):
        value = decimal.Decimal(0)
    else:  # arrays, maps, structs, intervals...: opaque objects, acceptable only to an `object` column
        value = object()
    return pd.Series([value], dtype=object)


def check_query_schema(spark_schema: "StructType", input_schema: DataFrameSchema) -> list[dict]:
    """Problems (``{"field", "error", "spark_type"}``) that make a query's columns unfit for a model; [] if fit.

    The decision is the schema module's: each Spark column becomes a one-row pandas column holding a value of
    the type ``mapInPandas`` will deliver, and :meth:`DataFrameSchema.enforce` says whether it can be coerced
    to the declared dtype (so ``INT`` for ``float64`` is accepted, ``INT`` for ``string`` is not). Only the
    wording is Spark's: the SQL type found and a ``CAST`` that fixes it. Columns the schema does not declare
    are fine (they are ignored, or kept with ``keep``).
    """
    _pyspark()
    fields = list(spark_schema.fields)
    by_name: dict[str, list] = {}
    for f in fields:
        by_name.setdefault(f.name, []).append(f)
    problems: list[dict] = []
    columns: list[pd.Series] = []
    declared = {c.name: c for c in input_schema.columns}
    for f in fields:
        spec = declared.get(f.name)
        sql_type = f.dataType.simpleString().upper()
        value = _representative(f.dataType)
        if value is None:  # NULL in every row (Spark's VOID type)
            if spec is not None and not spec.nullable and len(by_name[f.name]) == 1:
                problems.append({"field": f.name, "spark_type": sql_type,
                                 "error": f"column '{f.name}' is NULL in every row ({sql_type}) but the model's "
                                          f"input schema declares {spec.dtype} (not nullable)"})
            value = pd.Series([None], dtype=object)
        columns.append(value.rename(f.name))
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=range(1))
    try:
        input_schema.enforce(frame)
        found: list[dict] = []
    except SchemaError as exc:
        found = exc.problems
    reported = {p["field"] for p in problems}
    for p in found:
        name = p["field"]
        if name in reported:
            continue
        spec = declared.get(name)
        matches = by_name.get(name, [])
        if spec is None:  # not expected: the schema only reports its own columns
            problems.append({"field": name, "error": p["error"], "spark_type": ""})
        elif not matches:
            similar = [f.name for f in fields if f.name.lower() == name.lower()]
            hint = f"; the query has '{similar[0]}': alias it AS {name}" if similar else ""
            problems.append({"field": name, "spark_type": "",
                             "error": f"missing column '{name}' ({spec.declared}){hint}"})
        elif len(matches) > 1:
            problems.append({"field": name, "spark_type": matches[0].dataType.simpleString().upper(),
                             "error": f"column '{name}' appears {len(matches)} times in the query; keep one"})
        else:
            sql_type = matches[0].dataType.simpleString().upper()
            cast = _SQL_TYPES.get(spec.dtype)
            fix = f"; CAST it in the query: CAST({name} AS {cast}) AS {name}" if cast else ""
            problems.append({"field": name, "spark_type": sql_type,
                             "error": f"column '{name}' is {sql_type} in the query but the model's input schema "
                                      f"declares {spec.declared}{fix}"})
    return problems


def _output_struct(keep_fields: list, output_schema: DataFrameSchema) -> "StructType":
    from pyspark.sql import types as T

    unstorable = [c.name for c in output_schema.columns if c.dtype not in _SQL_TYPES]
    if unstorable:
        raise BatchError(f"The model's output column(s) {', '.join(unstorable)} have dtype 'object', which no Spark "
                         f"column type holds; declare them in output_schema with one of {', '.join(_SQL_TYPES)}.")
    out = [T.StructField(c.name, spark_type(c.dtype), c.nullable) for c in output_schema.columns]
    return T.StructType([*keep_fields, *out])


# ------------------------------------------------------------------------------------ shipping the package


def _runtime_dir() -> Path:
    from . import serving

    return Path(serving.__file__).resolve().parent


def _runtime_files() -> list[Path]:
    root = _runtime_dir()
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def _package_archive(package_dir: Path) -> Path:
    """A zip of ``package/`` (the model package) and ``runtime/pyml_jupyter/serving`` (the serving runtime),
    named by the digest of both, so a changed package or runtime is never confused with an earlier one."""
    h = hashlib.sha256(package_digest(package_dir).encode())
    runtime = _runtime_dir()
    for f in _runtime_files():
        h.update(f.relative_to(runtime).as_posix().encode() + b"\0" + f.read_bytes())
    h.update(_RUNTIME_INIT.encode())
    path = Path(tempfile.gettempdir()) / "pyml-batch" / f"pyml-{h.hexdigest()[:20]}.zip"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            z.write(f, "package/" + f.relative_to(package_dir).as_posix())
        z.writestr("runtime/pyml_jupyter/__init__.py", _RUNTIME_INIT)
        for f in _runtime_files():
            z.write(f, "runtime/pyml_jupyter/serving/" + f.relative_to(runtime).as_posix())
    os.replace(partial, path)
    return path


def _ship(spark: "SparkSession", package_dir: Path) -> str:
    """Add the package archive to the Spark context (once); executors find it as ``SparkFiles.get(name)``."""
    archive = _package_archive(package_dir)
    sc = spark.sparkContext
    if not any(a.rstrip("/").endswith("/" + archive.name) for a in sc.listArchives):
        sc.addArchive(str(archive))
    return archive.name


def _make_scorer(archive: str, keep: list[str], row_id: str | None) -> Callable[[Iterator[pd.DataFrame]],
                                                                                 Iterator[pd.DataFrame]]:
    """The function ``mapInPandas`` runs on executors.

    It is a closure on purpose: cloudpickle ships it by value, so an executor needs neither pyml_jupyter nor
    this module, only the archive (which carries the serving runtime). The loaded model is cached in a module
    registered in ``sys.modules``, which lives as long as the (reused) Python worker process.
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import decimal as _decimal
        import os as _os
        import sys as _sys
        import types as _types

        import pandas as _pd
        from pyspark import SparkFiles

        cache = _sys.modules.get(_CACHE_MODULE)
        if cache is None:
            cache = _types.ModuleType(_CACHE_MODULE)
            cache.models = {}
            _sys.modules[_CACHE_MODULE] = cache
        model = cache.models.get(archive)
        if model is None:
            root = SparkFiles.get(archive)
            runtime = _os.path.join(root, "runtime")
            if runtime not in _sys.path:
                _sys.path.insert(0, runtime)  # the driver's runtime: the same schema code that checked the query
            from pyml_jupyter.serving.loader import load_package

            model = load_package(_os.path.join(root, "package"))
            cache.models = {archive: model}  # one model per process: a new package replaces the previous one
        from pyml_jupyter.serving.schema import SchemaError as _SchemaError

        output_schema = model.info.output_schema
        as_decimal = [c.name for c in output_schema.columns if c.dtype == "uint64"]
        for pdf in batches:
            if not len(pdf):
                continue
            prediction = model.predict(pdf)
            try:
                out = output_schema.enforce(prediction).data
            except _SchemaError as exc:
                raise _SchemaError(exc.problems,
                                   summary="The model's output does not match its output schema") from None
            if len(out) != len(pdf):
                raise ValueError(f"the model returned {len(out)} rows for {len(pdf)} input rows; predict() must "
                                 f"return one row per input row")
            out = out.reset_index(drop=True)
            for name in as_decimal:  # DECIMAL(20,0) in Spark: Arrow wants Decimal objects
                out[name] = _pd.Series([None if v is _pd.NA else _decimal.Decimal(int(v)) for v in out[name]],
                                       dtype=object)
            kept = pdf[keep + ([row_id] if row_id else [])].reset_index(drop=True)
            yield _pd.concat([kept, out], axis=1)

    return score


# ----------------------------------------------------------------------------------------- progress


class _JobWatcher:
    """Polls ``statusTracker()`` for a job group's stages and reports tasks done into a Progress."""

    def __init__(self, spark: "SparkSession", group: str, progress: Progress, stage: str,
                 interval: float = 0.5) -> None:
        self.sc = spark.sparkContext
        self.group = group
        self.progress = progress
        self.stage = stage
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pyml-batch-progress-{group}", daemon=True)
        self._seen: dict[int, str] = {}
        self._last: tuple | None = None

    def __enter__(self) -> "_JobWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the context may be stopping; progress is best effort
                return

    def poll(self) -> None:
        tracker = self.sc.statusTracker()
        stage_fractions: list[float] = []
        active = []
        for job_id in sorted(tracker.getJobIdsForGroup(self.group)):
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            for stage_id in job.stageIds:
                info = tracker.getStageInfo(stage_id)
                if info is None or info.numTasks == 0:
                    stage_fractions.append(0.0)
                    continue
                stage_fractions.append(info.numCompletedTasks / info.numTasks)
                state = ("done" if info.numCompletedTasks >= info.numTasks
                         else "running" if info.numActiveTasks or info.numCompletedTasks else "waiting")
                if state == "running":
                    active.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
                if self._seen.get(stage_id) != state and state != "waiting":
                    self._seen[stage_id] = state
                    verb = "started" if state == "running" else "finished"
                    self.progress.log(f"Spark stage {stage_id} {verb}: {info.numCompletedTasks}/{info.numTasks} "
                                      f"tasks ({info.numFailedTasks} failed)")
        if not stage_fractions:
            return
        fraction = sum(stage_fractions) / len(stage_fractions)
        state = (round(fraction, 3), tuple(active))
        if state != self._last:
            self._last = state
            label = f"{self.stage} ({', '.join(active)})" if active else self.stage
            self.progress.set_stage(label, fraction)


# ------------------------------------------------------------------------------------------- results


@dataclass
class BatchResult:
    """What a batch job wrote: the table, how many rows, how fast; ``ref`` names the model version."""

    output_table: str
    rows: int
    seconds: float
    mode: str = "error"
    columns: list[str] = field(default_factory=list)
    package: str | None = None
    package_digest: str | None = None
    ref: str | None = None
    run_id: str | None = None
    rows_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.rows_per_second = self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"output_table": self.output_table, "rows": self.rows, "seconds": self.seconds,
                "rows_per_second": self.rows_per_second, "mode": self.mode, "columns": list(self.columns),
                "package": self.package, "package_digest": self.package_digest, "ref": self.ref,
                "run_id": self.run_id}

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("table", self.output_table), ("rows", f"{self.rows:,}"), ("time", f"{self.seconds:.1f} s"),
                 ("speed", f"{self.rows_per_second:,.0f} rows/s"), ("mode", self.mode),
                 ("columns", ", ".join(self.columns))]
        if self.ref:
            facts.insert(0, ("model", self.ref))
        return facts

    def __repr__(self) -> str:
        model = f"{self.ref} -> " if self.ref else ""
        return (f"BatchResult({model}{self.output_table}: {self.rows:,} rows in {self.seconds:.1f} s, "
                f"{self.rows_per_second:,.0f} rows/s, mode={self.mode})")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in self._facts())
        return f"<div><b>Batch predictions written</b><table>{rows}</table></div>"


# ---------------------------------------------------------------------------------------- validation


def _check_table_name(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise InvalidName(f"{name!r} is not a table name: use [database.]table with letters, digits and "
                          f"underscores, starting with a letter or underscore (e.g. scores.churn_2024).")
    return name


def _check_query(query: str) -> None:
    match = _QUERY_START.match(query or "")
    if not match or match.group(1).upper() not in _QUERY_WORDS:
        raise BatchError("The query must be a SELECT (or WITH ... SELECT, TABLE t, VALUES ...) whose columns are "
                         f"the model's inputs; got {(query or '').strip()[:60]!r}.")


def _dataframe_package(package_dir: str | os.PathLike) -> PackageInfo:
    try:
        info = read_package(package_dir)
    except FileNotFoundError as exc:
        raise BatchError(str(exc)) from None
    if info.kind != "dataframe" or not isinstance(info.input_schema, DataFrameSchema):
        raise BatchError(f"Spark scoring takes DataFrameModel packages (rows in, rows out); {info.path} holds a "
                         f"{info.kind} model.")
    return info


def _schema_error_message(problems: list[dict], info: PackageInfo, what: str = "query") -> str:
    listed = "; ".join(p["error"] for p in problems)
    if what != "query":
        listed = listed.replace(" in the query", f" in the {what}")
    return (f"The {what}'s columns do not fit the input schema of {info.class_name} ({info.input_schema!r}): "
            f"{listed}. Select, rename (AS) or CAST the columns in the {what} and run it again; no Spark job was "
            f"started.")


def _spark_error(exc: BaseException) -> str:
    """The useful part of a failed job's error: the Python exception raised on the executor, if any."""
    text = str(exc)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):  # the last "SomeError: message" line of a Python traceback
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b: ", lines[i].strip()):
            message = re.sub(r"^[\w.]+\.(\w+: )", r"\1", lines[i].strip())  # SchemaError, not a.b.SchemaError
            return message if len(message) <= 2000 else message[:2000] + "..."
    return _first_line(exc)


@contextlib.contextmanager
def _job_group(spark: "SparkSession", group: str, description: str):
    sc = spark.sparkContext
    previous = {key: sc.getLocalProperty(key)
                for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")}
    sc.setJobGroup(group, description, interruptOnCancel=True)
    try:
        yield
    except KeyboardInterrupt:
        sc.cancelJobGroup(group)
        raise
    finally:
        for key, value in previous.items():
            sc.setLocalProperty(key, value)


@contextlib.contextmanager
def _session_conf(spark: "SparkSession", settings: Mapping[str, str]):
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _quoted(table: str) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in table.split("."))


def _split_name(spark: "SparkSession", table: str) -> tuple[str, str]:
    db, _, name = table.rpartition(".")
    return (db or spark.catalog.currentDatabase()), name


def _drop_quietly(spark: "SparkSession", table: str) -> None:
    """Drop a table we created, and any files a failed write left at its would-be location."""
    with contextlib.suppress(Exception):
        spark.sql(f"DROP TABLE IF EXISTS {_quoted(table)}")
    with contextlib.suppress(Exception):
        db, name = _split_name(spark, table)
        location = spark.catalog.getDatabase(db).locationUri.rstrip("/") + "/" + name.lower()
        jvm = spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(location)
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if fs.exists(path):
            fs.delete(path, True)


def _publish(spark: "SparkSession", temporary: str, destination: str, *, replace: bool, progress: Progress) -> None:
    """Give the finished temporary table its final name (dropping the table it replaces); on failure, drop the
    temporary table unless it became the only copy of the predictions."""
    if replace and spark.catalog.tableExists(destination):
        try:
            spark.sql(f"DROP TABLE {_quoted(destination)}")
        except Exception as exc:
            _drop_quietly(spark, temporary)
            raise BatchError(f"Could not replace {destination} ({_first_line(exc)}); it is unchanged and nothing "
                             f"was written.") from exc
        progress.log(f"dropped the previous {destination}")
        try:
            spark.sql(f"ALTER TABLE {_quoted(temporary)} RENAME TO {_quoted(destination)}")
        except Exception as exc:  # keep the new rows: they are the only copy now
            raise BatchError(f"The predictions were written to {temporary}, and the previous {destination} was "
                             f"dropped, but renaming failed: {_first_line(exc)}. Rename it by hand: ALTER TABLE "
                             f"{temporary} RENAME TO {destination}.") from exc
        return
    try:
        spark.sql(f"ALTER TABLE {_quoted(temporary)} RENAME TO {_quoted(destination)}")
    except Exception as exc:
        _drop_quietly(spark, temporary)
        raise BatchError(f"Could not create {destination} ({_first_line(exc)}); was it created meanwhile? Nothing "
                         f"was written.") from exc


def _session(spark: "SparkSession | None") -> "SparkSession":
    spark = spark if spark is not None else spark_session()
    try:
        spark.sparkContext  # noqa: B018 - Spark Connect sessions have none
    except Exception:
        raise BatchError("pyml_jupyter scores with a classic Spark session (SparkContext); Spark Connect sessions "
                         "are not supported yet. Pass spark=SparkSession.builder...getOrCreate() of a classic "
                         "session.") from None
    return spark


# -------------------------------------------------------------------------------------------- scoring


def _scored(spark: "SparkSession", df: "SparkDataFrame", info: PackageInfo, keep: list[str],
            row_id: str | None = None) -> "SparkDataFrame":
    """``df`` (already checked) scored on executors: ``keep`` columns (+ row id) then the prediction columns."""
    archive = _ship(spark, info.path)
    inputs = [c for c in info.input_schema.names]
    passed = list(dict.fromkeys([*inputs, *keep, *([row_id] if row_id else [])]))
    source = df.select(*[_col(c) for c in passed]) if passed != df.columns else df
    by_name = {f.name: f for f in df.schema.fields}
    keep_fields = [by_name[c] for c in keep] + ([by_name[row_id]] if row_id else [])
    return source.mapInPandas(_make_scorer(archive, keep, row_id), _output_struct(keep_fields, info.output_schema))


def predict_offline(package_dir: str | os.PathLike, query: str, output_table: str, *,
                    spark: "SparkSession | None" = None, keep: list[str] | None = None, mode: str = "error",
                    batch_size: int = 10_000, progress: Progress | None = None) -> BatchResult:
    """Score the rows of ``query`` with the model package at ``package_dir`` into ``output_table``.

    ``keep``: the query's columns to copy beside the predictions (default: every column of the query; ``[]``
    for predictions only). ``mode``: ``"error"`` (refuse an existing table), ``"overwrite"`` (replace it once
    the job succeeded) or ``"append"``. ``batch_size``: rows per Arrow batch handed to the model.
    Raises :class:`InvalidName` for a bad table name and :class:`BatchError` for a query that does not fit the
    model (before any job runs) or a job that failed (leaving no table behind).
    """
    started = time.perf_counter()
    table = _check_table_name(output_table)
    if mode not in MODES:
        raise BatchError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise BatchError(f"batch_size must be a positive number of rows, not {batch_size!r}.")
    _check_query(query)
    info = _dataframe_package(package_dir)
    progress = progress if progress is not None else Progress(f"batch {info.class_name} -> {table}")
    if spark is None:
        progress.set_stage("starting Spark")
    spark = _session(spark)

    # 1. the query, checked against the input schema: analysis only, no job runs
    progress.set_stage("checking the query")
    from pyspark.errors import PySparkException

    try:
        df = spark.sql(query)
    except PySparkException as exc:
        raise BatchError(f"Spark cannot run the query: {_first_line(exc)}") from None
    problems = check_query_schema(df.schema, info.input_schema)
    if problems:
        raise BatchError(_schema_error_message(problems, info), details={"problems": problems})
    outputs = info.output_schema.names
    keep = list(df.columns) if keep is None else list(keep)
    unknown = [c for c in keep if c not in df.columns]
    if unknown:
        raise BatchError(f"keep names {', '.join(map(repr, unknown))}, which the query does not return; it returns "
                         f"{', '.join(df.columns)}.")
    dupes = sorted({c for c in keep if keep.count(c) > 1 or df.columns.count(c) > 1})
    if dupes:
        raise BatchError(f"the kept column(s) {', '.join(dupes)} appear more than once; alias them apart in the "
                         f"query or leave them out of keep.")
    clash = [c for c in keep if c.lower() in {o.lower() for o in outputs}]
    if clash:
        raise BatchError(f"the query's column(s) {', '.join(map(repr, clash))} have the name of a prediction column "
                         f"({', '.join(outputs)}); alias them in the query (e.g. {clash[0]} AS {clash[0]}_actual) "
                         f"or leave them out of keep.")
    columns = [*keep, *outputs]

    # 2. the destination: decided before the job, so a refused mode costs nothing
    db, name = _split_name(spark, table)
    if not spark.catalog.databaseExists(db):
        raise BatchError(f"Database {db} does not exist; create it first (spark.sql('CREATE DATABASE {db}')) or "
                         f"write to another one.")
    exists = spark.catalog.tableExists(table)
    if exists and spark.catalog.getTable(table).tableType in ("VIEW", "TEMPORARY"):
        raise BatchError(f"{table} is a view; predictions go to a table: choose another name.")
    if exists and mode == "error":
        raise BatchError(f"Table {table} already exists; pass mode='overwrite' to replace it or mode='append' to add "
                         f"the new rows to it.")
    target_columns: list[str] = []
    if exists and mode == "append":
        target_columns = spark.table(table).columns
        if sorted(c.lower() for c in target_columns) != sorted(c.lower() for c in columns):
            raise BatchError(f"Cannot append to {table}: it has columns {', '.join(target_columns)} but the job "
                             f"writes {', '.join(columns)}. Choose keep= to match, or write to a new table.")

    # 3. the package to the executors, the scoring plan
    progress.set_stage("shipping the model package")
    scored = _scored(spark, df, info, keep)
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    observation = Observation(f"pyml_rows_{uuid.uuid4().hex[:8]}")
    scored = scored.observe(observation, F.count(F.lit(1)).alias("rows"))

    # 4. the job
    temporary = f"{db}." + f"pyml_tmp_{uuid.uuid4().hex[:12]}_{name}"[:128]
    destination = f"{db}.{name}"
    group = f"pyml-batch-{uuid.uuid4().hex[:12]}"
    created_temporary = False
    stage = f"scoring into {table}"
    progress.set_stage(stage, 0.0)
    progress.log(f"scoring `{' '.join(query.split())[:200]}` with {info.class_name} into {table} (mode={mode}, "
                 f"batches of {batch_size:,} rows)")
    try:
        with _job_group(spark, group, f"pyml_jupyter: {info.class_name} -> {table}"), \
                _session_conf(spark, {ARROW_BATCH_CONF: str(batch_size)}), \
                _JobWatcher(spark, group, progress, stage):
            if exists and mode == "append":
                by_lower = {c.lower(): c for c in columns}
                scored.select(*[_col(by_lower[c.lower()]) for c in target_columns]).write.insertInto(table)
            else:
                created_temporary = True
                scored.write.mode("errorifexists").saveAsTable(temporary)
        rows = int(observation.get.get("rows", 0))
        if created_temporary:
            progress.set_stage(f"publishing {table}", 1.0)
            created_temporary = False  # from here on _publish owns the temporary table
            _publish(spark, temporary, destination, replace=mode == "overwrite", progress=progress)
    except BaseException as exc:
        if created_temporary:
            _drop_quietly(spark, temporary)
        if isinstance(exc, (PymlError, KeyboardInterrupt, SystemExit)):
            raise
        message = _spark_error(exc)
        progress.log(f"failed: {message}")
        raise BatchError(f"The Spark job scoring into {table} failed, and left no table behind"
                         f"{' (the existing table is unchanged)' if exists else ''}: {message}",
                         details={"spark_error": str(exc)[-4000:]}) from exc
    seconds = time.perf_counter() - started
    result = BatchResult(output_table=table, rows=rows, seconds=seconds, mode=mode, columns=columns,
                         package=str(info.path), package_digest=package_digest(info.path))
    progress.set_stage("done", 1.0)
    progress.log(f"wrote {rows:,} rows to {table} in {seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)")
    return result


def predict_frame(package_dir: str | os.PathLike, pdf: pd.DataFrame, *,
                  spark: "SparkSession | None" = None) -> pd.DataFrame:
    """Predict an in-memory DataFrame through the Spark path of :func:`predict_offline` (ship, mapInPandas,
    enforce), and return the predictions with ``pdf``'s index and the output schema's dtypes.

    The parity check uses it: the notebook's predictions on the sample against Spark's.
    """
    info = _dataframe_package(package_dir)
    if not isinstance(pdf, pd.DataFrame):
        raise BatchError(f"predict_frame takes a pandas DataFrame, not {type(pdf).__name__}.")
    spark = _session(spark)
    from pyspark.sql import types as T

    inputs = [c for c in info.input_schema.names if c in pdf.columns]
    frame = pdf.loc[:, inputs].reset_index(drop=True)
    frame = frame.loc[:, ~frame.columns.duplicated()] if frame.columns.duplicated().any() else frame
    declared = {c.name: c.dtype for c in info.input_schema.columns}
    fields = []
    for name in frame.columns:
        # the frame's own types go to Spark (as a table's would); the executors enforce the schema on them
        inferred = DataFrameSchema.infer(frame[[name]]).columns[0].dtype
        dtype = inferred if inferred in _SQL_TYPES else declared[name]
        if dtype not in _SQL_TYPES:
            raise BatchError(f"column {name!r} holds values Spark cannot carry ({frame[name].dtype}); convert it "
                             f"to one of {', '.join(_SQL_TYPES)} first.")
        if dtype == "uint64":
            frame[name] = pd.Series([None if pd.isna(v) else decimal.Decimal(int(v)) for v in frame[name]],
                                    dtype=object)
        elif isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
        fields.append(T.StructField(name, spark_type(dtype), True))
    frame[_ROW_ID] = np.arange(len(frame), dtype=np.int64)
    fields.append(T.StructField(_ROW_ID, T.LongType(), False))
    df = spark.createDataFrame(frame, schema=T.StructType(fields))
    problems = check_query_schema(df.drop(_ROW_ID).schema, info.input_schema)
    if problems:
        raise BatchError(_schema_error_message(problems, info, "frame"),
                         details={"problems": problems})
    try:
        out = _scored(spark, df, info, keep=[], row_id=_ROW_ID).toPandas()
    except Exception as exc:
        raise BatchError(f"Scoring the frame on Spark failed: {_spark_error(exc)}",
                         details={"spark_error": str(exc)[-4000:]}) from exc
    if len(out) != len(pdf):
        raise BatchError(f"Spark returned {len(out)} predictions for {len(pdf)} rows.")
    out = out.sort_values(_ROW_ID, kind="stable").drop(columns=[_ROW_ID])
    out.index = pdf.index
    for spec in info.output_schema.columns:  # DECIMAL(20,0) comes back as Decimal objects
        if spec.dtype == "uint64":
            out[spec.name] = [None if v is None else int(v) for v in out[spec.name]]
    return info.output_schema.enforce(out).data
