"""The request rules that span fields, which the OpenAPI 3.0 document (JSON Schema) cannot state.

A request can match the published schema and still break one of these; it is then refused with a 4xx whose
body names the rule (``"rule"`` on a 400, on each problem of a 422). The document lists them in its
descriptions (see openapi.py); ``tests/test_openapi_schemathesis.py`` checks that every schema-valid request
the server refuses breaks one of them. This module is part of the serving runtime: stdlib only.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["CrossFieldRule", "CROSS_FIELD_RULES", "rule_of", "rules_text"]


class CrossFieldRule(NamedTuple):
    """A rule's id, its statement for the document, and the server's wording of its error."""

    id: str
    text: str
    pattern: re.Pattern


def _rule(rule_id: str, text: str, pattern: str) -> CrossFieldRule:
    return CrossFieldRule(rule_id, text, re.compile(pattern, re.DOTALL))


CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    _rule("same-length", "In the {column: [values]} form every list has the same length.",
          r"every value must be a list of the same length"),
    _rule("row-width", "In 'dataframe_split' (and a CSV body) every row has one value per column: of 'columns', "
          "of the schema's columns when 'columns' is absent, of the header row.",
          r"^row \d+ has (\d+|no) values but there are \d+ columns"),
    _rule("every-column", "'dataframe_split' (its 'columns', or the schema's order when absent), a CSV header "
          "and a V2 request's inputs name every column the schema does not declare nullable.",
          r"^missing column '"),
    _rule("every-tensor", "A V2 request names every input tensor of the model.", r"^missing tensor '"),
    _rule("csv", "A text/csv body is CSV: a header row naming the columns, then rows whose values read as "
          "their column's type (a body that is not CSV, or is empty, is a 400; values that do not fit, a 422).",
          r"^The body is not valid CSV with a header row"),
    _rule("split-row-types", "In 'dataframe_split' a row's values are typed by position: each has the type of "
          "its column.", r"(?!)"),
    _rule("v2-data-count", "A V2 input's 'data' holds as many values as the product of its 'shape'.",
          r"^input '.*' has \d+ values but its shape \[[\d, ]*\] needs \d+$"),
    _rule("v2-once", "A V2 request gives each input once.", r"^input '.*' is given twice$"),
    _rule("v2-shape", "A V2 input's 'shape' fits the schema: [n] or [n, 1] for a DataFrame column; the tensor's "
          "declared shape (a free dimension, -1, any length) for a tensor.",
          r"(^input '.*' is a DataFrame column: its shape must be)|(^tensor '.*' has shape \(.*\) but the schema "
          r"declares \(.*\)$)"),
    _rule("rectangular", "A tensor's nested lists are rectangular: every row of a dimension has the same length.",
          r"^tensor '.*' is a ragged nested list"),
)


def rule_of(message: str) -> str | None:
    """The id of the cross-field rule an error message reports, or None."""
    for rule in CROSS_FIELD_RULES:
        if rule.pattern.search(message):
            return rule.id
    return None


def rules_text() -> str:
    """The rules as one paragraph, for the document's descriptions."""
    return ("Rules that span fields (JSON Schema cannot state them; a request breaking one gets a 4xx naming "
            "the rule in 'rule'): " + " ".join(f"[{r.id}] {r.text}" for r in CROSS_FIELD_RULES))
