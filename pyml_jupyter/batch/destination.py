"""Where a batch job writes: the table name, what the mode allows, and publishing the finished table.

Writing is all-or-nothing. ``mode="error"`` and ``"overwrite"`` write into a temporary table and rename it to the
destination only once the job succeeded (an overwritten table is replaced only then; the query may even read the
table it overwrites); ``"append"`` inserts through Spark's commit protocol, which adds no file of a failed job.

A temporary table is named for the host and process that writes it (``pyml_tmp_HOST_PID_...``): when that process
was killed mid-write (a kernel killed, a machine rebooted), the next job into the same database finds the process
gone and drops what it left, table or bare folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import BatchError, InvalidName
from ..progress import Progress
from .session import first_line

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

MODES = ("error", "overwrite", "append")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_TEMPORARY = re.compile(r"^pyml_tmp_(?P<host>[a-z0-9]+)_(?P<pid>[0-9]+)_[0-9a-f]{8}_")


def host_tag() -> str:
    """This host's name as it appears in temporary table names (lower-case letters and digits)."""
    return re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:24] or "host"


@dataclass
class Destination:
    """The output table as decided before the job: ``database.name``, whether it exists, and the columns of
    the table an append writes into (in its order)."""

    table: str
    database: str
    name: str
    mode: str
    exists: bool
    target_columns: list[str] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def appends(self) -> bool:
        return self.exists and self.mode == "append"

    def temporary(self) -> str:
        """A fresh name for the temporary table written before publishing, in the same database; it names this
        host and process, so that a later job can tell whether its writer is gone (:func:`sweep_temporaries`)."""
        return f"{self.database}." + f"pyml_tmp_{host_tag()}_{os.getpid()}_{uuid.uuid4().hex[:8]}_{self.name}"[:128]


def check_table_name(name: str) -> str:
    """``name`` if it is ``[database.]table`` of letters, digits and underscores; else :class:`InvalidName`."""
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise InvalidName(f"{name!r} is not a table name: use [database.]table with letters, digits and "
                          f"underscores, starting with a letter or underscore (e.g. scores.churn_2024).")
    return name


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BatchError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    return mode


def check_destination(spark: "SparkSession", table: str, mode: str, columns: list[str]) -> Destination:
    """Decide, before any job, whether ``mode`` may write ``columns`` to ``table``: the database must exist, a
    view is never written, ``error`` refuses an existing table, ``append`` needs the same columns."""
    database, name = split_name(spark, table)
    if not spark.catalog.databaseExists(database):
        raise BatchError(f"Database {database} does not exist; create it first (spark.sql('CREATE DATABASE "
                         f"{database}')) or write to another one.")
    exists = spark.catalog.tableExists(table)
    if exists and spark.catalog.getTable(table).tableType in ("VIEW", "TEMPORARY"):
        raise BatchError(f"{table} is a view; predictions go to a table: choose another name.")
    if exists and mode == "error":
        raise BatchError(f"Table {table} already exists; pass mode='overwrite' to replace it or mode='append' to add "
                         f"the new rows to it.")
    destination = Destination(table, database, name, mode, exists)
    if destination.appends:
        destination.target_columns = spark.table(table).columns
        if sorted(c.lower() for c in destination.target_columns) != sorted(c.lower() for c in columns):
            raise BatchError(f"Cannot append to {table}: it has columns {', '.join(destination.target_columns)} but "
                             f"the job writes {', '.join(columns)}. Choose keep= to match, or write to a new table.")
    return destination


def quoted(table: str) -> str:
    """``db.t`` as ```db`.`t```."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in table.split("."))


def split_name(spark: "SparkSession", table: str) -> tuple[str, str]:
    """(database, table) of ``[database.]table``; the session's current database when none is named."""
    db, _, name = table.rpartition(".")
    return (db or spark.catalog.currentDatabase()), name


def _path(spark: "SparkSession", location: str):
    """A Hadoop ``Path`` for ``location`` and its file system."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def drop_quietly(spark: "SparkSession", table: str) -> None:
    """Drop a table we created, and any files a failed write left at its would-be location."""
    with contextlib.suppress(Exception):
        spark.sql(f"DROP TABLE IF EXISTS {quoted(table)}")
    with contextlib.suppress(Exception):
        db, name = split_name(spark, table)
        path, fs = _path(spark, spark.catalog.getDatabase(db).locationUri.rstrip("/") + "/" + name.lower())
        if fs.exists(path):
            fs.delete(path, True)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def sweep_temporaries(spark: "SparkSession", database: str, progress: Progress | None = None) -> list[str]:
    """Drop the temporary tables (and bare folders) in ``database`` that jobs of dead processes of this host left.

    Temporary tables of other hosts, of live processes (jobs running now) and of this process are left alone.
    Returns the names dropped."""
    names = set()
    with contextlib.suppress(Exception):
        names |= {t.name.lower() for t in spark.catalog.listTables(database)}
    with contextlib.suppress(Exception):
        path, fs = _path(spark, spark.catalog.getDatabase(database).locationUri)
        names |= {status.getPath().getName().lower() for status in fs.listStatus(path) if status.isDirectory()}
    host, swept = host_tag(), []
    for name in sorted(names):
        match = _TEMPORARY.match(name)
        if match and match["host"] == host and int(match["pid"]) != os.getpid() and _process_gone(int(match["pid"])):
            drop_quietly(spark, f"{database}.{name}")
            swept.append(name)
    if swept and progress is not None:
        progress.log(f"dropped {len(swept)} temporary table(s) left by killed jobs: {', '.join(swept)}")
    return swept


def publish(spark: "SparkSession", temporary: str, destination: str, *, replace: bool, progress: Progress) -> None:
    """Give the finished temporary table its final name (dropping the table it replaces); on failure, drop the
    temporary table unless it became the only copy of the predictions."""
    if replace and spark.catalog.tableExists(destination):
        try:
            spark.sql(f"DROP TABLE {quoted(destination)}")
        except Exception as exc:
            drop_quietly(spark, temporary)
            raise BatchError(f"Could not replace {destination} ({first_line(exc)}); it is unchanged and nothing "
                             f"was written.") from exc
        progress.log(f"dropped the previous {destination}")
        try:
            spark.sql(f"ALTER TABLE {quoted(temporary)} RENAME TO {quoted(destination)}")
        except Exception as exc:  # keep the new rows: they are the only copy now
            raise BatchError(f"The predictions were written to {temporary}, and the previous {destination} was "
                             f"dropped, but renaming failed: {first_line(exc)}. Rename it by hand: ALTER TABLE "
                             f"{temporary} RENAME TO {destination}.") from exc
        return
    try:
        spark.sql(f"ALTER TABLE {quoted(temporary)} RENAME TO {quoted(destination)}")
    except Exception as exc:
        drop_quietly(spark, temporary)
        raise BatchError(f"Could not create {destination} ({first_line(exc)}); was it created meanwhile? Nothing "
                         f"was written.") from exc
