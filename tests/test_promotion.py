"""Promotion: an MLflow alias moves only behind the contract and parity gates (real MLflow store, real Docker)."""

from __future__ import annotations

import json


import numpy as np
import pandas as pd
import pytest

from docker_fixtures import docker_engine, model_name, pyml_cache  # noqa: F401
from notebook_shell import ipython  # noqa: F401
from pyml_jupyter import api, tracking
from pyml_jupyter.errors import InvalidName, PymlError
from pyml_jupyter.promotion import Comparison, PromotionRefused, column_differences, validate_alias
from pyml_jupyter.serving.contract import DataFrameModel

pytestmark = pytest.mark.docker

QUICK = {"targets": "container"}  # tests of the gate's logic narrow it; the first test runs every target
SAMPLE = pd.DataFrame({"x": [0.5, 1.0, 2.0, 3.5]})


class ScoreV1(DataFrameModel):
    """score = x / 4, label = score > 0.5."""

    def predict(self, df):
        score = df["x"] / 4.0
        return pd.DataFrame({"score": score, "label": (score > 0.5).astype(np.int64)}, index=df.index)


class ScoreV2(DataFrameModel):
    """score = x / 4 + 0.1: one of four labels flips on the sample."""

    def predict(self, df):
        score = df["x"] / 4.0 + 0.1
        return pd.DataFrame({"score": score, "label": (score > 0.5).astype(np.int64)}, index=df.index)


class KnowsItsContainer(DataFrameModel):
    """Predicts differently where PYML_MODEL_NAME is set (in its container): a real parity failure."""

    def predict(self, df):
        import os

        shift = 1.0 if "PYML_MODEL_NAME" in os.environ else 0.0
        return pd.DataFrame({"score": df["x"] + shift}, index=df.index)


@pytest.fixture(scope="module")
def store(tmp_path_factory, docker_engine, pyml_cache):  # noqa: F811
    """A sqlite MLflow store with v1 (ScoreV1), v2 (ScoreV2) of one model and a model failing parity."""
    root = tmp_path_factory.mktemp("promotion")
    name, odd = model_name("promo"), model_name("odd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        api.register(ScoreV1, name, SAMPLE)
        api.register(ScoreV2, name, SAMPLE)
        api.register(KnowsItsContainer, odd, SAMPLE)
        yield {"name": name, "odd": odd}
        for ref in (name, odd):
            try:
                api.stop(ref)
            except Exception:  # noqa: BLE001 - nothing deployed
                pass


def test_promote_points_the_alias_at_the_version_after_the_contract_and_all_targets_parity_gates(store):
    promotion = api.promote(f"{store['name']}/1", "champion")  # the default gate: every target
    assert (promotion.version, promotion.alias, promotion.previous) == (1, "champion", None)
    assert [(g.name, g.ok) for g in promotion.gates] == [("contract", True), ("parity", True)]
    assert tracking.aliases(store["name"]) == {"champion": 1}
    table = promotion.parity
    assert list(table.targets) == ["notebook", "fresh_process", "http", "grpc", "spark"]
    assert table.targets["fresh_process"].status == "match" and table.targets["http"].status == "match"
    ran = [t.label for k, t in table.targets.items() if t.status == "match" and k != "notebook"]
    assert all(label in promotion.gates[1].detail for label in ran)
    skipped = [t.label for t in table.targets.values() if t.status == "skipped"]
    assert [s["target"] for s in promotion.gates[1].skipped] == skipped  # never silently dropped
    assert "champion -> v1" in repr(promotion) and "✓ parity" in repr(promotion)
    assert "Promoted" in promotion._repr_html_()
    assert promotion.to_dict()["gates"][1]["ok"] is True
    assert promotion.to_dict()["parity"]["targets"][2]["key"] == "http"


def _runs(http: str = "ran", spark: str = "ran"):
    from pyml_jupyter.parity_targets import TargetRun

    out = pd.DataFrame({"score": SAMPLE["x"] / 4.0})

    def run(key, status):
        return TargetRun(key, status, prediction=out.copy() if status == "ran" else None,
                         reason="" if status == "ran" else f"{key} cannot run here")
    return [run("notebook", "ran"), run("fresh_process", "ran"), run("http", http), run("grpc", "skipped"),
            run("spark", spark)]


def test_a_skipped_target_passes_the_gate_but_is_named_with_its_reason():
    from pyml_jupyter.parity_table import parity_table
    from pyml_jupyter.promotion import _table_gate

    gate = _table_gate(parity_table("m/1", SAMPLE, _runs(spark="skipped")))
    assert gate.ok
    assert [s["target"] for s in gate.skipped] == ["container (gRPC)", "Spark"]
    assert "skipped" in gate.detail and "spark cannot run here" in gate.detail
    assert gate.to_dict()["skipped"][1] == {"target": "Spark", "reason": "spark cannot run here"}


def test_the_gate_fails_when_the_container_itself_could_not_run():
    from pyml_jupyter.parity_table import parity_table
    from pyml_jupyter.promotion import _table_gate

    gate = _table_gate(parity_table("m/1", SAMPLE, _runs(http="skipped")))
    assert not gate.ok and "container (HTTP) did not run" in gate.detail and "http cannot run here" in gate.detail


def test_the_gate_targets_are_checked_before_anything_runs(store):
    with pytest.raises(PymlError, match="targets must be one of all, container, batch"):
        api.promote(f"{store['name']}/1", "champion", targets="everywhere")


def test_compare_champion_shows_mean_max_difference_and_changed_labels(store):
    api.promote(f"{store['name']}/1", "champion", **QUICK)
    promotion = api.promote(f"{store['name']}/2", "champion", compare="champion", **QUICK)
    assert promotion.previous == 1 and tracking.aliases(store["name"])["champion"] == 2
    comparison = promotion.comparison
    assert (comparison.candidate, comparison.other, comparison.n_rows) == (f"{store['name']}/2", f"{store['name']}/1", 4)
    by_column = {c["column"]: c for c in comparison.columns}
    assert by_column["score"]["mean_abs_diff"] == pytest.approx(0.1)
    assert by_column["score"]["max_abs_diff"] == pytest.approx(0.1)
    assert by_column["score"]["changed_share"] is None  # floats have differences, not changed labels
    assert by_column["label"]["changed_share"] == pytest.approx(0.25)  # x=2.0: 0.5 -> 0.6 flips the label
    assert "25.0%" in repr(comparison) and "changed labels" in comparison._repr_html_()


def test_compare_with_an_alias_naming_no_version_yet_says_so(store):
    promotion = api.promote(f"{store['name']}/1", "first", compare="first", **QUICK)
    assert promotion.previous is None and promotion.comparison.columns == []
    assert "nothing to compare" in promotion.comparison.note


def test_an_alias_resolves_wherever_a_ref_is_accepted(store):
    api.promote(f"{store['name']}/2", "champion", **QUICK)
    assert api.package_path(f"{store['name']}@champion") == api.package_path(f"{store['name']}/2")
    assert api.promote(f"{store['name']}@champion", "also", **QUICK).version == 2


def test_list_models_shows_the_aliases_of_each_version(store):
    api.promote(f"{store['name']}/2", "champion", **QUICK)
    api.promote(f"{store['name']}/1", "baseline", **QUICK)
    (model,) = [m for m in api.list_models() if m.name == store["name"]]
    aliases = {v["version"]: v["aliases"] for v in model.versions}
    assert "champion" in aliases[2] and "champion" not in aliases[1] and "baseline" in aliases[1]


def test_a_failed_parity_gate_refuses_and_moves_nothing(store):
    with pytest.raises(PromotionRefused) as refused:
        api.promote(f"{store['odd']}/1", "champion", **QUICK)
    assert refused.value.status == 409
    assert "parity gate failed" in refused.value.message and "still points to no version" in refused.value.message
    gates = {g["name"]: g["ok"] for g in refused.value.details["gates"]}
    assert gates == {"contract": True, "parity": False}
    assert tracking.aliases(store["odd"]) == {}


def test_a_failed_contract_gate_refuses_before_any_parity_run(store):
    api.promote(f"{store['name']}/2", "champion", **QUICK)
    tracking.set_version_tags(store["name"], 1, {tracking.TAG_STATUS: "failed"})
    try:
        with pytest.raises(PromotionRefused) as refused:
            api.promote(f"{store['name']}/1", "champion", **QUICK)
    finally:
        tracking.set_version_tags(store["name"], 1, {tracking.TAG_STATUS: "passed"})
    assert "contract gate failed" in refused.value.message and "still points to v2" in refused.value.message
    assert [g["name"] for g in refused.value.details["gates"]] == ["contract"]
    assert tracking.aliases(store["name"])["champion"] == 2


@pytest.mark.parametrize("alias", ["", "latest", "v3", "9lives", "has space", "a/b", "x" * 64])
def test_an_invalid_alias_is_refused_by_name(alias):
    with pytest.raises(InvalidName, match="not a valid alias"):
        validate_alias(alias)


def test_column_differences_of_tensors_and_of_outputs_only_one_version_has():
    rows = column_differences({"y": np.array([[1.0, 2.0]]), "k": np.array([1, 2])},
                              {"y": np.array([[1.5, 2.0]]), "k": np.array([1, 3]), "old": np.array([0])})
    by = {r["column"]: r for r in rows}
    assert by["y"]["max_abs_diff"] == 0.5 and by["y"]["mean_abs_diff"] == 0.25
    assert by["k"]["changed_share"] == 0.5 and by["k"]["max_abs_diff"] == 1.0
    assert by["old"]["note"] == "only in the other version"
    assert Comparison("m/2", "m/1", 1, rows).to_dict()["columns"][0]["column"] == "y"


# ------------------------------------------------------------------------------------------------ the faces


def test_the_magic_promotes_and_a_bad_alias_is_one_paragraph(store, ipython):
    from IPython.core.error import UsageError

    ipython.run_line_magic("load_ext", "pyml_jupyter")
    promotion = ipython.run_line_magic("pyml_promote", f"{store['name']}/1 --alias magic --targets container")
    assert promotion.alias == "magic" and tracking.aliases(store["name"])["magic"] == 1
    with pytest.raises(UsageError, match="not a valid alias"):
        ipython.run_line_magic("pyml_promote", f"{store['name']}/1 --alias latest")


def test_the_cli_promotes_and_exits_2_on_a_refusal(store, capsys):
    from pyml_jupyter.cli import main

    assert main(["promote", f"{store['name']}/2", "--alias", "cli", "--targets", "container"]) == 0
    assert "cli -> v2" in capsys.readouterr().out
    assert main(["promote", f"{store['odd']}/1", "--alias", "cli", "--targets", "container"]) == 2
    assert "parity gate failed" in capsys.readouterr().err
    assert "cli" not in tracking.aliases(store["odd"])


@pytest.fixture
def jp_server_config(jp_server_config):
    return {"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True}}}


async def _post(jp_fetch, route, body):
    import json

    from tornado.httpclient import HTTPClientError

    try:
        response = await jp_fetch("pyml", route, method="POST", body=json.dumps(body))
    except HTTPClientError as e:
        response = e.response
    return response.code, json.loads(response.body)


async def _job(jp_fetch, job):
    import asyncio
    import json

    for _ in range(600):
        response = await jp_fetch("pyml", "jobs", job["id"])
        job = json.loads(response.body)
        if job["state"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job['id']} did not finish")


async def test_rest_promotion_is_a_job_that_moves_the_alias(store, jp_fetch):
    status, job = await _post(jp_fetch, "aliases", {"ref": f"{store['name']}/2", "alias": "rest", **QUICK})
    assert status == 202 and job["kind"] == "promote"
    job = await _job(jp_fetch, job)
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["version"] == 2 and job["result"]["gates"][1]["name"] == "parity"
    assert tracking.aliases(store["name"])["rest"] == 2


async def test_a_rest_refusal_is_a_failed_job_with_409_and_the_gates(store, jp_fetch):
    status, job = await _post(jp_fetch, "aliases", {"ref": f"{store['odd']}/1", "alias": "rest", **QUICK})
    job = await _job(jp_fetch, job)
    assert job["state"] == "failed" and job["error"]["error"] == "promotion_refused"
    assert [g["ok"] for g in job["error"]["details"]["gates"]] == [True, False]


@pytest.mark.parametrize("body, field", [({"ref": "m/1", "alias": "latest"}, "alias"),
                                         ({"ref": "m/1", "alias": 3}, "alias"),
                                         ({"ref": "m/1", "compare": ""}, "compare"),
                                         ({"ref": "m/1", "targets": "everywhere"}, "targets"),
                                         ({"alias": "champion"}, "ref")])
async def test_rest_bad_promotion_input_is_a_400_naming_the_field(jp_fetch, body, field):
    status, error = await _post(jp_fetch, "aliases", body)
    assert status == 400 and field in error["message"].lower()


@pytest.mark.parametrize("body, field", [({"ref": "m/1"}, "registry"),
                                         ({"ref": "m/1", "registry": "https://r.example.com"}, "registry")])
async def test_rest_bad_push_input_is_a_400_naming_the_field(jp_fetch, body, field):
    status, error = await _post(jp_fetch, "pushes", body)
    assert status == 400 and field in error["message"].lower()


# ------------------------------------------------------------------------------------ the champion's stable port


def test_moving_the_alias_and_redeploying_swaps_containers_with_no_failed_request(store, docker_engine):  # noqa: F811
    """Eight clients keep calling the stable URL (each request on a new connection) and one keeps calling on ONE
    keep-alive connection, while six processes load both cores; the swap drains the old version by its requests
    in flight (no timer, in seconds, not the 30 s bound), and not one request fails."""
    import http.client
    import re
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    from pyml_jupyter.deployments import find_deployment
    from pyml_jupyter.progress import Progress

    name = store["name"]
    api.promote(f"{name}/1", "stable", **QUICK)
    first = api.deploy(f"{name}@stable")
    body = b'{"dataframe_split": {"columns": ["x"], "data": [[2.0]]}}'
    seen: dict[str, int] = {}
    failures: list[str] = []
    lock, stop = threading.Lock(), threading.Event()

    def client():  # bounded: at most 20000 calls in all, or until the swap is done
        while not stop.is_set() and sum(seen.values()) + len(failures) < 20000:
            request = urllib.request.Request(first.url + "/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    label = str(json.loads(response.read())["predictions"][0]["label"])
                with lock:
                    seen[label] = seen.get(label, 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    failures.append(repr(exc))

    kept: dict[str, int] = {}
    sockets: set[int] = set()

    def keep_alive_client():  # one connection for every call: it must follow the route request by request
        conn = http.client.HTTPConnection("127.0.0.1", int(first.url.rsplit(":", 1)[1]), timeout=10)
        conn.connect()
        conn.auto_open = 0  # a closed connection fails instead of silently reconnecting
        while not stop.is_set() and sum(kept.values()) < 20000:
            try:
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                label = str(json.loads(response.read())["predictions"][0]["label"])
                kept[label] = kept.get(label, 0) + 1
                sockets.add(id(conn.sock))
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    failures.append(f"keep-alive: {exc!r}")
                break
        conn.close()

    burn = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
    load = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(6)]  # a loaded machine, 60 s at most
    callers = [threading.Thread(target=client) for _ in range(8)] + [threading.Thread(target=keep_alive_client)]
    progress = Progress("swap")
    try:
        for caller in callers:
            caller.start()
        time.sleep(1.0)
        api.promote(f"{name}/2", "stable", **QUICK)
        second = api.deploy(f"{name}@stable", progress=progress)
        time.sleep(1.0)
    finally:
        stop.set()
        for caller in callers:
            caller.join(timeout=60)
        for p in load:
            p.kill()
            p.wait()
    assert failures == [], f"{len(failures)} of {len(failures) + sum(seen.values())} calls failed: {failures[:3]}"
    assert second.url == first.url  # the same stable port
    assert seen.get("0", 0) > 0 and seen.get("1", 0) > 0  # v1 labels x=2.0 as 0, v2 as 1: both answered
    assert kept.get("0", 0) > 0 and kept.get("1", 0) > 0 and len(sockets) == 1  # one connection saw both
    drained = [float(m.group(1)) for line in progress.tail(200)
               if (m := re.search(r"no request in flight left after ([0-9.]+)s", line))]
    assert drained and drained[0] < 10.0  # drained by count, promptly: not the 30 s bound
    assert find_deployment(name, "1", client=docker_engine) is None  # the old version was stopped
    api.stop(f"{name}@stable")
    assert not [c for c in docker_engine.containers.list(filters={"label": "pyml.route=true"})
                if c.labels.get("pyml.model") == name.lower()]
