"""The batch job: score a query's rows with a model package on Spark into a table, or a frame for parity.

    predict_offline(package_dir, "SELECT id, x1, x2, city FROM events", "scores.events_scored", keep=["id"])

:func:`predict_offline` runs in three steps: the query check (Spark's parser reads one query, and its column
types fit the package's input schema; analysis only, no job runs), the destination check (what ``mode`` allows),
and the run (the package shipped to the executors, scored with ``mapInPandas`` into a temporary table that is
published once the job succeeded). A failed job leaves no table (and no half-written files) behind.
"""

from __future__ import annotations

import contextlib
import decimal
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from ..errors import BatchError, PymlError
from ..progress import Progress
from ..serving.loader import PackageInfo, package_digest, read_package
from ..serving.schema import DataFrameSchema, TensorSchema
from .destination import (Destination, check_destination, check_mode, check_table_name, drop_quietly, publish,
                          sweep_temporaries)
from .query import check_keep, check_not_empty, check_query, parse_keep, schema_error_message
from .result import BatchResult
from .session import classic_session, first_line, job_group, session_conf
from .shipping import make_scorer, ship
from .spark_types import check_query_schema, output_struct, spark_type, storable_dtypes, tensor_problems

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
_ROW_ID = "__pyml_row_id"


# ------------------------------------------------------------------------------------------ predict_offline


def predict_offline(package_dir: str | os.PathLike, query: str, output_table: str, *,
                    spark: "SparkSession | None" = None, keep: str | Sequence[str] | None = None,
                    mode: str = "error", batch_size: int = 10_000, progress: Progress | None = None) -> BatchResult:
    """Score the rows of ``query`` with the model package at ``package_dir`` into ``output_table``.

    ``keep``: the query's columns to copy beside the predictions (default: every column of the query; ``[]``
    for predictions only; a comma-separated string is read by :func:`parse_keep`). ``mode``: ``"error"``
    (refuse an existing table), ``"overwrite"`` (replace it once the job succeeded) or ``"append"``.
    ``batch_size``: rows per Arrow batch handed to the model. Raises :class:`InvalidName` for a bad table name
    and :class:`BatchError` for a query that is not a query or does not fit the model (before Spark executes
    anything) or a job that failed (leaving no table behind).
    """
    started = time.perf_counter()
    table = check_table_name(output_table)
    check_mode(mode)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise BatchError(f"batch_size must be a positive number of rows, not {batch_size!r}.")
    check_not_empty(query)
    info = read_batch_package(package_dir)
    progress = progress if progress is not None else Progress(f"batch {info.class_name} -> {table}")
    if spark is None:
        progress.set_stage("starting Spark")
    spark = classic_session(spark)

    progress.set_stage("checking the query")
    checked = _check_query_against(spark, query, info, parse_keep(keep))
    destination = check_destination(spark, table, mode, checked.columns)
    sweep_temporaries(spark, destination.database, progress)
    rows = _run(spark, checked, info, destination, batch_size, progress)

    seconds = time.perf_counter() - started
    result = BatchResult(output_table=table, rows=rows, seconds=seconds, mode=mode, columns=checked.columns,
                         package=str(info.path), package_digest=package_digest(info.path))
    progress.set_stage("done", 1.0)
    progress.log(f"wrote {rows:,} rows to {table} in {seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)")
    return result


@dataclass
class _CheckedQuery:
    """A query that Spark's parser reads as a query and whose columns fit the input schema (analysed, not run)."""

    text: str
    df: "SparkDataFrame"
    keep: list[str]
    columns: list[str]  # what the job writes: the kept columns, then the predictions


def _check_query_against(spark: "SparkSession", query: str, info: PackageInfo,
                         keep: list[str] | None) -> _CheckedQuery:
    """The query check: a query (never a command), whose columns fit the input schema; no Spark job runs."""
    text = check_query(spark, query)
    from pyspark.errors import PySparkException

    try:
        df = spark.sql(text)
    except PySparkException as exc:
        raise BatchError(f"Spark cannot run the query: {first_line(exc)}") from None
    problems = check_query_schema(df.schema, info.input_schema)
    if problems:
        raise BatchError(schema_error_message(problems, info), details={"problems": problems})
    outputs = info.output_schema.names
    kept = check_keep(keep, list(df.columns), outputs)
    return _CheckedQuery(text, df, kept, [*kept, *outputs])


def _run(spark: "SparkSession", checked: _CheckedQuery, info: PackageInfo, destination: Destination,
         batch_size: int, progress: Progress) -> int:
    """The run: ship the package, score on executors, publish (or append); the number of rows written."""
    table = destination.table
    progress.set_stage("shipping the model package")
    scored = _scored(spark, checked.df, info, checked.keep)
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    observation = Observation(f"pyml_rows_{uuid.uuid4().hex[:8]}")
    scored = scored.observe(observation, F.count(F.lit(1)).alias("rows"))
    temporary = destination.temporary()
    group = f"pyml-batch-{uuid.uuid4().hex[:12]}"
    created_temporary = False
    stage = f"scoring into {table}"
    progress.set_stage(stage, 0.0)
    progress.log(f"scoring `{' '.join(checked.text.split())[:200]}` with {info.class_name} into {table} "
                 f"(mode={destination.mode}, batches of {batch_size:,} rows)")
    try:
        with job_group(spark, group, f"pyml_jupyter: {info.class_name} -> {table}"), \
                session_conf(spark, {ARROW_BATCH_CONF: str(batch_size)}), \
                _JobWatcher(spark, group, progress, stage):
            if destination.appends:
                by_lower = {c.lower(): c for c in checked.columns}
                target = [_col(by_lower[c.lower()]) for c in destination.target_columns]
                scored.select(*target).write.insertInto(table)
            else:
                created_temporary = True
                scored.write.mode("errorifexists").saveAsTable(temporary)
        rows = int(observation.get.get("rows", 0))
        if created_temporary:
            progress.set_stage(f"publishing {table}", 1.0)
            created_temporary = False  # from here on publish() owns the temporary table
            publish(spark, temporary, destination.qualified, replace=destination.mode == "overwrite",
                    progress=progress)
    except BaseException as exc:
        if created_temporary:
            drop_quietly(spark, temporary)
        if isinstance(exc, (PymlError, KeyboardInterrupt, SystemExit)):
            raise
        message = spark_error(exc)
        progress.log(f"failed: {message}")
        raise BatchError(f"The Spark job scoring into {table} failed, and left no table behind"
                         f"{' (the existing table is unchanged)' if destination.exists else ''}: {message}",
                         details={"spark_error": str(exc)[-4000:]}) from exc
    return rows


def _scored(spark: "SparkSession", df: "SparkDataFrame", info: PackageInfo, keep: list[str],
            row_id: str | None = None) -> "SparkDataFrame":
    """``df`` (already checked) scored on executors: ``keep`` columns (+ row id) then the prediction columns."""
    archive = ship(spark, info.path)
    inputs = [c for c in info.input_schema.names]
    passed = list(dict.fromkeys([*inputs, *keep, *([row_id] if row_id else [])]))
    source = df.select(*[_col(c) for c in passed]) if passed != df.columns else df
    by_name = {f.name: f for f in df.schema.fields}
    keep_fields = [by_name[c] for c in keep] + ([by_name[row_id]] if row_id else [])
    return source.mapInPandas(make_scorer(archive, keep, row_id), output_struct(keep_fields, info.output_schema))


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def read_batch_package(package_dir: str | os.PathLike) -> PackageInfo:
    """The package's contract, if Spark can score it: a DataFrameModel, or a TensorModel whose input and output
    tensors all have shape (-1,) (a column of scalars) or (-1, k) (a column of arrays of length k); else a
    :class:`BatchError` naming the tensor and its shape."""
    try:
        info = read_package(package_dir)
    except FileNotFoundError as exc:
        raise BatchError(str(exc)) from None
    if info.kind != "tensor" or not isinstance(info.input_schema, TensorSchema):
        return read_dataframe_package(package_dir)
    problems = [*tensor_problems(info.input_schema, "input"), *tensor_problems(info.output_schema, "output")]
    if problems:
        raise BatchError(f"Spark cannot score {info.class_name} ({info.path}): {'; '.join(problems)}. Spark gives "
                         f"the model one element of each tensor per table row; declare such shapes (reshape "
                         f"inside predict) to score it on Spark. No Spark job was started.",
                         details={"problems": problems})
    return info


def read_dataframe_package(package_dir: str | os.PathLike) -> PackageInfo:
    """The package's contract, if it holds a DataFrameModel (a frame in, a frame out); else a :class:`BatchError`."""
    try:
        info = read_package(package_dir)
    except FileNotFoundError as exc:
        raise BatchError(str(exc)) from None
    if info.kind != "dataframe" or not isinstance(info.input_schema, DataFrameSchema):
        raise BatchError(f"Scoring a frame on Spark takes DataFrameModel packages (rows in, rows out); {info.path} "
                         f"holds a {info.kind} model.")
    return info


def spark_error(exc: BaseException) -> str:
    """The useful part of a failed job's error: the Python exception raised on the executor, if any."""
    text = str(exc)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):  # the last "SomeError: message" line of a Python traceback
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b: ", lines[i].strip()):
            message = re.sub(r"^[\w.]+\.(\w+: )", r"\1", lines[i].strip())  # SchemaError, not a.b.SchemaError
            return message if len(message) <= 2000 else message[:2000] + "..."
    return first_line(exc)


# ---------------------------------------------------------------------------------------------- progress


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



# ------------------------------------------------------------------------------------------- predict_frame


def predict_frame(package_dir: str | os.PathLike, pdf: pd.DataFrame, *,
                  spark: "SparkSession | None" = None) -> pd.DataFrame:
    """Predict an in-memory DataFrame through the Spark path of :func:`predict_offline` (ship, mapInPandas,
    enforce), and return the predictions with ``pdf``'s index and the output schema's dtypes.

    The parity check uses it: the notebook's predictions on the sample against Spark's.
    """
    info = read_dataframe_package(package_dir)
    if not isinstance(pdf, pd.DataFrame):
        raise BatchError(f"predict_frame takes a pandas DataFrame, not {type(pdf).__name__}.")
    spark = classic_session(spark)
    df = _spark_frame(spark, pdf, info)
    problems = check_query_schema(df.drop(_ROW_ID).schema, info.input_schema)
    if problems:
        raise BatchError(schema_error_message(problems, info, "frame"), details={"problems": problems})
    try:
        out = _scored(spark, df, info, keep=[], row_id=_ROW_ID).toPandas()
    except Exception as exc:
        raise BatchError(f"Scoring the frame on Spark failed: {spark_error(exc)}",
                         details={"spark_error": str(exc)[-4000:]}) from exc
    if len(out) != len(pdf):
        raise BatchError(f"Spark returned {len(out)} predictions for {len(pdf)} rows.")
    out = out.sort_values(_ROW_ID, kind="stable").drop(columns=[_ROW_ID])
    out.index = pdf.index
    for spec in info.output_schema.columns:  # DECIMAL(20,0) comes back as Decimal objects
        if spec.dtype == "uint64":
            out[spec.name] = [None if v is None else int(v) for v in out[spec.name]]
    return info.output_schema.enforce(out).data


def _spark_frame(spark: "SparkSession", pdf: pd.DataFrame, info: PackageInfo) -> "SparkDataFrame":
    """``pdf``'s input columns as a Spark DataFrame of their own types (as a table's would be; the executors
    enforce the schema on them), plus a row id that puts the predictions back in order."""
    from pyspark.sql import types as T

    inputs = [c for c in info.input_schema.names if c in pdf.columns]
    frame = pdf.loc[:, inputs].reset_index(drop=True)
    frame = frame.loc[:, ~frame.columns.duplicated()] if frame.columns.duplicated().any() else frame
    declared = {c.name: c.dtype for c in info.input_schema.columns}
    storable = storable_dtypes()
    fields = []
    for name in frame.columns:
        inferred = DataFrameSchema.infer(frame[[name]]).columns[0].dtype
        dtype = inferred if inferred in storable else declared[name]
        if dtype not in storable:
            raise BatchError(f"column {name!r} holds values Spark cannot carry ({frame[name].dtype}); convert it "
                             f"to one of {', '.join(storable)} first.")
        if dtype == "uint64":
            frame[name] = pd.Series([None if pd.isna(v) else decimal.Decimal(int(v)) for v in frame[name]],
                                    dtype=object)
        elif isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
        fields.append(T.StructField(name, spark_type(dtype), True))
    frame[_ROW_ID] = np.arange(len(frame), dtype=np.int64)
    fields.append(T.StructField(_ROW_ID, T.LongType(), False))
    return spark.createDataFrame(frame, schema=T.StructType(fields))
