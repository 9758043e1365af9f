"""parity.compare: notebook predictions against a target's, pure (no Docker)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pyml_jupyter.parity import MATCH, MISMATCH, ParityReport, compare


@pytest.fixture
def sample() -> pd.DataFrame:
    return pd.DataFrame({"x1": [0.5, -1.0, 2.0], "city": ["paris", "lyon", "nice"]})


@pytest.fixture
def expected() -> pd.DataFrame:
    return pd.DataFrame({"score": [0.25, 0.5, 0.75], "label": np.array([0, 1, 1], dtype=np.int64),
                         "segment": ["a", "b", "c"]})


def test_identical_predictions_match(expected, sample):
    report = compare(expected, expected.copy(), sample=sample)
    assert isinstance(report, ParityReport)
    assert report.ok and report.n_rows == 3 and report.n_mismatched == 0
    assert report.max_abs_diff == 0.0 and report.mismatched_columns == [] and report.problems == []
    assert list(report.rows["match"]) == [MATCH] * 3


def test_rows_show_the_sample_then_both_predictions_and_a_mark(expected, sample):
    report = compare(expected, expected.copy(), sample=sample, target="container")
    assert list(report.rows.columns) == ["x1", "city", "score (notebook)", "score (container)", "label (notebook)",
                                         "label (container)", "segment (notebook)", "segment (container)", "|diff|",
                                         "match"]
    assert list(report.rows.index) == [0, 1, 2]


def test_rows_keep_the_inputs_index(expected, sample):
    expected.index = sample.index = [10, 20, 30]
    report = compare(expected, expected.reset_index(drop=True), sample=sample)
    assert report.ok and list(report.rows.index) == [10, 20, 30]


def test_floats_match_within_tolerance(expected):
    actual = expected.copy()
    actual["score"] = actual["score"] + np.array([0.0, 1e-16, -2e-13])
    report = compare(expected, actual, rtol=1e-9, atol=1e-12)
    assert report.ok
    assert report.max_abs_diff == pytest.approx(2e-13, rel=1e-3)


def test_floats_beyond_tolerance_mismatch_and_are_shown(expected, sample):
    actual = expected.copy()
    actual.loc[1, "score"] = 0.5 + 1e-6
    report = compare(expected, actual, sample=sample)
    assert not report.ok
    assert report.mismatched_columns == ["score"] and report.n_mismatched == 1
    assert list(report.rows["match"]) == [MATCH, MISMATCH, MATCH]
    assert report.max_abs_diff == pytest.approx(1e-6, rel=1e-6)
    assert report.rows.loc[1, "score (container)"] == 0.5 + 1e-6  # the value itself, not hidden


def test_integers_must_be_exact(expected):
    actual = expected.copy()
    actual.loc[2, "label"] = 0
    report = compare(expected, actual, rtol=1.0, atol=10.0)  # tolerances apply to floats only
    assert not report.ok and report.mismatched_columns == ["label"]


def test_large_integers_are_compared_exactly():
    e = pd.DataFrame({"id": np.array([2**60], dtype=np.int64)})
    a = pd.DataFrame({"id": np.array([2**60 + 1], dtype=np.int64)})
    assert not compare(e, a).ok


def test_strings_and_bools_must_be_equal(expected):
    actual = expected.copy()
    actual.loc[0, "segment"] = "A"
    report = compare(expected, actual)
    assert not report.ok and report.mismatched_columns == ["segment"]
    flags = pd.DataFrame({"flag": [True, False]})
    assert compare(flags, flags.copy()).ok
    assert not compare(flags, pd.DataFrame({"flag": [True, True]})).ok


def test_missing_matches_only_missing():
    e = pd.DataFrame({"score": [np.nan, 1.0], "name": [None, "x"]})
    assert compare(e, e.copy()).ok
    report = compare(e, pd.DataFrame({"score": [0.0, 1.0], "name": [None, "x"]}))
    assert not report.ok and report.max_abs_diff == float("inf")
    assert not compare(e, pd.DataFrame({"score": [np.nan, 1.0], "name": ["", "x"]})).ok


def test_nullable_dtypes_compare_by_value():
    e = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "s": pd.array(["a", None, "c"], dtype="string")})
    a = pd.DataFrame({"n": [1.0, np.nan, 3.0], "s": ["a", None, "c"]})
    assert compare(e, a).ok


def test_a_missing_column_or_row_fails_with_a_problem(expected):
    report = compare(expected, expected.drop(columns=["segment"]))
    assert not report.ok and any("segment" in p for p in report.problems)
    report = compare(expected, expected.iloc[:2])
    assert not report.ok and any("3 rows" in p for p in report.problems)
    assert report.rows["match"].iloc[2] == MISMATCH


def test_an_extra_column_is_reported(expected):
    actual = expected.assign(extra=1)
    report = compare(expected, actual)
    assert not report.ok and any("extra" in p for p in report.problems)


def test_tensor_outputs_compare_per_example():
    e = {"probs": np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]]), "cls": np.array([1, 0, 0])}
    a = {"probs": e["probs"] + np.array([[0, 0], [0, 1e-3], [0, 0]]), "cls": e["cls"].copy()}
    report = compare(e, a, sample={"image": np.zeros((3, 4, 4), dtype=np.float32)})
    assert not report.ok and report.mismatched_columns == ["probs"]
    assert list(report.rows["match"]) == [MATCH, MISMATCH, MATCH]
    assert report.max_abs_diff == pytest.approx(1e-3)
    assert "image" in report.rows.columns
    assert compare(e, {k: v.copy() for k, v in e.items()}).ok


def test_tensor_shape_mismatch_is_a_problem():
    report = compare({"y": np.zeros((2, 3))}, {"y": np.zeros((2, 4))})
    assert not report.ok and any("shape" in p for p in report.problems)


def test_a_dataframe_against_tensors_is_a_problem(expected):
    report = compare(expected, {"score": np.array([0.25, 0.5, 0.75])})
    assert not report.ok and report.problems


def test_server_timing_recorded_on_the_prediction_becomes_latency(expected):
    actual = expected.copy()
    actual.attrs["pyml_timing"] = {"round_trip_ms": 4.2, "parse_ms": 0.1, "predict_ms": 1.5}
    report = compare(expected, actual, target="container", latency={"notebook_ms": 1.0})
    assert report.latency == {"notebook_ms": 1.0, "container_ms": 4.2,
                              "server": {"parse_ms": 0.1, "predict_ms": 1.5}}
    assert "container 4.2 ms" in report.latency_text() and "predict 1.5 ms" in report.latency_text()


def test_html_shows_every_mismatch_highlighted(expected, sample):
    big_e = pd.concat([expected] * 20, ignore_index=True)
    big_a = big_e.copy()
    big_a.loc[57, "score"] = 9.0
    report = compare(big_e, big_a)
    page = report._repr_html_()
    assert "✗" in page and "#ffebe9" in page  # the mismatching row is highlighted
    assert "<th style='text-align:left'>57</th>" in page  # shown although beyond the first rows
    assert "9.0" in page and "1/60" not in page and "59/60 rows match" in page
    assert "more matching rows" in page


def test_plain_text_repr_reads_in_a_terminal(expected, sample):
    actual = expected.copy()
    actual.loc[0, "label"] = 1
    text = repr(compare(expected, actual, sample=sample, latency={"notebook_ms": 2.0}))
    first = text.splitlines()[0]
    assert first.startswith("✗ notebook vs container: 2/3 rows match") and "label" in first
    assert "latency: notebook 2.0 ms" in text and "paris" in text


def test_report_is_json_ready(expected, sample):
    actual = expected.copy()
    actual.loc[0, "score"] = np.nan
    data = json.loads(json.dumps(compare(expected, actual, sample=sample).to_dict()))
    assert data["ok"] is False and data["max_abs_diff"] == "inf" and data["rows"]["columns"][0] == "x1"


def test_reason_names_the_mismatching_column_and_the_difference(expected):
    actual = expected.copy()
    actual.loc[2, "score"] += 1e-3

    assert compare(expected, actual).reason().startswith("column 'score': values differ by up to 0.001")


def test_reason_names_the_first_differing_string():
    report = compare(pd.DataFrame({"label": ["a", "b"]}), pd.DataFrame({"label": ["a", "c"]}))

    assert report.reason() == "column 'label': 1 value(s) differ, first at row 1: 'b' vs 'c'"


def test_reason_is_empty_when_the_predictions_agree(expected):
    assert compare(expected, expected.copy()).reason() == ""


def test_float_tolerance_is_relative_to_the_expected_value():
    expected = pd.DataFrame({"score": [1e6]})

    assert compare(expected, pd.DataFrame({"score": [1e6 * (1 + 5e-10)]})).ok
    assert not compare(expected, pd.DataFrame({"score": [1e6 * (1 + 5e-9)]})).ok


def test_arrays_held_in_cells_compare_by_value():
    expected = pd.DataFrame({"vec": [np.array([1, 2]), np.array([3, 4])]})

    assert compare(expected, pd.DataFrame({"vec": [np.array([1, 2]), np.array([3, 4])]})).ok
    assert not compare(expected, pd.DataFrame({"vec": [np.array([1, 2]), np.array([3, 5])]})).ok
