"""Access control of the serving runtime: the Host allow-list and the bearer token, over HTTP (in-process and
a real server) and gRPC (tritonclient against a real server)."""

from __future__ import annotations

import importlib
import http.client
import json
import os
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pyml_jupyter.serving.access import AccessPolicy, host_name, policy_from_env
from pyml_jupyter.serving.app import app_from_env, create_app

from processes import free_port, serving

ROW = {"dataframe_records": [{"x1": 0.5, "x2": -1.0, "city": "nice"}]}
PROBES = ("/ping", "/health", "/v2/health/live", "/v2/health/ready")


def serve(package: Path, policy: AccessPolicy) -> TestClient:
    return TestClient(create_app(package, model_name="example", access=policy), base_url="http://localhost")


# ------------------------------------------------------------------------------------------ Host allow-list


def test_host_names_lose_their_port_and_brackets():
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("::1") == "::1"
    assert host_name("10.0.0.5") == "10.0.0.5"


def test_loopback_names_and_this_machines_own_names_are_allowed_by_default(example_package):
    policy = AccessPolicy.build()
    own = socket.gethostname()
    with serve(example_package, policy) as client:
        for host in ("localhost", "127.0.0.1:8080", "[::1]:8080", own, f"{own}:8080"):
            assert client.get("/ping", headers={"host": host}).status_code == 200, host
            assert client.post("/invocations", json=ROW, headers={"host": host}).status_code == 200, host


def test_any_other_host_is_refused_with_a_400_naming_the_setting(example_package):
    with serve(example_package, AccessPolicy.build()) as client:
        for path in ("/invocations", "/ping", "/metadata"):
            response = (client.post(path, json=ROW, headers={"host": "evil.example:8080"}) if path == "/invocations"
                        else client.get(path, headers={"host": "evil.example"}))
            assert response.status_code == 400
            body = response.json()
            assert body["error_code"] == "HOST_NOT_ALLOWED"
            assert "evil.example" in body["message"] and "PYML_ALLOWED_HOSTS" in body["message"]
        metrics = client.get("/metrics").text
        assert 'pyml_errors_total{route="<refused>",error_code="HOST_NOT_ALLOWED"} 3' in metrics


def test_configured_hosts_extend_the_defaults_and_a_leading_dot_allows_subdomains(example_package):
    policy = AccessPolicy.build(["models.example.com", ".internal"])
    with serve(example_package, policy) as client:
        for host in ("models.example.com", "a.b.internal:80", "internal", "localhost"):
            assert client.get("/metadata", headers={"host": host}).status_code == 200, host
        for host in ("example.com", "xinternal", "models.example.com.evil"):
            assert client.get("/metadata", headers={"host": host}).status_code == 400, host


def test_a_star_allows_every_host(example_package):
    with serve(example_package, AccessPolicy.build("*")) as client:
        assert client.get("/metadata", headers={"host": "anything.example"}).status_code == 200


# ------------------------------------------------------------------------------------------ bearer token


def test_with_a_token_every_route_but_the_probes_needs_it(example_package):
    with serve(example_package, AccessPolicy.build(token="s3cret-token")) as client:
        for path in PROBES:
            assert client.get(path).status_code == 200, path
        for method, path in (("POST", "/invocations"), ("GET", "/metadata"), ("GET", "/openapi.json"),
                             ("GET", "/metrics"), ("GET", "/v2"), ("GET", "/v2/models/example"),
                             ("POST", "/v2/models/example/infer"), ("GET", "/no/such/route")):
            response = client.request(method, path, json=ROW if method == "POST" else None)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error_code"] == "UNAUTHENTICATED"
            assert "Authorization: Bearer" in response.json()["message"]


def test_the_right_token_is_served_and_a_wrong_one_refused_without_echoing_it(example_package):
    with serve(example_package, AccessPolicy.build(token="s3cret-token")) as client:
        good = client.post("/invocations", json=ROW, headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200 and len(good.json()["predictions"]) == 1
        for value in ("Bearer wrong", "Basic s3cret-token", "s3cret-token", "Bearer s3cret-token2"):
            bad = client.post("/invocations", json=ROW, headers={"Authorization": value})
            assert bad.status_code == 401, value
            assert "s3cret" not in bad.text and "wrong" not in bad.text


def test_the_host_check_comes_before_the_token(example_package):
    with serve(example_package, AccessPolicy.build(token="t")) as client:
        response = client.get("/ping", headers={"host": "evil.example"})
        assert response.status_code == 400


def test_the_policy_comes_from_the_environment(example_package, monkeypatch):
    monkeypatch.setenv("PYML_ALLOWED_HOSTS", "models.example.com, .corp")
    monkeypatch.setenv("PYML_TOKEN", "from-env")
    policy = policy_from_env()
    assert policy.token == "from-env" and {"models.example.com", ".corp", "localhost"} <= policy.hosts
    monkeypatch.setenv("PYML_PACKAGE", str(example_package))
    with TestClient(app_from_env(), base_url="http://models.example.com") as client:
        assert client.get("/metadata").status_code == 401
        assert client.get("/metadata", headers={"Authorization": "Bearer from-env"}).status_code == 200
        assert client.get("/ping", headers={"host": "nope.example"}).status_code == 400


# ------------------------------------------------------------------------------------------ a real server


@pytest.fixture
def guarded(example_package: Path):
    grpc_port = free_port()
    env = dict(os.environ, PYML_TOKEN="grpc-token", PYML_ALLOWED_HOSTS="")
    with serving(example_package, "--grpc-port", str(grpc_port), "--model-name", "example", "--log-level", "warning",
                 env=env) as server:
        yield server.port, grpc_port


def _post(port: int, headers: dict) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/invocations", body=json.dumps(ROW),
                       headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    response.read()
    return response.status


def test_a_real_server_checks_host_and_token_over_http(guarded):
    http_port, _ = guarded
    assert _post(http_port, {}) == 401
    assert _post(http_port, {"Authorization": "Bearer grpc-token"}) == 200
    assert _post(http_port, {"Authorization": "Bearer grpc-token", "Host": "rebound.example"}) == 400


def test_grpc_calls_need_the_token_except_health(guarded):
    tritonclient_grpc = importlib.import_module("tritonclient.grpc")  # a test dependency: missing is an error
    import numpy as np
    from tritonclient.utils import InferenceServerException

    _, grpc_port = guarded
    client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("example")
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_metadata("example")
    assert "UNAUTHENTICATED" in str(refused.value.status()) and "bearer token" in refused.value.message()

    inputs = []
    for name, datatype, values in (("x1", "FP64", [0.5]), ("x2", "FP64", [-1.0]), ("city", "BYTES", [b"nice"])):
        tensor = tritonclient_grpc.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.array(values, dtype=object if datatype == "BYTES" else np.float64))
        inputs.append(tensor)
    with pytest.raises(InferenceServerException):
        client.infer("example", inputs)
    with pytest.raises(InferenceServerException):
        client.infer("example", inputs, headers={"authorization": "Bearer nope"})
    result = client.infer("example", inputs, headers={"authorization": "Bearer grpc-token"})
    assert result.as_numpy("label").shape == (1,)


def test_the_openapi_document_says_which_operations_need_the_token(example_package):
    with serve(example_package, AccessPolicy.build(token="s3cret-token")) as client:
        document = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"}).json()
    assert document["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    paths = document["paths"]
    assert paths["/invocations"]["post"]["security"] == [{"bearer": []}]
    assert "401" in paths["/invocations"]["post"]["responses"] and "401" in paths["/metadata"]["get"]["responses"]
    for probe in PROBES:
        assert "security" not in paths[probe]["get"] and "401" not in paths[probe]["get"]["responses"]
    assert "s3cret" not in json.dumps(document)


def test_without_a_token_the_document_declares_no_security(example_package):
    with serve(example_package, AccessPolicy.build()) as client:
        document = client.get("/openapi.json").json()
    assert "securitySchemes" not in document.get("components", {})
    assert "401" not in document["paths"]["/invocations"]["post"]["responses"]
