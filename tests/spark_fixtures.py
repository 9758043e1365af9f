"""Fixtures for the tests that need a real Spark session (imported by test_batch and test_batch_query).

The session is the process's own (made by ``spark_session()`` on first use, never stopped); each test module
gets a database of its own, dropped at the module's end. Spark tests fail (never skip) under CI=true when
pyspark or Java is missing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from conftest import IN_CI


def _spark_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime (java on PATH or JAVA_HOME)"
    return None


def require_spark() -> None:
    missing = _spark_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"Spark tests cannot run under CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def spark(workdir):
    """The process's Spark session (created here if none runs yet), in a database of this module's own.

    It is not stopped: a later test module gets the same session from ``spark_session()``.
    """
    require_spark()
    from pyml_jupyter.batch import spark_session

    session = spark_session(warehouse_dir=workdir / "spark-warehouse", master="local[2]")
    database = f"pyml_test_batch_{uuid.uuid4().hex[:8]}"
    previous = session.catalog.currentDatabase()
    session.sql(f"CREATE DATABASE {database}")
    session.catalog.setCurrentDatabase(database)
    yield session
    session.catalog.setCurrentDatabase(previous)
    session.sql(f"DROP DATABASE {database} CASCADE")
