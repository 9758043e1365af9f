"""The /pyml/ handlers are @authorized: a custom jupyter_server Authorizer decides who may read or write."""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError


class ReadOnlyPyml(Authorizer):
    """Allows everything but writing the ``pyml`` resource; records what it was asked."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource):
        ReadOnlyPyml.asked.append((action, resource))
        return not (resource == "pyml" and action == "write")


@pytest.fixture
def jp_server_config(jp_server_config):
    return {"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True},
                          "authorizer_class": f"{__name__}.ReadOnlyPyml"}}


async def fetch(jp_fetch, *parts, **kwargs):
    try:
        response = await jp_fetch("pyml", *parts, **kwargs)
    except HTTPClientError as e:
        response = e.response
    return response.code


async def test_an_authorizer_refusing_writes_stops_builds_deploys_tests_and_stops(jp_fetch):
    body = json.dumps({"ref": "churn/1"})
    assert await fetch(jp_fetch, "builds", method="POST", body=body) == 403
    assert await fetch(jp_fetch, "deployments", method="POST", body=body) == 403
    assert await fetch(jp_fetch, "tests", method="POST", body=body) == 403
    assert await fetch(jp_fetch, "deployments", "churn", "1", method="DELETE") == 403
    assert ("write", "pyml") in ReadOnlyPyml.asked


async def test_the_same_authorizer_lets_reads_through(jp_fetch):
    assert await fetch(jp_fetch, "jobs") == 200
    assert await fetch(jp_fetch, "config") == 200
    assert ("read", "pyml") in ReadOnlyPyml.asked
