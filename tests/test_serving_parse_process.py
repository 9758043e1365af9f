"""The parse process: a large body is read in a warm child process, so health answers while it is parsed; the
answers (errors included) are those of the inline path; a child that dies costs its requests a 503, not the
server, and is replaced."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pyml_jupyter.serving.app import create_app
from pyml_jupyter.serving.parse_process import DEFAULT_PARSE_PROCESS_BYTES, parse_process_bytes_from_env
from processes import serving

ROW = {"x1": 0.25, "x2": -1.5, "city": "nice"}


def records_body(rows: int, last: dict | None = None) -> bytes:
    """A ``dataframe_records`` body of ``rows`` rows (the last one replaced by ``last``)."""
    records = [ROW] * rows
    if last is not None:
        records[-1] = last
    return json.dumps({"dataframe_records": records}).encode()


def split_body(rows: int, last: list) -> bytes:
    """A ``dataframe_split`` body of ``rows`` rows, the last one ``last``."""
    data = [[0.25, -1.5, "nice"]] * (rows - 1) + [last]
    return json.dumps({"dataframe_split": {"columns": ["x1", "x2", "city"], "data": data}}).encode()


@pytest.fixture
def served(example_package: Path):
    """A server process (its own process group) and its port."""
    with serving(example_package, "--log-level", "info", new_session=True) as running:
        yield running.port, running.process


@pytest.fixture
def server(served):
    return served[0]


def post(port: int, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def ping(port: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/ping")
    assert connection.getresponse().status == 200
    connection.close()
    return time.perf_counter() - started


def pings_while_posting(port: int, body: bytes) -> tuple[int, dict, list[float], float]:
    """Post ``body`` in a thread while ``/ping`` is asked every 10 ms: its answer, the pings' seconds, and the
    post's."""
    answers: list[tuple[int, dict]] = []
    big = threading.Thread(target=lambda: answers.append(post(port, body)), daemon=True)
    started = time.perf_counter()
    big.start()
    seconds = []
    while big.is_alive():
        seconds.append(ping(port))
        time.sleep(0.01)
    return *answers[0], seconds, time.perf_counter() - started


def assert_milliseconds(seconds: list[float], elapsed: float) -> None:
    """Pings answered in milliseconds while the big request took ``elapsed`` seconds. Parsed in the server
    process, one ping waits for most of the parse (the GIL is held throughout): 0.3 s of a 0.34 s request at a
    load average of 5, 1.4 s under 14. Parsed in the child, the slowest ping took ~20 ms at both loads: the
    bounds leave room for a machine shared with other work, and grow with its slowness, which ``elapsed``
    measures."""
    seconds = sorted(seconds)
    assert seconds[len(seconds) // 2] < 0.05 and seconds[-1] < max(0.1, elapsed / 4), (elapsed, seconds)


def test_ping_answers_within_milliseconds_while_a_multi_megabyte_body_is_parsed(server):
    # ~8 MB of JSON: 200k rows, parsed whole (~0.8 s inline on this machine, the GIL held all along), then
    # refused for its rows
    status, answer, seconds, elapsed = pings_while_posting(server, records_body(200_000))
    assert status == 413 and answer["limit"] == "PYML_MAX_ROWS"
    assert len(seconds) >= 5, "the big body was answered too fast to tell"
    assert_milliseconds(seconds, elapsed)


def test_a_bad_big_body_and_a_bad_small_body_get_the_same_answer(example_package: Path):
    bad = {"x1": "oops", "x2": 1.0, "city": "nice"}
    small = 1_000
    big = DEFAULT_PARSE_PROCESS_BYTES // 15  # rows enough to go past the threshold in every form
    cases = [
        (records_body(small, bad), records_body(big, bad)),  # 422, naming the column
        (records_body(small)[:-5], records_body(big)[:-5]),  # 400, invalid JSON
        (json.dumps({"dataframe_records": [{**ROW, **{f"k{i}": 1 for i in range(2_000)}}]}).encode(),  # a limit
         json.dumps({"dataframe_records": [ROW] * big + [{**ROW, **{f"k{i}": 1 for i in range(2_000)}}]}).encode()),
        (split_body(small, [0.5, "nice", "paris"]), split_body(big, [0.5, "nice", "paris"])),  # a rule, by position
        (split_body(small, [0.5, 1.0]), split_body(big, [0.5, 1.0])),  # a row of the wrong width: a rule
    ]
    rules: set[str | None] = set()
    with TestClient(create_app(example_package)) as client:
        assert client.app.state.server.parse_process.pid is not None
        csv_rows = "0.25,-1.5,nice\n"
        cases.append((("x1,x2,city\n" + csv_rows * small + "oops,1,nice\n").encode(),
                      ("x1,x2,city\n" + csv_rows * big + "oops,1,nice\n").encode()))
        cases.append((("x1,x2,city\n" + csv_rows * small + "0.25,-1.5,nice,extra\n").encode(),  # a wide row
                      ("x1,x2,city\n" + csv_rows * big + "0.25,-1.5,nice,extra\n").encode()))
        for small_body, big_body in cases:
            assert len(small_body) < DEFAULT_PARSE_PROCESS_BYTES < len(big_body)
            kind = "text/csv" if small_body.startswith(b"x1") else "application/json"
            a = client.post("/invocations", content=small_body, headers={"Content-Type": kind})
            b = client.post("/invocations", content=big_body, headers={"Content-Type": kind})
            assert a.status_code == b.status_code and a.status_code in (400, 422)
            assert _without_positions(a.json()) == _without_positions(b.json())
            rules.update(p.get("rule") for p in [a.json(), *a.json().get("problems", [])])
        assert {"split-row-types", "row-width", "csv"} <= rules, rules  # rule names come back from the child too
        answers = []
        for rows in (10, 5 * big):  # the same V2 error, read inline and in the child
            v2 = {"inputs": [{"name": "x1", "shape": [rows], "datatype": "FP64", "data": ["oops"] * rows}]}
            answers.append(client.post("/v2/models/ExampleModel/infer", json=v2))
        assert len(json.dumps(v2)) > DEFAULT_PARSE_PROCESS_BYTES
        assert answers[0].status_code == answers[1].status_code == 422
        assert _without_positions(answers[0].json()) == _without_positions(answers[1].json())


def _without_positions(body: dict) -> dict:
    """An error body with JSON positions (line, column, char), row numbers and counts blanked: they depend on the
    body's size."""
    import re

    return json.loads(re.sub(r"(line|column|char|has|row) \d+", r"\1 N", json.dumps(body)))


def test_big_bodies_predict_like_small_ones_through_the_child(example_package: Path):
    rows = DEFAULT_PARSE_PROCESS_BYTES // 30 + 1_000
    with TestClient(create_app(example_package)) as client:
        small = client.post("/invocations", json={"dataframe_records": [ROW]}).json()["predictions"]
        answer = client.post("/invocations", content=records_body(rows), headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.json()["predictions"] == small * rows
        assert "transfer;dur=" in answer.headers["server-timing"]  # it went through the child
        rows *= 2  # V2 spends fewer bytes per row
        v2 = {"id": "r1", "inputs": [{"name": "x1", "shape": [rows], "datatype": "FP64", "data": [0.25] * rows},
                                     {"name": "x2", "shape": [rows], "datatype": "FP64", "data": [-1.5] * rows},
                                     {"name": "city", "shape": [rows], "datatype": "BYTES", "data": ["nice"] * rows}]}
        assert len(json.dumps(v2)) > DEFAULT_PARSE_PROCESS_BYTES
        answer = client.post("/v2/models/ExampleModel/infer", json=v2)
        assert answer.status_code == 200 and answer.json()["id"] == "r1"
        assert answer.json()["outputs"][0]["data"] == [p[answer.json()["outputs"][0]["name"]] for p in small] * rows
        metrics = client.get("/metrics").text
        assert 'pyml_phase_seconds_count{route="/v2/models/{name}/infer",phase="transfer"} 1' in metrics


def test_a_killed_parse_process_costs_a_503_and_is_replaced(example_package: Path):
    rows = DEFAULT_PARSE_PROCESS_BYTES // 30 + 1_000
    with TestClient(create_app(example_package)) as client:
        parse = client.app.state.server.parse_process
        first = parse.pid
        os.kill(first, signal.SIGKILL)
        answer = client.post("/invocations", content=records_body(rows), headers={"Content-Type": "application/json"})
        assert answer.status_code == 503 and answer.json()["error_code"] == "PARSER_UNAVAILABLE"
        answer = client.post("/invocations", content=records_body(rows), headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        assert parse.pid not in (None, first)
        assert client.get("/ping").status_code == 200


def test_the_threshold_comes_from_the_environment_and_zero_turns_the_process_off(example_package: Path):
    assert parse_process_bytes_from_env({}) == DEFAULT_PARSE_PROCESS_BYTES == 256 * 1024
    assert parse_process_bytes_from_env({"PYML_PARSE_PROCESS_BYTES": "1000"}) == 1000
    with pytest.raises(ValueError, match="PYML_PARSE_PROCESS_BYTES"):
        parse_process_bytes_from_env({"PYML_PARSE_PROCESS_BYTES": "big"})
    with TestClient(create_app(example_package, parse_process_bytes=0)) as client:
        assert client.app.state.server.parse_process is None
        answer = client.post("/invocations", content=records_body(DEFAULT_PARSE_PROCESS_BYTES // 30 + 1_000),
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and "transfer" not in answer.headers["server-timing"]


def test_sigterm_to_the_process_group_drains_a_big_request_in_the_child_then_exits(served):
    port, process = served
    answers: list[tuple[int, dict]] = []
    big = threading.Thread(target=lambda: answers.append(post(port, records_body(95_000))), daemon=True)
    big.start()
    time.sleep(0.2)  # the ~4 MB body is being parsed in the child
    os.killpg(process.pid, signal.SIGTERM)  # as a terminal or a process manager signals the whole group
    big.join(timeout=60)
    assert answers and answers[0][0] == 200 and len(answers[0][1]["predictions"]) == 95_000
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = process.stdout.read()
    assert "Application shutdown complete" in log and "parse process died" not in log, log


def test_the_parse_process_starts_under_an_interactive_shell_main(example_package: Path, monkeypatch):
    class ShellMain:  # what IPython puts in sys.modules["__main__"]: no __spec__, no __file__
        pass

    monkeypatch.setitem(sys.modules, "__main__", ShellMain())
    with TestClient(create_app(example_package)) as client:
        assert client.app.state.server.parse_process.pid is not None
