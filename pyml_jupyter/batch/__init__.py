"""Offline predictions on Spark: score the rows of a SQL query with a model package, into a table.

    predict_offline(package_dir, "SELECT id, x1, x2, city FROM events", "scores.events_scored", keep=["id"])

The same model package the notebook checked, MLflow logged and the container serves is shipped to the executors
with the serving runtime, so executors need neither pyml_jupyter nor MLflow; rows are scored in Arrow batches
through the one schema module (:mod:`pyml_jupyter.serving.schema`).

- :mod:`.session`: the Spark session (embedded default: local, persistent Hive catalog);
- :mod:`.spark_types`: the Spark type of each schema dtype, and the check of a query's columns;
- :mod:`.query`: the query guard (Spark's parser: a query, never a command) and ``keep``;
- :mod:`.destination`: the output table, the modes, publishing all-or-nothing;
- :mod:`.shipping`: the package archive shipped to executors and the scorer run there;
- :mod:`.job`: :func:`predict_offline` and :func:`predict_frame`; :mod:`.result`: :class:`BatchResult`.
"""

from __future__ import annotations

from .destination import MODES
from .job import predict_frame, predict_offline
from .query import check_query, parse_keep
from .result import BatchResult
from .session import spark_session
from .spark_types import check_query_schema, spark_type, spark_types

__all__ = [
    "BatchResult",
    "MODES",
    "spark_session",
    "check_query",
    "check_query_schema",
    "parse_keep",
    "spark_type",
    "spark_types",
    "predict_offline",
    "predict_frame",
]
