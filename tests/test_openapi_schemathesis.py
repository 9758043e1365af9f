"""The OpenAPI document against the real app: schemathesis generates requests from ``/openapi.json`` (valid and
invalid ones, every route: /invocations in each JSON form and CSV, V2, health, metadata, metrics) and checks
the answers in-process (ASGI), for a DataFrame model and a TensorModel.

Every check of ``--checks all`` runs but one: ``positive_data_acceptance`` (every schema-valid request gets a
2xx) cannot hold yet, because some rules span fields and JSON Schema (OpenAPI 3.0) cannot state them: the
lists of the ``{column: [values]}`` form have one length, a split row has one value per column, a V2 input's
data has as many values as its shape says, a V2 request names every input, a CSV body is CSV. Those are in the
document's descriptions; a request breaking them gets a 4xx naming the field. The models here never raise, so
any 5xx is the server's fault.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import schemathesis  # noqa: E402  (a test dependency: a missing one is an error, not a skip)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from pyml_jupyter.serving.app import create_app  # noqa: E402

from test_serving_batching import write_package  # noqa: E402


def check_every_operation(package: Path) -> list[str]:
    """Run schemathesis' checks over every operation of the app's own document; the operations checked."""
    app = create_app(package, model_name="example", model_version="1")
    checked = []
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
                    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                              database=None)
                    def keeps_its_promises(case):
                        case.call_and_validate(excluded_checks=[positive_data_acceptance])

                    keeps_its_promises()
                    checked.append(f"{operation.label} {mode.value} {media_type or ''}".strip())
    return checked


def test_a_dataframe_model_keeps_the_documents_promises(tmp_path):
    checked = check_every_operation(write_package(tmp_path / "frame"))
    assert {"POST /invocations negative application/json", "POST /invocations positive text/csv",
            "POST /v2/models/example/infer negative application/json"} <= set(checked)


def test_a_tensor_model_keeps_the_documents_promises(tmp_path):
    checked = check_every_operation(write_package(tmp_path / "tensor", tensor=True))
    assert {"POST /invocations negative application/json",
            "POST /v2/models/example/infer positive application/json"} <= set(checked)
