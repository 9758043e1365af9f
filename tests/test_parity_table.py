"""The parity table across every target: how answers line up (pure), and test(ref, target="all") for real."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pandas as pd
import pytest

from pyml_jupyter import api
from pyml_jupyter.errors import ModelFailed
from pyml_jupyter.parity import MATCH, MISMATCH
from pyml_jupyter.parity_table import ParityTable, parity_table
from pyml_jupyter.parity_targets import TARGETS, TargetRun
from pyml_jupyter.serving.contract import DataFrameModel

from docker_fixtures import docker_engine, model_name, pyml_cache  # noqa: F401
from mlflow_fixtures import use_tracking_uri


@pytest.fixture
def sample() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0, 3.5], "city": ["paris", "lyon", "nice"]})


@pytest.fixture
def expected() -> pd.DataFrame:
    return pd.DataFrame({"score": [0.25, 0.5, 0.75], "label": np.array([0, 1, 1], dtype=np.int64)})


def runs_of(expected: pd.DataFrame, **answers) -> list[TargetRun]:
    """The notebook's run, then one run per target: a prediction, or ("skipped"|"failed", reason)."""
    runs = [TargetRun("notebook", prediction=expected, latency={"predict_ms": 1.5})]
    for key in TARGETS[1:]:
        answer = answers.get(key, expected.copy())
        if isinstance(answer, tuple):
            runs.append(TargetRun(key, answer[0], reason=answer[1]))
        else:
            runs.append(TargetRun(key, prediction=answer, latency={"predict_ms": 2.0}))
    return runs


# ------------------------------------------------------------------------------------------- the table


def test_every_target_agreeing_is_one_passing_verdict(expected, sample):
    table = parity_table("churn/2", sample, runs_of(expected))
    assert isinstance(table, ParityTable) and table.ok
    assert list(table.targets) == list(TARGETS)
    assert all(t.status == "match" for t in table.targets.values())
    assert table.verdict().startswith(f"{MATCH} churn/2: the same predictions on 5 targets")


def test_a_row_per_input_row_and_a_column_group_per_target(expected, sample):
    table = parity_table("churn/2", sample, runs_of(expected))
    labels = [g for g, _ in table.groups]
    assert labels == ["input", "notebook", "fresh process", "container (HTTP)", "container (gRPC)", "Spark"]
    assert dict(table.groups)["input"] == ["x", "city"]
    assert dict(table.groups)["notebook"] == ["score", "label"]
    assert dict(table.groups)["container (gRPC)"] == ["score", "label", "|diff|", "match"]
    assert len(table.data) == 3 and table.index == [0, 1, 2]
    assert table.data[1][:4] == [2.0, "lyon", 0.5, 1]


def test_a_float_beyond_1e_9_relative_is_a_mismatch_shown_in_its_row(expected, sample):
    off = expected.copy()
    off.loc[1, "score"] = 0.5 * (1 + 1e-8)
    close = expected.copy()
    close.loc[1, "score"] = 0.5 * (1 + 1e-10)
    table = parity_table("churn/2", sample, runs_of(expected, grpc=off, spark=close))
    assert not table.ok
    assert table.targets["grpc"].status == "mismatch" and table.targets["spark"].status == "match"
    assert table.mismatched_rows == {1}
    columns = [c for _, cols in table.groups for c in cols]
    start = sum(len(cols) for g, cols in table.groups[:4])  # input, notebook, fresh process, HTTP
    assert (1, start) in table.bad and table.data[1][start] == 0.5 * (1 + 1e-8)
    assert table.data[1][start + columns[start:].index("match")] == MISMATCH
    assert "container (gRPC) differs from the notebook" in table.verdict()


def test_integers_and_strings_must_be_exact(expected, sample):
    wrong = expected.copy()
    wrong.loc[0, "label"] = 1
    table = parity_table("churn/2", sample, runs_of(expected, http=wrong))
    assert table.targets["http"].status == "mismatch" and table.targets["http"].report.mismatched_columns == ["label"]


def test_targets_that_cannot_run_are_skipped_with_the_reason_never_dropped(expected, sample):
    table = parity_table("churn/2", sample, runs_of(expected, http=("skipped", "Docker engine not reachable"),
                                                    grpc=("skipped", "Docker engine not reachable"),
                                                    spark=("skipped", "no Java runtime")))
    assert table.ok  # the fresh process ran and matched; nothing failed
    assert table.targets["spark"].status == "skipped" and table.targets["spark"].reason == "no Java runtime"
    assert dict(table.groups)["Spark"] == ["skipped"]
    assert "3 skipped: container (HTTP), container (gRPC), Spark" in table.verdict()
    assert "no Java runtime" in repr(table) and "no Java runtime" in table._repr_html_()


def test_a_target_that_failed_fails_the_verdict(expected, sample):
    table = parity_table("churn/2", sample, runs_of(expected, spark=("failed", "Scoring the frame on Spark failed")))
    assert not table.ok and table.targets["spark"].status == "failed"
    assert "Spark failed" in table.verdict()
    assert table.reason() == "Spark: Scoring the frame on Spark failed" and table.summary() == table.verdict()


def test_only_skipped_targets_is_no_verdict_of_parity(expected, sample):
    skipped = {key: ("skipped", "no") for key in TARGETS[1:]}
    assert not parity_table("churn/2", sample, runs_of(expected, **skipped)).ok


def test_the_json_form_carries_targets_table_and_latency(expected, sample):
    off = expected.copy()
    off.loc[2, "score"] = np.nan
    table = parity_table("churn/2", sample, runs_of(expected, http=off))
    d = json.loads(json.dumps(table.to_dict(), allow_nan=False))
    assert d["ok"] is False and d["ref"] == "churn/2" and d["verdict"] == table.verdict()
    assert [t["key"] for t in d["targets"]] == list(TARGETS)
    http = d["targets"][2]
    assert http["status"] == "mismatch" and http["max_abs_diff"] == "inf" and http["latency"]["predict_ms"] == 2.0
    assert [g["label"] for g in d["table"]["groups"]][:2] == ["input", "notebook"]
    assert len(d["table"]["data"]) == 3 and d["table"]["mismatched_rows"] == [2]
    assert "notebook 1.5 ms" in d["latency_text"]


def test_text_and_html_show_the_verdict_a_latency_line_and_every_group(expected, sample):
    table = parity_table("churn/2", sample, runs_of(expected))
    text, page = repr(table), table._repr_html_()
    assert text.splitlines()[0] == table.verdict() and "latency: notebook 1.5 ms" in text
    for label in ("fresh process", "container (HTTP)", "container (gRPC)", "Spark"):
        assert label in text and f">{label}</th>" in page
    assert "<script" not in parity_table("<script>", sample, runs_of(expected))._repr_html_()


def test_tensor_outputs_line_up_per_example():
    e = {"probs": np.array([[0.1, 0.9], [0.8, 0.2]])}
    a = {"probs": e["probs"] + np.array([[0, 0], [0, 1e-3]])}
    runs = [TargetRun("notebook", prediction=e), TargetRun("fresh_process", prediction={"probs": e["probs"].copy()}),
            TargetRun("http", prediction=a), TargetRun("grpc", prediction=e),
            TargetRun("spark", "skipped", reason="Spark scores DataFrame models; this is a tensor model")]
    table = parity_table("img/1", {"image": np.zeros((2, 3))}, runs)
    assert not table.ok and table.mismatched_rows == {1}
    assert table.targets["fresh_process"].status == "match" and table.targets["spark"].status == "skipped"


# ------------------------------------------------------------------------------------------- for real


class Scorer(DataFrameModel):
    """A float, an integer and a string output; raises when PYML_TEST_BREAK_MODEL is set (a model's own fault)."""

    def predict(self, df):
        import os

        if os.environ.get("PYML_TEST_BREAK_MODEL"):
            raise ValueError("the model broke on purpose")
        score = df["x"] / 3.0 + 0.1
        return pd.DataFrame({"score": score, "band": (df["x"] > 2).astype("int64"),
                             "city_upper": df["city"].str.upper()}, index=df.index)


SAMPLE = pd.DataFrame({"x": [1.0, 2.5, 3.25, -4.0], "city": ["paris", "lyon", "nice", "paris"]})


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-table")
    with use_tracking_uri(f"sqlite:///{root / 'mlflow.db'}", root):
        name = model_name(f"parity-{uuid.uuid4().hex[:6]}")  # its images and containers are removed at the end
        api.register(Scorer, name, SAMPLE)
        yield name


def test_a_model_failing_on_the_sample_is_a_422_model_failed(registered, monkeypatch):
    monkeypatch.setenv("PYML_TEST_BREAK_MODEL", "1")
    with pytest.raises(ModelFailed) as info:
        api.test(registered, target="all")
    assert info.value.status == 422 and "the model broke on purpose" in info.value.message


def test_without_docker_and_java_the_container_and_spark_are_skipped(registered, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))  # no java here
    monkeypatch.delenv("JAVA_HOME", raising=False)
    table = api.test(registered, target="all")
    assert table.ok, table
    assert table.targets["fresh_process"].status == "match"
    for key in ("http", "grpc"):
        assert table.targets[key].status == "skipped" and "Docker engine not reachable" in table.targets[key].reason
    assert table.targets["spark"].status == "skipped" and "Java" in table.targets["spark"].reason
    assert table.targets["fresh_process"].latency["load_ms"] > 0


@pytest.mark.docker
def test_every_target_predicts_the_stored_sample_alike(registered, docker_engine, pyml_cache):
    from spark_fixtures import require_spark

    require_spark()
    try:
        table = api.test(registered, target="all")
        assert table.ok, table.reason()
        assert [t.status for t in table.targets.values()] == ["match"] * 5
        assert len(table.data) == len(SAMPLE)
        assert table.targets["http"].latency["server"]  # the server's own phases
        assert all(t.latency["predict_ms"] > 0 for t in table.targets.values())
        assert "PARIS" in repr(table)
    finally:
        api.stop(registered)
