"""The rules that span fields (serving/rules.py): each one can be broken by a request the model's own OpenAPI
document calls valid (JSON Schema cannot state the rule), and the refusal names it: ``rule`` on a 400, on each
problem of a 422. A refusal for what the document does state (a wrong JSON type, say) names no rule.

Each row of ``BROKEN`` is a specification: this rule, broken by this request to this model, answers this status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pytest
from starlette.testclient import TestClient

from pyml_jupyter.serving.app import create_app
from pyml_jupyter.serving.rules import CROSS_FIELD_RULES

from test_openapi import as_json_schema
from test_serving_batching import write_package

V2 = "/v2/models/example/infer"
CSV = {"Content-Type": "text/csv"}


def v2_input(name: str, shape: list[int], data: list, datatype: str = "INT64") -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


class Broken(NamedTuple):
    """A rule, the model (frame: x int64 and city string; tensor: x float32 (n, 3); ragged: x float32 (n, m)),
    a request that breaks it, and the status it answers."""

    rule: str
    model: str
    path: str
    body: Any  # JSON, or a str sent as text/csv
    status: int


BROKEN = [
    Broken("same-length", "frame", "/invocations", {"inputs": {"x": [1, 2], "city": ["paris"]}}, 422),
    Broken("same-length", "frame", "/invocations", {"instances": {"x": [1], "city": ["paris"], "other": 3}}, 422),
    Broken("row-width", "frame", "/invocations", {"dataframe_split": {"columns": ["x", "city"], "data": [[1]]}}, 422),
    Broken("row-width", "frame", "/invocations", {"dataframe_split": {"data": [[1, "paris", "extra"]]}}, 422),
    Broken("every-column", "frame", "/invocations", {"dataframe_split": {"columns": ["x"], "data": [[1]]}}, 422),
    Broken("every-column", "frame", "/invocations", "x\n1\n", 422),
    Broken("every-column", "frame", V2, {"inputs": [v2_input("x", [1], [1])]}, 422),
    Broken("every-tensor", "tensor", V2, {"inputs": [v2_input("other", [1], [1])]}, 422),
    Broken("csv", "frame", "/invocations", 'x,city\n1,"paris\n', 400),
    Broken("csv", "frame", "/invocations", "", 400),
    Broken("csv", "frame", "/invocations", "x,city\nparis,1\n", 422),
    Broken("csv", "frame", "/invocations", "x,city\n1,paris\n2,lyon,extra\n", 400),
    Broken("split-row-types", "frame", "/invocations",
           {"dataframe_split": {"columns": ["x", "city"], "data": [["paris", 1]]}}, 422),
    Broken("v2-data-count", "frame", V2, {"inputs": [v2_input("x", [2], [1]),
                                                     v2_input("city", [1], ["paris"], "BYTES")]}, 400),
    Broken("v2-once", "frame", V2, {"inputs": [v2_input("x", [1], [1]), v2_input("x", [1], [2]),
                                               v2_input("city", [1], ["paris"], "BYTES")]}, 400),
    Broken("v2-shape", "frame", V2, {"inputs": [v2_input("x", [1, 2], [1, 2]),
                                                v2_input("city", [1], ["paris"], "BYTES")]}, 400),
    Broken("tensor-shape", "tensor", V2, {"inputs": [v2_input("x", [1, 2], [1.0, 2.0], "FP32")]}, 422),
    Broken("tensor-shape", "tensor", V2, {"inputs": [v2_input("x", [3], [1.0, 2.0, 3.0], "FP32")]}, 422),
    Broken("tensor-shape", "tensor", V2, {"inputs": [v2_input("x", [0, 10**6, 10**6, 10**6], [], "FP32")]}, 422),
    Broken("rectangular", "ragged", "/invocations", {"inputs": {"x": [[1.0, 2.0], [3.0]]}}, 422),
]

# Refusals the document states itself: no rule to name.
STATED = [
    ("frame", "/invocations", {"dataframe_records": [{"x": "one", "city": "paris"}]}, 422),
    ("frame", "/invocations", {"dataframe_records": [1]}, 422),
    ("frame", "/invocations", {"inputs": {"x": [1]}, "instances": [{"x": 1, "city": "paris"}]}, 400),
    ("tensor", "/invocations", {"inputs": {"x": [[1.0, True, 3.0]]}}, 422),
    ("frame", V2, {"inputs": [v2_input("x", [1], ["one"]), v2_input("city", [1], ["paris"], "BYTES")]}, 422),
]


def write_ragged_package(directory: Path) -> Path:
    """The tensor model, its input of any width: x float32 (n, m)."""
    write_package(directory, tensor=True)
    contract = json.loads((directory / "pyml.json").read_text())
    contract["input_schema"]["tensors"][0]["shape"] = [None, None]
    (directory / "pyml.json").write_text(json.dumps(contract))
    return directory


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """A TestClient per model, and each model's OpenAPI document."""
    root = tmp_path_factory.mktemp("rules")
    packages = {"frame": write_package(root / "frame"), "tensor": write_package(root / "tensor", tensor=True),
                "ragged": write_ragged_package(root / "ragged")}
    out = {}
    with TestClient(create_app(packages["frame"], model_name="example", model_version="1")) as frame, \
            TestClient(create_app(packages["tensor"], model_name="example", model_version="1")) as tensor, \
            TestClient(create_app(packages["ragged"], model_name="example", model_version="1")) as ragged:
        for name, client in (("frame", frame), ("tensor", tensor), ("ragged", ragged)):
            out[name] = (client, client.get("/openapi.json").json())
        yield out


def send(client: TestClient, path: str, body: Any):
    if isinstance(body, str):
        return client.post(path, content=body.encode(), headers=CSV)
    return client.post(path, json=body)


def valid_by_the_document(doc: dict, path: str, body: Any) -> bool:
    """Whether ``body`` is a valid request to ``path`` by the document's own JSON Schema."""
    content = doc["paths"][path]["post"]["requestBody"]["content"]
    node = content["text/csv" if isinstance(body, str) else "application/json"]["schema"]
    schema = {**as_json_schema(node), "components": as_json_schema(doc["components"])}
    return jsonschema.Draft4Validator(schema).is_valid(body)


def rules_named(body: dict) -> list:
    return [body["rule"]] if "rule" in body else [p.get("rule") for p in body.get("problems", [])] or [None]


def test_every_listed_rule_has_a_request_breaking_it():
    assert {broken.rule for broken in BROKEN} == {rule.id for rule in CROSS_FIELD_RULES}


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: f"{b.rule}:{b.model}:{b.path.rsplit('/', 1)[-1]}")
def test_a_request_the_document_calls_valid_that_breaks_a_rule_is_refused_naming_it(clients, broken):
    client, doc = clients[broken.model]
    assert valid_by_the_document(doc, broken.path, broken.body)
    response = send(client, broken.path, broken.body)
    assert response.status_code == broken.status, response.text
    assert rules_named(response.json()) == [broken.rule] * len(rules_named(response.json())), response.text


@pytest.mark.parametrize("model, path, body, status", STATED, ids=lambda v: str(v)[:40])
def test_a_refusal_the_document_states_names_no_rule(clients, model, path, body, status):
    client, doc = clients[model]
    assert not valid_by_the_document(doc, path, body)
    response = send(client, path, body)
    assert response.status_code == status, response.text
    assert set(rules_named(response.json())) == {None}, response.text


def test_a_422_names_the_rule_on_each_problem_and_a_400_on_the_body(clients):
    client, _ = clients["frame"]
    problems = send(client, "/invocations", {"dataframe_split": {"columns": ["city"], "data": [[3]]}}).json()
    assert "rule" not in problems
    assert sorted((p["field"], p["rule"]) for p in problems["problems"]) == [
        ("city", "split-row-types"), ("x", "every-column")]
    twice = send(client, V2, next(b for b in BROKEN if b.rule == "v2-once").body).json()
    assert twice["rule"] == "v2-once" and twice["error"] == twice["message"]  # the V2 error form, and ours


def test_zero_rows_of_a_tensor_of_any_width_are_an_empty_list(clients):
    client, doc = clients["ragged"]
    assert valid_by_the_document(doc, "/invocations", {"inputs": {"x": []}})
    response = send(client, "/invocations", {"inputs": {"x": []}})
    assert response.status_code == 200 and response.json() == {"predictions": {"y": [], "total": []}}


def test_a_csv_body_reads_as_a_json_body_does(tmp_path):
    """A nullable column may be left out of the header, and a binary column's text is base64."""
    package = write_package(tmp_path / "frame")
    contract = json.loads((package / "pyml.json").read_text())
    contract["input_schema"]["columns"] += [{"name": "note", "dtype": "string", "nullable": True},
                                            {"name": "blob", "dtype": "binary", "nullable": False}]
    (package / "pyml.json").write_text(json.dumps(contract))
    (package / "sample.json").write_text(json.dumps({"columns": ["x", "city", "blob"], "data": [[1, "a", "AAE="]]}))
    with TestClient(create_app(package, model_name="example", model_version="1")) as client:
        answer = send(client, "/invocations", "x,city,blob\n1,paris,AAE=\n")
        assert answer.status_code == 200, answer.text
        assert answer.json() == send(client, "/invocations", {"dataframe_records": [
            {"x": 1, "city": "paris", "blob": "AAE="}]}).json()
        refused = send(client, "/invocations", "x,city,blob\n1,paris,not base64!\n")
        assert refused.status_code == 422 and rules_named(refused.json()) == ["csv"], refused.text


def test_a_csv_row_wider_than_the_header_is_a_400_naming_its_line(clients):
    """pandas, building only the model's columns, would drop the extra values; and read a body whose every row
    has one more value than the header as one whose first column is the index."""
    client, _ = clients["frame"]
    for body, line in (("x,city\n1,paris\n2,lyon,extra\n", 3), ("x,city\n1,paris,a\n2,lyon,b\n", 2),
                       ('x,city\n1,"paris,\nfrance"\n2,lyon,\n', 4)):
        refused = send(client, "/invocations", body)
        assert refused.status_code == 400 and refused.json()["rule"] == "csv", refused.text
        assert f"line {line} has 3 values, more than the 2 columns of its header" in refused.json()["message"]


def test_separators_and_line_ends_inside_quoted_csv_values_are_the_values_own(clients):
    client, _ = clients["frame"]
    answer = send(client, "/invocations", 'x,city\r\n1,"paris, france"\r\n2,"lyon\n(69), ""rhône"""\r\n')
    assert answer.status_code == 200, answer.text
    assert answer.json() == send(client, "/invocations", {"dataframe_records": [
        {"x": 1, "city": "paris, france"}, {"x": 2, "city": 'lyon\n(69), "rhône"'}]}).json()
