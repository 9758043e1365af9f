"""The OpenAPI document against the real app: schemathesis generates requests from ``/openapi.json`` (valid and
invalid ones, every route: /invocations in each JSON form and CSV, V2, health, metadata, metrics) and checks
the answers in-process (ASGI), for a DataFrame model and a TensorModel, with every check of ``--checks all``.

``positive_data_acceptance`` (every schema-valid request gets a 2xx) holds up to the rules that span fields,
which JSON Schema (OpenAPI 3.0) cannot state: the lists of the ``{column: [values]}`` form have one length, a
split row has one value per column typed by position, a V2 input's data has as many values as its shape says,
a V2 request names every input once, a CSV body is CSV (serving/rules.py lists them; the document's
descriptions state them), and up to the request limits the descriptions state. A schema-valid request the server
refuses must get a 4xx whose body names one of those rules (``rule``, or on each of its ``problems``) or limits
(``limit``): a refusal of any other kind fails the test. The models here never raise, so any 5xx is the
server's fault.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections import Counter
from pathlib import Path

import schemathesis  # noqa: E402  (a test dependency: a missing one is an error, not a skip)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance, response_schema_conformance  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from pyml_jupyter.serving.app import create_app  # noqa: E402
from pyml_jupyter.serving.rules import CROSS_FIELD_RULES  # noqa: E402

from test_serving_batching import write_package  # noqa: E402

RULES = {rule.id for rule in CROSS_FIELD_RULES}
LIMITS = {"PYML_MAX_BODY_BYTES", "PYML_MAX_ROWS", "PYML_MAX_COLUMNS", "PYML_MAX_DEPTH"}  # stated in the descriptions
NON_FINITE = re.compile(rb"[\[:,](-?Infinity|NaN)[\],}]")


# Models of every column dtype (nullable or not) and of several tensors of various dtypes and shapes: each
# dtype's range, format and empty forms are where the document and the server could disagree.
RICH_COLUMNS = [("b", "bool", False), ("i8", "int8", False), ("u64", "uint64", False), ("f32", "float32", False),
                ("f", "float64", True), ("s", "string", True), ("t", "datetime", False), ("bin", "binary", False),
                ("o", "object", True), ("ni", "int32", True), ("nb", "bool", True)]
RICH_TENSORS = [("a", "int8", [None]), ("b", "bool", [None, 2]), ("c", "string", [None]),
                ("d", "float16", [None, None]), ("e", "uint64", [None])]
RICH_SOURCE = textwrap.dedent("""
    import numpy as np
    import pandas as pd
    from pyml_jupyter.serving.contract import DataFrameModel, TensorModel


    class Rich(DataFrameModel):
        def predict(self, df):
            return pd.DataFrame({"n": np.ones(len(df), dtype="int64")}, index=df.index)


    class RichTensors(TensorModel):
        def predict(self, tensors):
            return {"out": np.zeros(len(tensors["a"]))}
""")


def write_rich_package(directory: Path, *, tensor: bool = False) -> Path:
    """A package of :data:`RICH_COLUMNS` (or :data:`RICH_TENSORS`) whose model answers a constant per row."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(RICH_SOURCE)
    (directory / "requirements.txt").write_text("")
    if tensor:
        schemas = {"input_schema": {"type": "tensor", "tensors": [{"name": n, "dtype": d, "shape": shape}
                                                                  for n, d, shape in RICH_TENSORS]},
                   "output_schema": {"type": "tensor", "tensors": [{"name": "out", "dtype": "float64",
                                                                    "shape": [None]}]}}
        sample = {"a": [1], "b": [[True, False]], "c": ["x"], "d": [[0.5]], "e": [3]}
    else:
        schemas = {"input_schema": {"type": "dataframe", "columns": [{"name": n, "dtype": d, "nullable": z}
                                                                     for n, d, z in RICH_COLUMNS]},
                   "output_schema": {"type": "dataframe", "columns": [{"name": "n", "dtype": "int64",
                                                                       "nullable": False}]}}
        sample = {"columns": [n for n, _, _ in RICH_COLUMNS],
                  "data": [[True, 1, 2, 0.5, None, None, "2024-01-31T12:00:00", "AAE=", None, None, None]]}
    (directory / "sample.json").write_text(json.dumps(sample))
    contract = {"format_version": 1, "kind": "tensor" if tensor else "dataframe",
                "class_name": "RichTensors" if tensor else "Rich",
                "python_version": ".".join(map(str, sys.version_info[:3])), **schemas,
                "artifacts": {}, "takes_artifacts": False, "metadata": {}}
    (directory / "pyml.json").write_text(json.dumps(contract))
    return directory


def rules_named(body: dict) -> list[str | None]:
    """The cross-field rules an error body names: its ``rule``, else each problem's (None where missing)."""
    if "rule" in body:
        return [body["rule"]]
    return [problem.get("rule") for problem in body.get("problems", [])] or [None]


def check_case(case, refusals: Counter) -> None:
    """Every check on one generated request; a schema-valid request refused must break a documented rule."""
    response = case.call()
    excluded = [positive_data_acceptance]
    if response.status_code == 200 and NON_FINITE.search(response.content):
        # NaN/Infinity are written as MLflow writes them: literals outside JSON, so no JSON Schema validator
        # can read them; the document calls those numbers nullable and says so. Checked here instead: the
        # answer is Python's JSON with only numbers where the literals stand.
        excluded.append(response_schema_conformance)
        json.loads(response.content, parse_constant=lambda literal: float(literal))
    case.validate_response(response, excluded_checks=excluded)
    try:
        case.validate_response(response, checks=[positive_data_acceptance])
    except FailureGroup:  # the one check run failed: a schema-valid request was refused
        body = response.json()
        assert 400 <= response.status_code < 500, (response.status_code, body, case.body)
        named = [body["limit"]] if body.get("limit") in LIMITS else rules_named(body)
        assert set(named) <= RULES | LIMITS, f"refused for no documented rule or limit: {body} for {case.body!r}"
        refusals.update(named)


def check_every_operation(package: Path) -> tuple[list[str], Counter]:
    """Run schemathesis' checks over every operation of the app's own document; the operations checked and
    the cross-field rules schema-valid requests were refused for."""
    app = create_app(package, model_name="example", model_version="1")
    checked, refusals = [], Counter()
    with TestClient(app, base_url="http://localhost"):  # runs the lifespan: the model is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            media_types = [body.media_type for body in operation.body] or [None]
            # an operation without a body or parameters has no invalid request to generate
            modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if operation.body else (GenerationMode.POSITIVE,)
            for mode in modes:
                for media_type in media_types:
                    strategy = operation.as_strategy(mode, media_type=media_type)

                    @given(case=strategy)
                    # the same requests every run: a failure is the server's or the document's, never luck's
                    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                              database=None, derandomize=True)
                    def keeps_its_promises(case):
                        check_case(case, refusals)

                    keeps_its_promises()
                    checked.append(f"{operation.label} {mode.value} {media_type or ''}".strip())
    return checked, refusals


def test_the_documents_rules_are_named_in_its_descriptions(tmp_path):
    app = create_app(write_package(tmp_path / "frame"), model_name="example", model_version="1")
    with TestClient(app, base_url="http://localhost") as client:
        doc = client.get("/openapi.json").json()
    for path in ("/invocations", "/v2/models/example/infer"):
        description = doc["paths"][path]["post"]["description"]
        assert all(f"[{rule.id}] {rule.text}" in description for rule in CROSS_FIELD_RULES)
        assert all(setting in description for setting in LIMITS) and "at most 100000 rows" in description
    assert set(doc["components"]["schemas"]["Error"]["properties"]["rule"]["enum"]) == RULES
    assert set(doc["components"]["schemas"]["Error"]["properties"]["limit"]["enum"]) == LIMITS


def test_a_dataframe_model_keeps_the_documents_promises(tmp_path):
    checked, refusals = check_every_operation(write_package(tmp_path / "frame"))
    assert {"POST /invocations negative application/json", "POST /invocations positive text/csv",
            "POST /v2/models/example/infer negative application/json"} <= set(checked)
    print("schema-valid requests refused, by rule:", dict(refusals))


def test_a_tensor_model_keeps_the_documents_promises(tmp_path):
    checked, refusals = check_every_operation(write_package(tmp_path / "tensor", tensor=True))
    assert {"POST /invocations negative application/json",
            "POST /v2/models/example/infer positive application/json"} <= set(checked)
    print("schema-valid requests refused, by rule:", dict(refusals))


def test_a_refusal_for_an_undocumented_reason_fails_the_check(tmp_path):
    """The check above can fail: a refused request whose error names no rule is not let through."""
    assert rules_named({"error_code": "SCHEMA_ERROR", "problems": [{"field": "x", "error": "wrong type"}]}) == [None]
    assert rules_named({"error_code": "BAD_REQUEST", "message": "x", "rule": "v2-data-count"}) == ["v2-data-count"]


def test_a_dataframe_model_of_every_dtype_keeps_the_documents_promises(tmp_path):
    checked, refusals = check_every_operation(write_rich_package(tmp_path / "rich"))
    assert "POST /invocations positive text/csv" in checked
    print("schema-valid requests refused, by rule:", dict(refusals))


def test_a_model_of_several_tensors_keeps_the_documents_promises(tmp_path):
    checked, refusals = check_every_operation(write_rich_package(tmp_path / "rich", tensor=True))
    assert "POST /v2/models/example/infer positive application/json" in checked
    print("schema-valid requests refused, by rule:", dict(refusals))
