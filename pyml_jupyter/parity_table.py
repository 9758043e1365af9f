"""One parity table across every target: a row per input row, a column group per target, one verdict.

:func:`parity_table` compares each target's answer (:mod:`pyml_jupyter.parity_targets`) with this process's
by the rule of :mod:`pyml_jupyter.comparison` (through :func:`pyml_jupyter.parity.compare`), and returns a
:class:`ParityTable`: a value (``.ok``, ``.targets``, ``.to_dict()``) shown as HTML in a notebook and as text
in a terminal. Skipped and failed targets keep their place in the table, with the reason.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .comparison import FLOAT_ATOL, FLOAT_RTOL
from .parity import MATCH, MISMATCH, ParityReport, _fmt_cell, _fmt_diff, _json_cell, _json_float, compare
from .parity_targets import LABELS, TargetRun

__all__ = ["ParityTable", "TargetResult", "parity_table"]

_SHOW_ROWS = 20
_NOTEBOOK = "notebook"


@dataclass
class TargetResult:
    """One target's line of the verdict: ``status`` is match, mismatch, failed or skipped."""

    key: str
    status: str
    reason: str = ""
    latency: dict[str, Any] = field(default_factory=dict)
    report: ParityReport | None = None

    @property
    def label(self) -> str:
        return LABELS[self.key]

    @property
    def ok(self) -> bool:
        """Not a failure: it matched, or it could not run here (skipped)."""
        return self.status in ("match", "skipped")

    def summary(self) -> str:
        if self.report is None:
            return f"{self.status}: {self.reason}"
        r = self.report
        text = f"{r.n_rows - r.n_mismatched}/{r.n_rows} rows match"
        if r.max_abs_diff:
            text += f", largest difference {_fmt_diff(r.max_abs_diff)}"
        reason = r.reason()
        return f"{text}; {reason}" if reason else text

    def latency_text(self) -> str:
        if not self.latency:
            return "-"
        text = f"{self.latency.get('predict_ms', 0.0):.1f} ms"
        extra = []
        if "load_ms" in self.latency:
            extra.append(f"start and load {self.latency['load_ms']:.0f} ms")
        for phase, ms in (self.latency.get("server") or {}).items():
            extra.append(f"server {phase.removesuffix('_ms')} {ms:.1f} ms")
        return f"{text} ({', '.join(extra)})" if extra else text

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {"key": self.key, "label": self.label, "status": self.status, "ok": self.ok, "reason": self.reason,
                "summary": self.summary(), "latency": self.latency, "latency_text": self.latency_text(),
                "n_mismatched": r.n_mismatched if r else None,
                "max_abs_diff": _json_float(r.max_abs_diff) if r else None,
                "mismatched_columns": r.mismatched_columns if r else [], "problems": r.problems if r else []}


@dataclass
class ParityTable:
    """The same sample on every target, against this process's prediction; ``ok`` is the one verdict."""

    ref: str
    targets: dict[str, TargetResult]
    groups: list[tuple[str, list[str]]]  # (group label, its columns): inputs, notebook, then one per target
    data: list[list[Any]]
    index: list[Any]
    bad: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells that differ
    mismatched_rows: set[int] = field(default_factory=set)
    rtol: float = FLOAT_RTOL
    atol: float = FLOAT_ATOL

    @property
    def ok(self) -> bool:
        """Every target that ran matched this process, and at least one besides it ran."""
        others = [t for k, t in self.targets.items() if k != _NOTEBOOK]
        return all(t.ok for t in others) and any(t.status == "match" for t in others)

    def verdict(self) -> str:
        others = [t for k, t in self.targets.items() if k != _NOTEBOOK]
        compared = [t for t in others if t.status in ("match", "mismatch")]
        skipped = [t.label for t in others if t.status == "skipped"]
        differ = [t.label for t in others if t.status == "mismatch"]
        failed = [t.label for t in others if t.status == "failed"]
        if self.ok:
            text = f"{MATCH} {self.ref}: the same predictions on {len(compared) + 1} targets"
        elif differ or failed:
            parts = []
            if differ:
                parts.append(f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''} from the notebook")
            if failed:
                parts.append(f"{', '.join(failed)} failed")
            text = f"{MISMATCH} {self.ref}: " + "; ".join(parts)
        else:
            text = f"{MISMATCH} {self.ref}: no target besides the notebook could run"
        return text + (f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else "")

    def summary(self) -> str:
        """The verdict, in one line (as :meth:`ParityReport.summary` gives a single target's)."""
        return self.verdict()

    def reason(self) -> str:
        """Why targets differ or failed, one clause each ("" when the verdict passes)."""
        return "; ".join(f"{t.label}: {t.reason or t.status}" for k, t in self.targets.items()
                         if k != _NOTEBOOK and not t.ok)

    def latency_text(self) -> str:
        return " · ".join(f"{t.label} {t.latency_text()}" for t in self.targets.values() if t.latency)

    # ------------------------------------------------------------------------------------------- forms
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the panel's table and ``pyml test --all --json``)."""
        return {"ok": self.ok, "ref": self.ref, "verdict": self.verdict(), "latency_text": self.latency_text(),
                "rtol": self.rtol, "atol": self.atol,
                "targets": [t.to_dict() for t in self.targets.values()],
                "table": {"groups": [{"label": g, "columns": cols} for g, cols in self.groups],
                          "index": [_json_cell(i) for i in self.index],
                          "data": [[_json_cell(v) for v in row] for row in self.data],
                          "bad": sorted([r, c] for r, c in self.bad),
                          "mismatched_rows": sorted(self.mismatched_rows)}}

    def _visible(self) -> list[int]:
        return [i for i in range(len(self.data)) if i < _SHOW_ROWS or i in self.mismatched_rows]

    def __repr__(self) -> str:
        lines = [self.verdict()]
        for t in self.targets.values():
            if t.key != _NOTEBOOK:
                lines.append(f"  {t.label:<17} {t.status:<9} {t.summary() if t.report else t.reason}")
        latency = self.latency_text()
        if latency:
            lines.append(f"latency: {latency}")
        rows = self._visible()
        if rows:
            columns = pd.MultiIndex.from_tuples([(g, c) for g, cols in self.groups for c in cols])
            shown = [[_fmt_cell(v) if not c.startswith("|diff|") else _fmt_diff(v) for v, c in
                      zip(self.data[i], columns.get_level_values(1))] for i in rows]
            frame = pd.DataFrame(shown, columns=columns, index=[self.index[i] for i in rows])
            with pd.option_context("display.max_columns", 100, "display.width", 200):
                lines.append(frame.to_string())
        if len(rows) < len(self.data):
            lines.append(f"... {len(self.data) - len(rows)} more matching rows")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        out = [f"<div class='pyml-parity-table'><div style='font-weight:bold;color:{colour}'>"
               f"{html.escape(self.verdict())}</div><ul style='margin:2px 0'>"]
        for t in self.targets.values():
            if t.key == _NOTEBOOK:
                continue
            c = {"match": "#1a7f37", "skipped": "#9a6700"}.get(t.status, "#cf222e")
            detail = t.summary() if t.report else t.reason
            out.append(f"<li><b>{html.escape(t.label)}</b> <span style='color:{c}'>{html.escape(t.status)}</span>"
                       f": {html.escape(detail)}</li>")
        out.append("</ul>")
        latency = self.latency_text()
        if latency:
            out.append(f"<div style='color:#57606a'>latency: {html.escape(latency)}</div>")
        sep = "border-left:2px solid #d0d7de"
        top = "".join(f"<th colspan='{len(cols)}' style='text-align:center;{sep}'>{html.escape(g)}</th>"
                      for g, cols in self.groups)
        starts = _group_starts(self.groups)
        sub = "".join(f"<th style='text-align:left;{sep if j in starts else ''}'>{html.escape(c)}</th>"
                      for j, c in enumerate(c for _, cols in self.groups for c in cols))
        body = []
        for i in self._visible():
            row_style = " style='background:#ffebe9'" if i in self.mismatched_rows else ""
            cells = [f"<th style='text-align:left'>{html.escape(str(self.index[i]))}</th>"]
            for j, (value, name) in enumerate(zip(self.data[i], (c for _, cols in self.groups for c in cols))):
                style = [sep] if j in starts else []
                if (i, j) in self.bad:
                    style.append("color:#cf222e;font-weight:bold")
                elif name == "match":
                    style.append(f"color:{'#cf222e' if value == MISMATCH else '#1a7f37'};text-align:center")
                text = _fmt_diff(value) if name == "|diff|" else _fmt_cell(value)
                cells.append(f"<td style='{';'.join(style)}'>{html.escape(text)}</td>")
            body.append(f"<tr{row_style}>{''.join(cells)}</tr>")
        out.append(f"<table><thead><tr><th></th>{top}</tr><tr><th></th>{sub}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
        hidden = len(self.data) - len(self._visible())
        if hidden:
            out.append(f"<div style='color:#57606a'>… {hidden} more matching rows</div>")
        out.append("</div>")
        return "".join(out)


def _group_starts(groups: list[tuple[str, list[str]]]) -> set[int]:
    starts, j = set(), 0
    for _, cols in groups:
        starts.add(j)
        j += len(cols)
    return starts


# ------------------------------------------------------------------------------------------------ building


def parity_table(ref: str, sample: Any, runs: list[TargetRun], *, rtol: float = FLOAT_RTOL,
                 atol: float = FLOAT_ATOL) -> ParityTable:
    """Compare every run with the notebook's (the first of ``runs``) and lay them out in one table."""
    here = runs[0]
    base = compare(here.prediction, here.prediction, sample=sample, target="\0")  # inputs + notebook columns
    n = len(base.rows)
    names = [str(c) for c in base.rows.columns]
    input_cols = [c for c in names if not c.endswith(" (notebook)") and not c.endswith(" (\0)")
                  and c not in ("|diff|", "match")]
    notebook_cols = [c for c in names if c.endswith(" (notebook)")]
    groups: list[tuple[str, list[str]]] = []
    columns: list[list[Any]] = []
    if input_cols:
        groups.append(("input", input_cols))
        columns += [base.rows[c].tolist() for c in input_cols]
    groups.append((_NOTEBOOK, [c.removesuffix(" (notebook)") for c in notebook_cols]))
    columns += [base.rows[c].tolist() for c in notebook_cols]
    targets = {_NOTEBOOK: TargetResult(_NOTEBOOK, "match", latency=here.latency)}
    bad: set[tuple[int, int]] = set()
    mismatched_rows: set[int] = set()
    for run in runs[1:]:
        start = len(columns)
        if run.status != "ran":
            targets[run.key] = TargetResult(run.key, run.status, reason=run.reason, latency=run.latency)
            groups.append((run.label, [run.status]))
            columns.append([run.status] * n)
            continue
        report = compare(here.prediction, run.prediction, sample=sample, target=run.label, rtol=rtol, atol=atol)
        status = "match" if report.ok else "mismatch"
        targets[run.key] = TargetResult(run.key, status, reason=report.reason(), latency=run.latency, report=report)
        mine = [c for c in report.rows.columns if str(c).endswith(f" ({run.label})") or c in ("|diff|", "match")]
        groups.append((run.label, [str(c).removesuffix(f" ({run.label})") for c in mine]))
        columns += [report.rows[c].tolist()[:n] + [None] * (n - len(report.rows)) for c in mine]
        bad_cells = report.rows.attrs.get("bad_cells", {})
        for i, idx in enumerate(report.rows.index[:n]):
            for col in bad_cells.get(idx, ()):
                if col in mine:
                    bad.add((i, start + mine.index(col)))
            if report.rows["match"].iloc[i] == MISMATCH:
                mismatched_rows.add(i)
                bad.add((i, start + mine.index("match")))
    data = [[col[i] for col in columns] for i in range(n)]
    return ParityTable(ref=ref, targets=targets, groups=groups, data=data, index=list(base.rows.index), bad=bad,
                       mismatched_rows=mismatched_rows, rtol=rtol, atol=atol)
