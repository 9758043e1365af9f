"""Row-counting adaptive batching: concurrent requests share one predict call, each gets exactly its rows,
a bad or faulty request fails alone, and health answers while a slow predict runs (a real uvicorn server)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from pyml_jupyter.serving.app import create_app
from pyml_jupyter.serving.batching import merge_inputs, split_output

from processes import serving

# A DataFrame model whose answers are exact (no floating-point doubt about which row is which) and whose
# predict takes a while, so that requests queue while it runs. It raises on x == -1 and sleeps x seconds
# when city == "sleep".
ECHO_SOURCE = textwrap.dedent(
    """
    import time
    import pandas as pd
    from pyml_jupyter.serving.contract import DataFrameModel


    class Echo(DataFrameModel):
        calls = 0

        def predict(self, df):
            Echo.calls += 1
            if (df["x"] == -1).any():
                raise ValueError("x must not be -1")
            sleeping = df["city"] == "sleep"
            time.sleep(float(df.loc[sleeping, "x"].max()) if sleeping.any() else 0.02)
            out = pd.DataFrame({"y": df["x"] * 2, "tag": df["city"] + "!"}, index=df.index)
            return out.iloc[::-1] if (df["city"] == "reverse").any() else out
    """
)

TENSOR_SOURCE = textwrap.dedent(
    """
    import time
    import numpy as np
    from pyml_jupyter.serving.contract import TensorModel


    class Doubler(TensorModel):
        def predict(self, tensors):
            time.sleep(0.02)
            x = tensors["x"]
            return {"y": x * np.float32(2), "total": x.sum(axis=1)}
    """
)


def write_package(directory: Path, *, tensor: bool = False, batch_invariant: bool | None = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(TENSOR_SOURCE if tensor else ECHO_SOURCE)
    if tensor:
        sample = {"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]}
        schemas = {
            "input_schema": {"type": "tensor", "tensors": [{"name": "x", "dtype": "float32", "shape": [None, 3]}]},
            "output_schema": {"type": "tensor", "tensors": [{"name": "y", "dtype": "float32", "shape": [None, 3]},
                                                            {"name": "total", "dtype": "float32", "shape": [None]}]},
        }
    else:
        sample = {"columns": ["x", "city"], "data": [[1, "paris"], [2, "lyon"]]}
        schemas = {
            "input_schema": {"type": "dataframe", "columns": [{"name": "x", "dtype": "int64", "nullable": False},
                                                              {"name": "city", "dtype": "string", "nullable": False}]},
            "output_schema": {"type": "dataframe", "columns": [{"name": "y", "dtype": "int64", "nullable": False},
                                                               {"name": "tag", "dtype": "string", "nullable": False}]},
        }
    (directory / "sample.json").write_text(json.dumps(sample))
    (directory / "requirements.txt").write_text("")
    contract = {"format_version": 1, "kind": "tensor" if tensor else "dataframe",
                "class_name": "Doubler" if tensor else "Echo",
                "python_version": ".".join(map(str, sys.version_info[:3])), **schemas,
                "artifacts": {}, "takes_artifacts": False, "metadata": {}}
    if batch_invariant is not None:
        contract["batch_invariant"] = batch_invariant
    (directory / "pyml.json").write_text(json.dumps(contract))
    return directory


def run(app, requests):
    """Send ``requests`` (``(method, path, json)``) concurrently to the app in-process, with its lifespan."""
    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(*(client.request(m, p, json=j) for m, p, j in requests))
    return asyncio.run(main())


def metric(app, name: str) -> list[tuple[str, float]]:
    text = run(app, [("GET", "/metrics", None)])[0].text
    return [(labels, float(v)) for labels, v in re.findall(rf"^{name}(\S*) (\S+)$", text, re.M)]


def histogram_max(app, name: str) -> float:
    """The smallest bucket bound that holds every observation of a histogram."""
    buckets = [(float(re.search(r'le="([^"]+)"', labels).group(1)), n)
               for labels, n in metric(app, name + "_bucket")]
    total = buckets[-1][1]
    return min(bound for bound, n in buckets if n == total)


def rows(sizes: list[int], seed: int = 0) -> list[list]:
    rng = random.Random(seed)
    return [[[rng.randint(0, 10**6), rng.choice(["paris", "lyon", "nice"])] for _ in range(n)] for n in sizes]


def invocation(data: list[list]) -> tuple:
    return ("POST", "/invocations", {"dataframe_split": {"columns": ["x", "city"], "data": data}})


def expected(data: list[list]) -> list[dict]:
    return [{"y": x * 2, "tag": city + "!"} for x, city in data]


# ------------------------------------------------------------------------------------------- merge/split


def _batcher_calls(arrivals: list[int]) -> list[int]:
    """The rows of each predict call when requests of one row each arrive after ``arrivals[i]`` event loop
    turns, on a free model (a real Batcher, its predict thread included)."""
    from concurrent.futures import ThreadPoolExecutor

    from pyml_jupyter.serving.batching import Batcher

    calls: list[int] = []

    def predict_batch(frame):
        calls.append(len(frame))
        return frame.rename(columns={"x": "y"})

    async def request(turns: int, x: int):
        for _ in range(turns):
            await asyncio.sleep(0)
        return await batcher.predict(pd.DataFrame({"x": [x]}), 10)

    async def main():
        return await asyncio.gather(*(request(turns, i) for i, turns in enumerate(arrivals)))

    with ThreadPoolExecutor(max_workers=1) as executor:
        batcher = Batcher(predict_batch, predict_batch, executor=executor, batching=True)
        outputs = asyncio.run(main())
    assert [int(out["y"].iloc[0]) for out in outputs] == list(range(len(arrivals)))
    return calls


def test_requests_arriving_in_the_same_few_loop_turns_as_the_first_share_its_predict():
    # The model is free when the first request arrives; the others come one, two, three turns later.
    assert _batcher_calls([0, 1, 1, 2, 3, 3, 3]) == [7]


def test_a_lone_request_on_a_free_model_is_predicted_without_waiting_for_more():
    started = time.perf_counter()
    assert _batcher_calls([0]) == [1]
    assert time.perf_counter() - started < 1.0


class _RecordingExecutor:
    """A one-thread executor that records, per ``submit``, the rows of the batch handed to the predict thread."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1)
        self.submitted: list[int] = []

    def submit(self, fn, batch):
        self.submitted.append(len(batch))
        return self.pool.submit(fn, batch)


def _counting_batcher():
    from pyml_jupyter.serving.batching import Arrivals, Batcher

    def predict(frame):
        return frame.rename(columns={"x": "y"})

    arrivals, executor = Arrivals(), _RecordingExecutor()
    return Batcher(predict, predict, executor=executor, batching=True, arrivals=arrivals), arrivals, executor


def test_a_lone_request_counted_by_the_server_starts_its_predict_in_its_own_step():
    async def main():
        batcher, arrivals, executor = _counting_batcher()
        answer = asyncio.ensure_future(batcher.predict(pd.DataFrame({"x": [5]}), 10, arrival=arrivals.expect()))
        await asyncio.sleep(0)  # one turn: the request's task runs up to awaiting its answer, and no further
        assert executor.submitted == [1], "the predict should start without waiting a turn of the event loop"
        assert int((await answer)["y"].iloc[0]) == 5
        assert arrivals.count == 0

    asyncio.run(main())


def test_requests_the_server_read_together_share_one_predict_on_a_free_model():
    async def main():
        batcher, arrivals, executor = _counting_batcher()
        # as the HTTP protocol does: every request read in one go is counted before the first task runs
        counted = [arrivals.expect() for _ in range(6)]
        outputs = await asyncio.gather(*(batcher.predict(pd.DataFrame({"x": [i]}), 10, arrival=arrival)
                                         for i, arrival in enumerate(counted)))
        assert executor.submitted == [6]
        assert [int(out["y"].iloc[0]) for out in outputs] == list(range(6))

    asyncio.run(main())


def test_a_counted_request_answered_without_queueing_does_not_hold_its_batchmates():
    async def main():
        batcher, arrivals, executor = _counting_batcher()
        refused, first, second = arrivals.expect(), arrivals.expect(), arrivals.expect()
        answers = [asyncio.ensure_future(batcher.predict(pd.DataFrame({"x": [i]}), 10, arrival=arrival))
                   for i, arrival in enumerate((first, second))]
        await asyncio.sleep(0)
        assert executor.submitted == [], "a third request is on its way: the batch waits for it"
        refused.leave()  # e.g. it got its 4xx
        outputs = await asyncio.gather(*answers)
        assert executor.submitted == [2] and [int(out["y"].iloc[0]) for out in outputs] == [0, 1]

    asyncio.run(main())


def test_a_counted_request_that_never_queues_holds_a_batch_only_a_few_loop_turns():
    async def main():
        from pyml_jupyter.serving.batching import SETTLE_TURNS

        batcher, arrivals, executor = _counting_batcher()
        arrivals.expect()  # its body never comes
        answer = asyncio.ensure_future(batcher.predict(pd.DataFrame({"x": [1]}), 10, arrival=arrivals.expect()))
        for _ in range(SETTLE_TURNS + 2):
            await asyncio.sleep(0)
        assert executor.submitted == [1]
        assert int((await answer)["y"].iloc[0]) == 1

    asyncio.run(main())


def _gated_batcher():
    """A counting batcher whose predicts wait for ``gate`` (requests queue meanwhile); ``log`` records each predict
    started (``"predict N"``, N requests) on the event loop, in order with what the test appends."""
    gate, log = threading.Event(), []

    def predict(frame):
        gate.wait(10)
        return frame.rename(columns={"x": "y"})

    batcher, arrivals, executor = _counting_batcher()
    batcher.predict_batch = batcher.predict_one = predict
    submit = executor.submit

    def logged_submit(fn, batch):
        log.append(f"predict {len(batch)}")
        return submit(fn, batch)

    executor.submit = logged_submit
    return batcher, arrivals, executor, gate, log


def test_requests_queued_while_the_model_predicts_start_the_next_predict_before_that_batch_is_answered():
    async def main():
        batcher, arrivals, executor, gate, log = _gated_batcher()

        async def client(x: int):
            out = await batcher.predict(pd.DataFrame({"x": [x]}), 10, arrival=arrivals.expect())
            log.append(f"answer {int(out['y'].iloc[0])}")

        first = asyncio.ensure_future(client(0))
        await asyncio.sleep(0)
        queued = [asyncio.ensure_future(client(x)) for x in (1, 2)]
        await asyncio.sleep(0)
        straggler = arrivals.expect()  # a request read but not queued yet: the model does not idle for it
        gate.set()
        await asyncio.gather(first, *queued)
        straggler.leave()
        assert log == ["predict 1", "predict 2", "answer 0", "answer 1", "answer 2"]

    asyncio.run(main())


def test_fewer_requests_queued_than_a_batch_answers_wait_for_those_its_answers_bring_back():
    # Closed-loop clients, as a load generator at c=16: each sends its next request once it has its answer. A
    # predict of the one request that queued meanwhile would split the clients into two groups taking turns.
    async def main():
        batcher, arrivals, executor, gate, log = _gated_batcher()

        async def client(x: int, arrival, again: bool):
            await batcher.predict(pd.DataFrame({"x": [x]}), 10, arrival=arrival)
            if again:
                out = await batcher.predict(pd.DataFrame({"x": [x + 10]}), 10, arrival=arrivals.expect())
                assert int(out["y"].iloc[0]) == x + 10

        counted = [arrivals.expect() for _ in range(4)]  # read together: one batch of 4
        clients = [asyncio.ensure_future(client(x, arrival, True)) for x, arrival in enumerate(counted)]
        await asyncio.sleep(0)
        late = asyncio.ensure_future(client(4, arrivals.expect(), False))
        await asyncio.sleep(0)
        assert executor.submitted == [4]
        gate.set()
        await asyncio.gather(*clients, late)
        assert executor.submitted == [4, 5]

    asyncio.run(main())


def test_the_http_protocol_counts_a_post_until_its_app_is_done_even_when_the_app_raises():
    from pyml_jupyter.serving.batching import ARRIVAL_KEY, ARRIVALS
    from pyml_jupyter.serving.server import _counted

    async def failing_app(scope, receive, send):
        assert ARRIVALS.count == before + 1 and scope[ARRIVAL_KEY] is not None
        raise RuntimeError("refused")

    async def main():
        scope = {"method": "POST"}
        app = _counted(failing_app, scope)
        assert ARRIVALS.count == before + 1  # counted as the request's head is parsed, before its task runs
        with pytest.raises(RuntimeError):
            await app(scope, None, None)
        assert ARRIVALS.count == before

    before = ARRIVALS.count
    asyncio.run(main())


def test_split_gives_each_request_its_rows_with_its_own_index():
    a = pd.DataFrame({"x": [1, 2]}, index=[10, 11])
    b = pd.DataFrame({"x": [3]}, index=["k"])
    merged = merge_inputs([a, b])
    parts = split_output(merged * 10, merged, [a, b], [2, 1])
    assert list(merged.index) == [0, 1, 2]
    assert parts[0].equals(pd.DataFrame({"x": [10, 20]}, index=[10, 11]))
    assert parts[1].equals(pd.DataFrame({"x": [30]}, index=["k"]))


def test_split_refuses_an_output_that_reordered_or_dropped_rows():
    a, b = pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]})
    merged = merge_inputs([a, b])
    assert split_output(merged.iloc[::-1], merged, [a, b], [2, 1]) is None
    assert split_output(merged.iloc[:2], merged, [a, b], [2, 1]) is None
    tensors = [{"x": np.zeros((2, 3))}, {"x": np.ones((1, 3))}]
    assert split_output({"y": np.zeros(2)}, merge_inputs(tensors), tensors, [2, 1]) is None


def test_tensors_merge_along_the_first_axis_and_split_back():
    a, b = {"x": np.arange(6.0).reshape(2, 3)}, {"x": np.arange(3.0).reshape(1, 3) + 100}
    merged = merge_inputs([a, b])
    parts = split_output({"y": merged["x"] * 2}, merged, [a, b], [2, 1])
    assert merged["x"].shape == (3, 3)
    assert np.array_equal(parts[0]["y"], a["x"] * 2) and np.array_equal(parts[1]["y"], b["x"] * 2)


def test_validated_columns_of_requests_merge_into_the_frame_their_frames_would_concatenate_to():
    from pyml_jupyter.serving.schema import DataFrameSchema, FrameColumns, dataframe_from_json

    schema = DataFrameSchema.from_spec({"i": "int64", "f": "float32", "s": "string", "b": "bool", "y": "binary"})
    payloads = [{"columns": ["y", "s", "i", "b", "f", "extra"], "data": [["AAE=", f"s{n}{k}", n * 10 + k, k % 2 == 0,
                                                                          k + 0.5, None] for k in range(n)]}
                for n in (1, 3, 1, 2)]
    columns = [dataframe_from_json(p, schema, as_columns=True) for p in payloads]
    frames = [dataframe_from_json(p, schema) for p in payloads]

    assert all(isinstance(c, FrameColumns) for c in columns)
    merged = merge_inputs(columns)
    pd.testing.assert_frame_equal(merged, pd.concat(frames, ignore_index=True), check_exact=True)
    assert list(merged.columns) == ["i", "f", "s", "b", "y"] and type(merged.index) is pd.RangeIndex
    parts = split_output(merged[["i"]] * 2, merged, columns, [1, 3, 1, 2])
    for part, frame in zip(parts, frames):
        pd.testing.assert_frame_equal(part, frame[["i"]] * 2, check_exact=True)


def test_validated_columns_merge_with_nullable_columns_and_with_frames_too():
    from pyml_jupyter.serving.schema import DataFrameSchema, dataframe_from_json

    schema = DataFrameSchema.from_spec({"i": "int64?", "s": "string"})
    payloads = [[{"i": 1, "s": "a"}], [{"i": 2, "s": "b"}, {"i": 3, "s": "c"}]]
    columns = [dataframe_from_json(p, schema, as_columns=True) for p in payloads]
    frames = [dataframe_from_json(p, schema) for p in payloads]
    expected_frame = pd.concat(frames, ignore_index=True)

    merged = merge_inputs(columns)  # a nullable int column is a pandas extension array: concatenated by pandas
    pd.testing.assert_frame_equal(merged, expected_frame, check_exact=True)
    assert str(merged["i"].dtype) == "Int64"
    mixed = merge_inputs([frames[0], columns[1]])  # a CSV request's frame batched with a JSON request's columns
    pd.testing.assert_frame_equal(mixed, expected_frame, check_exact=True)


# ---------------------------------------------------------------------------------------- the batcher


def test_concurrent_requests_of_mixed_sizes_share_predict_calls_and_each_gets_exactly_its_rows(tmp_path):
    app = create_app(write_package(tmp_path / "echo"))
    sizes = [1, 100, 3, 1, 17, 1, 64, 2, 1, 1, 5, 100, 1, 9, 1, 30] * 2
    data = rows(sizes)
    answers = run(app, [invocation(d) for d in data])

    for d, answer in zip(data, answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected(d)
    assert histogram_max(app, "pyml_batch_requests") > 1


def test_csv_and_json_requests_batch_together_and_each_gets_exactly_its_rows(tmp_path):
    app = create_app(write_package(tmp_path / "echo"))
    data = rows([1, 5, 2, 1, 30, 1, 3, 1] * 3, seed=5)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                def send(i, d):
                    if i % 2:
                        csv = "x,city\n" + "".join(f"{x},{city}\n" for x, city in d)
                        return client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
                    return client.post("/invocations", json={"dataframe_records": [{"city": c, "x": x} for x, c in d]})
                return await asyncio.gather(*(send(i, d) for i, d in enumerate(data)))

    answers = asyncio.run(main())
    for d, answer in zip(data, answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected(d)
    assert histogram_max(app, "pyml_batch_requests") > 1


def test_v2_requests_are_batched_with_exact_rows_too(tmp_path):
    app = create_app(write_package(tmp_path / "echo"), model_name="echo")
    data = rows([1, 7, 2, 1, 40, 1, 1, 3] * 3, seed=1)
    requests = [("POST", "/v2/models/echo/infer", {"id": str(i), "inputs": [
        {"name": "x", "datatype": "INT64", "shape": [len(d)], "data": [r[0] for r in d]},
        {"name": "city", "datatype": "BYTES", "shape": [len(d)], "data": [r[1] for r in d]}]})
        for i, d in enumerate(data)]
    answers = run(app, requests)

    for i, (d, answer) in enumerate(zip(data, answers)):
        body = answer.json()
        assert body["id"] == str(i)
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["y"]["data"] == [r[0] * 2 for r in d] and outputs["y"]["shape"] == [len(d)]
        assert outputs["tag"]["data"] == [r[1] + "!" for r in d]
    assert histogram_max(app, "pyml_batch_requests") > 1


def test_tensor_model_requests_are_concatenated_along_the_first_axis(tmp_path):
    app = create_app(write_package(tmp_path / "tensor", tensor=True))
    inputs = [np.arange(3 * n, dtype=np.float32).reshape(n, 3) + i for i, n in enumerate([1, 4, 2, 1, 8, 1] * 3)]
    answers = run(app, [("POST", "/invocations", {"inputs": {"x": x.tolist()}}) for x in inputs])

    for x, answer in zip(inputs, answers):
        predictions = answer.json()["predictions"]
        assert predictions["y"] == (x * 2).tolist()
        assert predictions["total"] == x.sum(axis=1).tolist()
    assert histogram_max(app, "pyml_batch_requests") > 1


def test_batches_stay_within_the_row_budget_and_a_bigger_request_runs_alone(tmp_path):
    app = create_app(write_package(tmp_path / "echo"), max_batch_rows=10)
    data = rows([3] * 12 + [50] + [3] * 12, seed=2)
    answers = run(app, [invocation(d) for d in data])

    assert all(a.json()["predictions"] == expected(d) for d, a in zip(data, answers))
    buckets = dict((float(re.search(r'le="([^"]+)"', lab).group(1)), n) for lab, n in metric(app, "pyml_batch_rows_bucket"))
    assert buckets[16.0] == buckets[32.0]  # no batch over the budget of 10 rows (3 requests of 3 at most)...
    assert buckets[64.0] - buckets[32.0] == 1 == buckets[float("inf")] - buckets[32.0]  # ...but the 50-row one


def test_a_model_without_proven_batch_invariance_predicts_one_request_per_call(tmp_path):
    app = create_app(write_package(tmp_path / "echo", batch_invariant=None))
    data = rows([1, 2, 3, 1] * 4)
    answers = run(app, [invocation(d) for d in data])

    assert all(a.json()["predictions"] == expected(d) for d, a in zip(data, answers))
    assert histogram_max(app, "pyml_batch_requests") == 1


def test_max_batch_rows_zero_turns_batching_off(tmp_path):
    app = create_app(write_package(tmp_path / "echo"), max_batch_rows=0)
    run(app, [invocation(d) for d in rows([1] * 12)])
    assert histogram_max(app, "pyml_batch_requests") == 1


def test_a_bad_request_gets_its_422_and_its_batchmates_their_predictions(tmp_path):
    app = create_app(write_package(tmp_path / "echo"))
    data = rows([2] * 10)
    requests = [invocation(d) for d in data]
    requests[4] = invocation([[1, "paris"], ["not a number", "lyon"]])
    answers = run(app, requests)

    assert answers[4].status_code == 422 and answers[4].json()["problems"][0]["field"] == "x"
    assert all(a.json()["predictions"] == expected(d) for i, (d, a) in enumerate(zip(data, answers)) if i != 4)


def test_a_request_that_makes_predict_raise_fails_alone(tmp_path):
    app = create_app(write_package(tmp_path / "echo"))
    data = rows([2] * 10, seed=3)
    data[6] = [[5, "paris"], [-1, "nice"]]
    answers = run(app, [invocation(d) for d in data])

    assert answers[6].status_code == 500 and answers[6].json()["error_code"] == "PREDICT_ERROR"
    assert all(a.status_code == 200 and a.json()["predictions"] == expected(d)
               for i, (d, a) in enumerate(zip(data, answers)) if i != 6)


def test_a_model_that_reorders_rows_is_caught_and_batching_turned_off(tmp_path):
    app = create_app(write_package(tmp_path / "echo"))
    data = rows([2] * 10, seed=4)
    for d in data:
        d[0][1] = "reverse"  # the model reverses its output rows whenever it sees this city
    answers = run(app, [invocation(d) for d in data])

    # Alone, each request gets what the model answers for it alone (reversed rows), never a batchmate's rows.
    assert all(a.json()["predictions"] == expected(d)[::-1] for d, a in zip(data, answers))
    assert app.state.server.batcher.batching is False


# --------------------------------------------------------------------------------- a real slow server


def _get(port: int, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    status = connection.getresponse().status
    return status, time.perf_counter() - started


def test_health_and_metrics_answer_at_once_while_a_slow_predict_runs(tmp_path):
    package = write_package(tmp_path / "echo")
    with serving(package, "--log-level", "warning") as server:
        port, slow = server.port, {}

        def predict_slowly():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"dataframe_split": {"columns": ["x", "city"], "data": [[3, "sleep"]]}})
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            slow.update(status=response.status, body=json.loads(response.read()),
                        seconds=time.perf_counter() - started)

        thread = threading.Thread(target=predict_slowly)
        thread.start()
        time.sleep(0.5)  # the 3 s predict is running
        for path in ("/ping", "/health", "/v2/health/live", "/v2/health/ready", "/metrics"):
            status, seconds = _get(port, path)
            assert status == 200
            assert seconds < 1.0, f"{path} took {seconds:.2f} s while a predict ran"
            assert thread.is_alive(), "the slow predict should still be running"
        thread.join(timeout=30)
        assert slow["status"] == 200 and slow["body"]["predictions"] == [{"y": 6, "tag": "sleep!"}]
        assert slow["seconds"] >= 3


# ------------------------------------------------------------------------------------------ worker count


def test_the_cgroup_cpu_quota_is_read_from_v2_and_v1_files(tmp_path):
    from pyml_jupyter.serving.server import _cgroup_cpu_quota

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(v1) is None


def test_auto_workers_are_the_cpus_this_process_may_use():
    from pyml_jupyter.serving.server import available_cpus, worker_count

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    assert worker_count("auto") == available_cpus() and worker_count(3) == 3
