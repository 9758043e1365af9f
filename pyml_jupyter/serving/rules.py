"""The request rules that span fields, which the OpenAPI 3.0 document (JSON Schema) cannot state.

A request can match the published schema and still break one of these; it is then refused with a 4xx whose
body names the rule (``"rule"`` on a 400, on each problem of a 422). The code that finds the problem names the
rule where it raises (a :class:`~.schema.SchemaError` problem's ``"rule"``, a ``ScoringError``'s ``rule``), with
the constants below. The document lists the rules in its descriptions (see openapi.py);
``tests/test_serving_rules.py`` sends a request breaking each rule, and ``tests/test_openapi_schemathesis.py``
checks that every schema-valid request the server refuses names one of them. This module is part of the serving
runtime.
"""

from __future__ import annotations

from typing import NamedTuple

from .schema.errors import EVERY_COLUMN, EVERY_TENSOR, RECTANGULAR, ROW_WIDTH, SAME_LENGTH, TENSOR_SHAPE

__all__ = ["CrossFieldRule", "CROSS_FIELD_RULES", "rules_text", "SAME_LENGTH", "ROW_WIDTH", "EVERY_COLUMN",
           "EVERY_TENSOR", "CSV", "SPLIT_ROW_TYPES", "V2_DATA_COUNT", "V2_ONCE", "V2_SHAPE", "TENSOR_SHAPE",
           "RECTANGULAR"]

# the rules the schema package finds are named there (schema/errors.py); the others here
CSV = "csv"
SPLIT_ROW_TYPES = "split-row-types"
V2_DATA_COUNT = "v2-data-count"
V2_ONCE = "v2-once"
V2_SHAPE = "v2-shape"


class CrossFieldRule(NamedTuple):
    """A rule's id (what a refusal names) and its statement for the document."""

    id: str
    text: str


CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    CrossFieldRule(SAME_LENGTH, "In the {column: [values]} form every value is a list (of an unknown column too), "
                                "all of the same length."),
    CrossFieldRule(ROW_WIDTH, "In 'dataframe_split' every row has one value per column: of 'columns', or of the "
                              "schema's columns when 'columns' is absent."),
    CrossFieldRule(EVERY_COLUMN, "A request names every column the schema does not declare nullable: "
                                 "'dataframe_split' (its 'columns', or the schema's order when absent), a CSV "
                                 "header and a V2 request's inputs too."),
    CrossFieldRule(EVERY_TENSOR, "A request names every input tensor of the model: a V2 request's inputs too."),
    CrossFieldRule(CSV, "A text/csv body is CSV: a header row naming the columns, then rows of one value per "
                        "column that read as their column's type (a body that is not CSV, or is empty, is a 400; "
                        "values that do not fit, a 422); a row has no more values than the header has columns (a "
                        "wider row is a 400 naming its line)."),
    CrossFieldRule(SPLIT_ROW_TYPES, "In 'dataframe_split' a row's values are typed by position: each has the "
                                    "type of its column."),
    CrossFieldRule(V2_DATA_COUNT, "A V2 input's 'data' holds as many values as the product of its 'shape'."),
    CrossFieldRule(V2_ONCE, "A V2 request gives each input once."),
    CrossFieldRule(V2_SHAPE, "A V2 input for a DataFrame column has shape [n] or [n, 1]."),
    CrossFieldRule(TENSOR_SHAPE, "A V2 input for a tensor has the tensor's declared shape (a free dimension, "
                                 "-1, any length; the same rank)."),
    CrossFieldRule(RECTANGULAR, "A tensor's nested lists are rectangular: every row of a dimension has the same "
                                "length."),
)


def rules_text() -> str:
    """The rules as one paragraph, for the document's descriptions."""
    return ("Rules that span fields (JSON Schema cannot state them; a request breaking one gets a 4xx naming "
            "the rule in 'rule'): " + " ".join(f"[{r.id}] {r.text}" for r in CROSS_FIELD_RULES))
