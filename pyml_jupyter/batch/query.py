"""What a batch job reads: the query (a query, by Spark's own parser), its columns, and the ones kept.

:func:`check_query` refuses anything but a query before Spark executes anything: ``spark.sql`` runs commands
(``INSERT``, ``CREATE``, ``DROP``, ``SET`` ...) at once, so they must never reach it. Spark's parser decides what
a query is (its ``singleQuery`` rule: ``SELECT``, ``WITH ... SELECT``, ``FROM t SELECT``, ``TABLE t``,
``VALUES ...``); the statement it refuses is named from the plan Spark parses it into.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Sequence

from ..errors import BatchError
from ..serving.loader import PackageInfo
from .session import first_line

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

_QUERY_FORMS = "a SELECT (or WITH ... SELECT, FROM t SELECT, TABLE t, VALUES ...)"
_WITH = "org.apache.spark.sql.catalyst.plans.logical.UnresolvedWith"
_STATEMENT_MARKS = ("org.apache.spark.sql.catalyst.plans.logical.Command",
                    "org.apache.spark.sql.catalyst.plans.logical.ParsedStatement")


def parse_keep(text: str | Sequence[str] | None) -> list[str] | None:
    """``keep`` as faces give it: a comma-separated string (``"id, city"``) or names; None or no name: None
    (every query column). Names are stripped of surrounding spaces; ``[]`` (a list) keeps predictions only."""
    if text is None:
        return None
    if isinstance(text, str):
        names = [name.strip() for name in text.split(",") if name.strip()]
        return names or None
    return list(text)


def check_not_empty(query: str) -> None:
    """Refuse a query that is not a string or holds nothing but spaces and semicolons (no Spark needed)."""
    if not isinstance(query, str) or not query.strip(" \t\r\n;"):
        raise BatchError(f"The query is empty; give {_QUERY_FORMS} whose columns are the model's inputs.")


def check_query(spark: "SparkSession", query: str) -> str:
    """The query text to run, once Spark's parser reads it as one query; else a :class:`BatchError` naming the
    statement (nothing is executed: the text is only parsed). Trailing semicolons are dropped."""
    check_not_empty(query)
    text = query.rstrip(" \t\r\n;")
    parser = spark._jsparkSession.sessionState().sqlParser()
    from pyspark.errors import ParseException

    try:
        plan = parser.parseQuery(text)
    except ParseException as exc:
        not_a_query = exc
    else:  # a session's parser extension may read more than queries as one: its plan must hold no command
        command, _ = _statement(spark, plan)
        if command is None:
            return text
        raise _not_a_query(command)
    try:
        plan = parser.parsePlan(query)
    except ParseException as exc:
        first = _first_of_several(spark, query, exc)
        if first:
            raise BatchError(f"The query holds more than one statement (the first is {first}); give one query, "
                             f"{_QUERY_FORMS}. Nothing was run.") from None
        raise BatchError(f"Spark cannot parse the query: {first_line(exc)}") from None
    command, node = _statement(spark, plan)
    if command is None and _stopped_at_semicolon(not_a_query):  # one query, then `;` and comments
        raise BatchError(f"Spark reads only a query here; remove what follows its ';' ({first_line(not_a_query)}). "
                         f"Nothing was run.")
    raise _not_a_query(command or node)


def _not_a_query(node) -> BatchError:
    return BatchError(f"The query is {_kind(node)}, which Spark would execute at once; predict_offline only reads "
                      f"{_QUERY_FORMS} whose columns are the model's inputs. Nothing was run.")


def _stopped_at_semicolon(exc: Exception) -> bool:
    """Whether Spark stopped reading a query at a ``;`` (more follows)."""
    return _parameters(exc).get("error") == "';'"


def _parameters(exc: Exception) -> dict:
    get = getattr(exc, "getMessageParameters", None)
    return (get() if get else None) or {}


def _first_of_several(spark: "SparkSession", query: str, exc: Exception) -> str | None:
    """When Spark's parser read one statement and found more after it: what the first one is (``a query``,
    ``a DROP TABLE statement``...); None for any other syntax error."""
    start = getattr(getattr(exc, "_origin", None), "start", None)
    if not str(_parameters(exc).get("hint", "")).startswith(": extra input") or start is None:
        return None
    origin = start()
    if origin.line().isEmpty() or origin.startPosition().isEmpty():
        return None
    lines = query.split("\n")
    line = origin.line().get()
    offset = sum(len(text) + 1 for text in lines[:line - 1]) + origin.startPosition().get()
    head = query[:offset]
    from pyspark.errors import ParseException

    parser = spark._jsparkSession.sessionState().sqlParser()
    try:
        plan = parser.parsePlan(head)
    except ParseException:
        return None
    try:
        parser.parseQuery(head.rstrip(" \t\r\n;"))
        return "a query"
    except ParseException:
        command, node = _statement(spark, plan)
        return _kind(command or node)


def _statement(spark: "SparkSession", plan):
    """(the first command in a parsed plan, or None; the plan's first node past WITH clauses and multi-insert
    unions): what to name a statement that is not a query by."""
    from py4j.java_gateway import is_instance_of

    gateway = spark.sparkContext._gateway
    first, pending = None, [plan]
    while pending:
        node = pending.pop(0)
        if any(is_instance_of(gateway, node, mark) for mark in _STATEMENT_MARKS):
            return node, node
        if is_instance_of(gateway, node, _WITH) or node.getClass().getSimpleName() == "Union":
            children = node.children()
            pending += [children.apply(i) for i in range(children.size())]
        elif first is None:
            first = node
    return None, first or plan


def _kind(node) -> str:
    """``an INSERT INTO statement``, ``a DROP TABLE statement`` ...: a parsed plan node, named from its class."""
    name = node.getClass().getSimpleName().rstrip("$")
    name = re.sub(r"^Unresolved|(Statement|Command)$", "", name) or name
    words = " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name)).upper()
    return f"{'an' if words[:1] in 'AEIOU' else 'a'} {words} statement"


def check_keep(keep: Iterable[str] | None, columns: list[str], outputs: list[str]) -> list[str]:
    """The query columns to store beside the predictions (all when ``keep`` is None), checked against the
    query's columns and the prediction columns."""
    keep = list(columns) if keep is None else list(keep)
    unknown = [c for c in keep if c not in columns]
    if unknown:
        raise BatchError(f"keep names {', '.join(map(repr, unknown))}, which the query does not return; it returns "
                         f"{', '.join(columns)}.")
    dupes = sorted({c for c in keep if keep.count(c) > 1 or columns.count(c) > 1})
    if dupes:
        raise BatchError(f"the kept column(s) {', '.join(dupes)} appear more than once; alias them apart in the "
                         f"query or leave them out of keep.")
    clash = [c for c in keep if c.lower() in {o.lower() for o in outputs}]
    if clash:
        raise BatchError(f"the query's column(s) {', '.join(map(repr, clash))} have the name of a prediction column "
                         f"({', '.join(outputs)}); alias them in the query (e.g. {clash[0]} AS {clash[0]}_actual) "
                         f"or leave them out of keep.")
    return keep


def schema_error_message(problems: list[dict], info: PackageInfo, what: str = "query") -> str:
    """One paragraph listing why the ``what``'s columns do not fit the package's input schema."""
    listed = "; ".join(p["error"] for p in problems)
    if what != "query":
        listed = listed.replace(" in the query", f" in the {what}")
    return (f"The {what}'s columns do not fit the input schema of {info.class_name} ({info.input_schema!r}): "
            f"{listed}. Select, rename (AS) or CAST the columns in the {what} and run it again; no Spark job was "
            f"started.")
