"""The Spark session batch scoring runs on: the embedded default (local, persistent Hive catalog) or the caller's.

:func:`spark_session` is the embedded default: ``local[*]`` with a Hive catalog whose warehouse
(``./spark-warehouse``) and Derby metastore (``./metastore_db``) live in the working directory, so tables written
in one notebook session are there in the next. ``PYML_SPARK_WAREHOUSE`` and ``PYML_SPARK_MASTER`` move them; a
session passed as ``spark=`` (a cluster's) is used as given.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from ..errors import BatchError, PymlError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

ENV_WAREHOUSE = "PYML_SPARK_WAREHOUSE"
ENV_MASTER = "PYML_SPARK_MASTER"
DEFAULT_WAREHOUSE = "spark-warehouse"

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


def require_pyspark() -> None:
    """Raise a :class:`PymlError` saying how to install pyspark when it is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise PymlError("Spark scoring needs pyspark: pip install 'pyml_jupyter[spark]' (and a Java 17+ "
                        "runtime).") from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Spark's ``desc`` when it has one)."""
    text = str(getattr(exc, "desc", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    require_pyspark()
    running = _running_session(conf)
    if running is not None:
        return running
    master = master or os.environ.get(ENV_MASTER) or "local[*]"
    warehouse = Path(warehouse_dir or os.environ.get(ENV_WAREHOUSE) or DEFAULT_WAREHOUSE).expanduser().resolve()
    home = warehouse.parent
    home.mkdir(parents=True, exist_ok=True)
    if master.startswith("local"):
        # Workers must run the kernel's interpreter: same pandas/pyarrow, same libraries as the model.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = _new_session(_settings(master, warehouse, conf))
    spark.sparkContext.setLogLevel("ERROR")
    if spark.conf.get("spark.sql.catalogImplementation", "hive") != "hive":
        return spark
    try:
        spark.sql("SHOW DATABASES").collect()  # open the metastore now, so a locked one fails here, clearly
    except Exception as exc:
        spark.stop()
        raise BatchError(
            f"Spark started but cannot open its metastore at {home / 'metastore_db'}: {first_line(exc)}. Derby lets "
            f"one process at a time use it; another kernel or Spark application in {home} probably holds it. Stop "
            f"that one, or set {ENV_WAREHOUSE} to a folder of this session's own."
        ) from exc
    return spark


def _running_session(conf: Mapping[str, str] | None) -> "SparkSession | None":
    """This process's running session, with ``conf`` applied where Spark still allows it; None if none runs."""
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
                              f"kernel to apply it).", stacklevel=3)
    return running


def _settings(master: str, warehouse: Path, conf: Mapping[str, str] | None) -> dict[str, str]:
    """The new session's configuration: ours, then ``conf`` (Java options are added to ours, not replaced)."""
    home = warehouse.parent
    log4j = Path(tempfile.gettempdir()) / "pyml-spark-log4j2.properties"
    if not log4j.is_file() or log4j.read_text() != _LOG4J2:
        log4j.write_text(_LOG4J2)
    settings: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": "pyml_jupyter",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home} -Dlog4j2.configurationFile={log4j.as_uri()}",
    }
    for key, value in (conf or {}).items():
        if key == "spark.driver.extraJavaOptions":
            value = f"{settings[key]} {value}"
        settings[key] = str(value)
    return settings


def _new_session(settings: Mapping[str, str]) -> "SparkSession":
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    if "spark.sql.catalogImplementation" not in settings:  # conf may ask for the in-memory catalog instead
        builder = builder.enableHiveSupport()
    return builder.getOrCreate()


def classic_session(spark: "SparkSession | None") -> "SparkSession":
    """``spark``, or the embedded default when None; refuses a Spark Connect session (it has no SparkContext)."""
    spark = spark if spark is not None else spark_session()
    try:
        spark.sparkContext  # noqa: B018 - Spark Connect sessions have none
    except Exception:
        raise BatchError("pyml_jupyter scores with a classic Spark session (SparkContext); Spark Connect sessions "
                         "are not supported yet. Pass spark=SparkSession.builder...getOrCreate() of a classic "
                         "session.") from None
    return spark


@contextlib.contextmanager
def job_group(spark: "SparkSession", group: str, description: str) -> Iterator[None]:
    """Run the block's Spark jobs in ``group`` (cancelled on Ctrl-C); restores the thread's previous group."""
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
def session_conf(spark: "SparkSession", settings: Mapping[str, str]) -> Iterator[None]:
    """Set runtime ``settings`` for the block, then restore (or unset) the previous values."""
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
