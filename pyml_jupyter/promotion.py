"""Promotion: point an MLflow registered-model alias (``champion``) at a version, behind a gate.

:func:`promote` moves the alias only when every gate passes:

1. **contract**: the version was registered with a passed contract report (its ``pyml.contract_status`` tag);
2. **parity**: its stored sample predicts the same in the notebook process as on every target
   (``api.test(target="all")``: a fresh process, the container over HTTP and gRPC, Spark). A target that cannot
   run on this machine (no Java for Spark, no ``tritonclient`` for gRPC) is *skipped*: it does not fail the gate,
   but the gate's detail and its ``skipped`` list name it with the reason. The container over HTTP is the one
   target that must run, since the image is what the alias ships. ``targets="container"`` (or ``"batch"``)
   narrows the gate to one target, for a quicker check.

With ``compare="champion"`` (an alias, a version number or a ``NAME/VERSION``) both versions also score the
candidate's stored sample, each in a fresh interpreter (never in the Jupyter server's process), and
:class:`Comparison` shows, per output column, the mean and largest difference and the share of changed labels.
A refused promotion raises :class:`PromotionRefused` (HTTP 409) naming the failed gate, and moves nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import tracking
from .comparison import is_float, is_number
from .errors import InvalidName, PymlError
from .progress import Progress

__all__ = ["Gate", "Comparison", "Promotion", "PromotionRefused", "promote", "compare_versions",
           "validate_alias", "validate_targets", "DEFAULT_ALIAS", "PARITY_TARGETS"]

DEFAULT_ALIAS = "champion"
_COMPARE_TIMEOUT = 300.0
PARITY_TARGETS = "all"
"""The targets the parity gate runs ``api.test`` on by default."""
_REQUIRED = "http"  # in an all-targets gate, the one target that may not be skipped: the image the alias ships


class PromotionRefused(PymlError):
    """A gate failed: the alias was not moved. ``details`` lists every gate with its result."""

    status = 409
    code = "promotion_refused"


def validate_alias(alias: str) -> str:
    """An alias as model references write it (``NAME@ALIAS``: letters, digits, ``_`` and ``-``), at most 63
    characters (it becomes a Docker tag and part of a container name); "latest" and "vN" are MLflow's."""
    from .names import parse_ref

    try:
        ok = isinstance(alias, str) and 0 < len(alias) <= 63 and parse_ref(f"model@{alias}").alias == alias
    except InvalidName:
        ok = False
    if not ok:
        raise InvalidName(f"{alias!r} is not a valid alias: use a letter or '_' followed by up to 62 letters, "
                          "digits, '_' or '-' (e.g. 'champion'); 'latest' and 'v<number>' are reserved by MLflow.")
    return alias


@dataclass
class Gate:
    """One condition of a promotion, and what it found."""

    name: str
    ok: bool
    detail: str
    skipped: list[dict[str, str]] = field(default_factory=list)  # targets that could not run: target, reason

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "skipped": self.skipped}


# ------------------------------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """How two versions' predictions of the same sample differ, per output column."""

    candidate: str
    other: str
    n_rows: int
    columns: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "other": self.other, "n_rows": self.n_rows, "note": self.note,
                "columns": [{k: _json(v) for k, v in c.items()} for c in self.columns]}

    def _cells(self, c: dict[str, Any]) -> list[str]:
        return [c["column"], _fmt(c.get("mean_abs_diff")), _fmt(c.get("max_abs_diff")),
                "-" if c.get("changed_share") is None else f"{c['changed_share']:.1%}", c.get("note", "")]

    def __repr__(self) -> str:
        head = f"{self.candidate} vs {self.other} on {self.n_rows} rows" + (f" ({self.note})" if self.note else "")
        rows = [["column", "mean |diff|", "max |diff|", "changed", ""]] + [self._cells(c) for c in self.columns]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join([head] + ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows])

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("output", "mean |diff|", "max |diff|", "changed labels", ""))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in self._cells(c)) + "</tr>"
                       for c in self.columns)
        note = f" <span style='color:#57606a'>({html.escape(self.note)})</span>" if self.note else ""
        return (f"<div class='pyml-comparison'><b>{html.escape(self.candidate)} vs {html.escape(self.other)}</b> on "
                f"{self.n_rows} rows{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


def _json(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _outputs(prediction: Any) -> dict[str, pd.Series]:
    """Each output of a prediction as one flat series: DataFrame columns, or the flattened tensors."""
    if isinstance(prediction, pd.DataFrame):
        return {str(c): prediction[c].reset_index(drop=True) for c in prediction.columns}
    if isinstance(prediction, dict):
        return {str(k): pd.Series(np.asarray(v).reshape(-1)) for k, v in prediction.items()}
    return {"prediction": pd.Series(np.asarray(prediction).reshape(-1))}


def column_differences(candidate: Any, other: Any) -> list[dict[str, Any]]:
    """Per output: mean and max absolute difference (numbers) and the share of changed values (labels)."""
    new, old = _outputs(candidate), _outputs(other)
    out = []
    for col in [*new, *(c for c in old if c not in new)]:
        if col not in new or col not in old:
            out.append({"column": col, "mean_abs_diff": None, "max_abs_diff": None, "changed_share": None,
                        "note": "only in the candidate" if col in new else "only in the other version"})
            continue
        a, b = new[col], old[col]
        if len(a) != len(b):
            out.append({"column": col, "mean_abs_diff": None, "max_abs_diff": None, "changed_share": None,
                        "note": f"{len(a)} values vs {len(b)}"})
            continue
        row: dict[str, Any] = {"column": col, "mean_abs_diff": None, "max_abs_diff": None, "changed_share": None,
                               "note": ""}
        if is_number(a) and is_number(b):
            with np.errstate(invalid="ignore"):
                diff = np.abs(a.to_numpy(dtype=float, na_value=np.nan) - b.to_numpy(dtype=float, na_value=np.nan))
            finite = diff[~np.isnan(diff)]
            row["mean_abs_diff"] = float(finite.mean()) if len(finite) else 0.0
            row["max_abs_diff"] = float(finite.max()) if len(finite) else 0.0
        if not (is_float(a) or is_float(b)):  # labels: integers, booleans, strings
            changed = [not (x == y or (pd.isna(x) and pd.isna(y))) for x, y in zip(a.tolist(), b.tolist())]
            row["changed_share"] = float(np.mean(changed)) if changed else 0.0
        out.append(row)
    return out


def compare_versions(candidate: str, other: str) -> Comparison:
    """Score the candidate's stored sample with both versions, each in a fresh interpreter, and compare."""
    from .checks.fresh_process import FreshProcess
    from .serving.loader import read_package

    name, version = _resolved(candidate)
    other_name, other_version = _resolved(other)
    package = tracking.download_package(name, version)
    other_package = tracking.download_package(other_name, other_version)
    sample = read_package(package).read_sample()
    runs = [FreshProcess(package, _COMPARE_TIMEOUT, sample), FreshProcess(other_package, _COMPARE_TIMEOUT, sample)]
    predictions = []
    for ref, run in zip((f"{name}/{version}", f"{other_name}/{other_version}"), runs):
        try:
            predictions.append(run.result()[0])
        except RuntimeError as exc:
            for r in runs:
                r.close()
            raise PymlError(f"{ref} could not predict {name}/{version}'s stored sample in a fresh process, so the "
                            f"versions cannot be compared: {exc}") from None
    n_rows = len(sample) if hasattr(sample, "__len__") and not isinstance(sample, dict) else \
        len(next(iter(_outputs(predictions[0]).values()), []))
    return Comparison(candidate=f"{name}/{version}", other=f"{other_name}/{other_version}", n_rows=n_rows,
                      columns=column_differences(predictions[0], predictions[1]))


# ------------------------------------------------------------------------------------------------ promotion


@dataclass
class Promotion:
    """A moved alias: which version it points to now, what it pointed to before, and the gates it passed."""

    name: str
    version: int
    alias: str
    previous: int | None
    gates: list[Gate]
    comparison: Comparison | None = None
    parity: Any = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.alias}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "previous": self.previous,
                "gates": [g.to_dict() for g in self.gates],
                "comparison": self.comparison.to_dict() if self.comparison else None,
                "parity": self.parity.to_dict() if hasattr(self.parity, "to_dict") else None}

    def summary(self) -> str:
        was = f" (was v{self.previous})" if self.previous is not None else " (new alias)"
        if self.previous == self.version:
            was = " (unchanged)"
        return f"{self.name}@{self.alias} -> v{self.version}{was}"

    def __repr__(self) -> str:
        lines = [f"Promoted {self.summary()}"]
        lines += [f"  {'✓' if g.ok else '✗'} {g.name}: {g.detail}" for g in self.gates]
        if self.comparison is not None:
            lines.append(repr(self.comparison))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        gates = "".join(f"<li><span style='color:{'#1a7f37' if g.ok else '#cf222e'}'>{'✓' if g.ok else '✗'}</span> "
                        f"<b>{html.escape(g.name)}</b>: {html.escape(g.detail)}</li>" for g in self.gates)
        compared = self.comparison._repr_html_() if self.comparison is not None else ""
        return (f"<div class='pyml-promotion'><b style='color:#1a7f37'>Promoted {html.escape(self.summary())}</b>"
                f"<ul>{gates}</ul>{compared}</div>")


def _resolved(ref: str) -> tuple[str, int]:
    from .api import _resolve

    name, version, _ = _resolve(ref)
    return name, version


def _compare_ref(name: str, compare: str | int) -> str:
    """``--compare champion`` names an alias of the same model; a number a version; ``NAME/VERSION`` itself."""
    text = str(compare).strip()
    if text.isdigit():
        return f"{name}/{text}"
    if "/" in text or "@" in text:
        return text
    return f"{name}@{validate_alias(text)}"


def _contract_gate(mv: Any) -> Gate:
    status = (mv.tags or {}).get(tracking.TAG_STATUS)
    if status == "passed":
        return Gate("contract", True, "the contract report passed at registration")
    return Gate("contract", False, f"the contract report is {status or 'missing'!s}: register a version whose "
                                   "contract check passes")


def validate_targets(targets: str) -> str:
    """The parity gate's targets: ``"all"`` (the default), ``"container"`` or ``"batch"``."""
    from .api import TEST_TARGETS

    if targets not in TEST_TARGETS:
        raise PymlError(f"targets must be one of {', '.join(TEST_TARGETS)}, not {targets!r}.")
    return targets


def _table_gate(report: Any) -> Gate:
    """The gate of an all-targets :class:`~pyml_jupyter.parity_table.ParityTable`."""
    others = [t for k, t in report.targets.items() if k != "notebook"]
    matched = [t.label for t in others if t.status == "match"]
    skipped = [{"target": t.label, "reason": t.reason} for t in others if t.status == "skipped"]
    skip_text = "; skipped (cannot run here, not counted): " + "; ".join(
        f"{s['target']}: {s['reason']}" for s in skipped) if skipped else ""
    required = report.targets.get(_REQUIRED)
    if report.ok and required is not None and required.status == "match":
        return Gate("parity", True, f"the stored sample predicts the same on: {', '.join(matched)}{skip_text}",
                    skipped)
    if report.ok:  # every target that ran matched, but the image itself did not run
        why = f" ({required.reason})" if required is not None and required.reason else ""
        return Gate("parity", False, f"the container (HTTP) did not run{why}: the image the alias ships must "
                                     f"answer the sample{skip_text}", skipped)
    return Gate("parity", False, f"{report.verdict()}: {report.reason()}{skip_text}", skipped)


def _parity_gate(ref: str, targets: str, progress: Progress) -> tuple[Gate, Any]:
    from . import api

    try:
        report = api.test(ref, target=targets, progress=progress)
    except PymlError as exc:
        return Gate("parity", False, f"the parity run could not complete: {exc.message}"), None
    if hasattr(report, "targets"):
        return _table_gate(report), report
    if report.ok:
        return Gate("parity", True, f"the stored sample predicts the same on: {targets} (only this target was "
                                    "run)"), report
    return Gate("parity", False, f"predictions differ ({targets}): {report.reason() or report.summary()}"), report


def current_alias_version(name: str, alias: str) -> int | None:
    """The version an alias points to now, or None when the model has no such alias."""
    return tracking.aliases(name).get(alias)


def promote(ref: str, alias: str = DEFAULT_ALIAS, *, compare: str | int | None = None,
            targets: str = PARITY_TARGETS, progress: Progress | None = None) -> Promotion:
    """Point ``alias`` at the version ``ref`` names, after its contract and parity gates pass (parity on
    ``targets``: every target by default).

    Raises :class:`PromotionRefused` (nothing moved) when a gate fails; ``compare`` adds a :class:`Comparison`
    with another version (``"champion"``: the version the alias names now; nothing to compare on a first
    promotion)."""
    validate_alias(alias)
    validate_targets(targets)
    from .api import _resolve

    name, version, mv = _resolve(ref)
    progress = progress or Progress(f"promote {name}/{version} to {alias}")
    previous = current_alias_version(name, alias)
    progress.set_stage("contract gate", 0.05)
    gates = [_contract_gate(mv)]
    parity = None
    if gates[0].ok:
        progress.set_stage("parity gate", 0.1)
        gate, parity = _parity_gate(f"{name}/{version}", targets, progress)
        gates.append(gate)
    failed = [g for g in gates if not g.ok]
    if failed:
        gate = failed[0]
        raise PromotionRefused(f"{name}/{version} was not promoted to {alias!r}: the {gate.name} gate failed: "
                               f"{gate.detail}. The alias still points to "
                               f"{'v' + str(previous) if previous is not None else 'no version'}.",
                               details={"gates": [g.to_dict() for g in gates]})
    comparison = None
    if compare is not None:
        progress.set_stage("comparing predictions", 0.8)
        other = _compare_ref(name, compare)
        try:
            comparison = compare_versions(f"{name}/{version}", other)
        except PymlError as exc:
            if "@" in other and current_alias_version(name, other.split("@", 1)[1]) is None:
                comparison = Comparison(f"{name}/{version}", other, 0, note=f"nothing to compare: {other} names no "
                                        "version yet")
            else:
                raise PymlError(f"{exc.message} Nothing was promoted.") from None
    progress.set_stage("moving the alias", 0.95)
    tracking.set_alias(name, alias, version)
    progress.log(f"{name}@{alias} -> v{version}")
    return Promotion(name=name, version=version, alias=alias, previous=previous, gates=gates,
                     comparison=comparison, parity=parity)
