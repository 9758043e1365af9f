"""Prediction parity: do the notebook and a target (the container, the Spark job) predict the same?

:func:`compare` lines up the notebook's predictions with a target's, row by row and column by column, by
the rule of :mod:`pyml_jupyter.comparison` (exact for integers, booleans, strings and dates; floats within a
tolerance relative to the notebook's value; a missing value matches only a missing value). The
:class:`ParityReport` shows the sample rows, both predictions side by side, a ✓/✗ per row and the largest
difference, with every mismatch shown and highlighted rather than summarised away.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .comparison import FLOAT_ATOL, FLOAT_RTOL, compare_values, is_float, is_number

__all__ = ["ParityReport", "compare", "MATCH", "MISMATCH"]

MATCH, MISMATCH = "✓", "✗"
_SHOW_ROWS = 20  # rows shown besides the mismatching ones, which are always shown


@dataclass
class ParityReport:
    """The outcome of :func:`compare`: ``ok`` when every row matches."""

    ok: bool
    target: str
    rows: pd.DataFrame
    max_abs_diff: float
    mismatched_columns: list[str] = field(default_factory=list)
    n_rows: int = 0
    n_mismatched: int = 0
    problems: list[str] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    rtol: float = FLOAT_RTOL
    atol: float = FLOAT_ATOL
    ref: str = ""
    differences: dict[str, str] = field(default_factory=dict)  # per mismatching output: why, in a few words

    # ------------------------------------------------------------------------------------------ summary
    def summary(self) -> str:
        mark = MATCH if self.ok else MISMATCH
        what = f"{self.ref} " if self.ref else ""
        text = (f"{mark} {what}notebook vs {self.target}: {self.n_rows - self.n_mismatched}/{self.n_rows} rows match"
                f", largest difference {_fmt_diff(self.max_abs_diff)}")
        if self.mismatched_columns:
            text += f"; mismatching: {', '.join(self.mismatched_columns)}"
        return text

    def reason(self) -> str:
        """Why the predictions differ, in one line ("" when they agree)."""
        return "; ".join([*self.problems, *self.differences.values()])

    def latency_text(self) -> str:
        parts = []
        for key, value in self.latency.items():
            if isinstance(value, Mapping):
                inner = ", ".join(f"{_label(k)} {_fmt_ms(v)}" for k, v in value.items())
                parts.append(f"{_label(key)} ({inner})")
            else:
                parts.append(f"{_label(key)} {_fmt_ms(value)}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """A JSON-ready form (for the panel and the CLI)."""
        shown = self.rows.astype(object).where(self.rows.notna(), None)
        return {
            "ok": self.ok, "target": self.target, "ref": self.ref, "n_rows": self.n_rows,
            "n_mismatched": self.n_mismatched, "max_abs_diff": _json_float(self.max_abs_diff),
            "mismatched_columns": self.mismatched_columns, "problems": self.problems,
            "latency": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.latency.items()},
            "rtol": self.rtol, "atol": self.atol,
            "rows": {"columns": [str(c) for c in shown.columns],
                     "data": [[_json_cell(v) for v in row] for row in shown.itertuples(index=False)]},
        }

    def _visible(self) -> pd.DataFrame:
        if len(self.rows) <= _SHOW_ROWS:
            return self.rows
        bad = self.rows["match"] == MISMATCH
        keep = bad | (np.arange(len(self.rows)) < _SHOW_ROWS)
        return self.rows[keep]

    def __repr__(self) -> str:
        lines = [self.summary()]
        lines += [f"  ! {p}" for p in self.problems]
        if self.latency:
            lines.append(f"latency: {self.latency_text()}")
        visible = self._visible()
        if len(visible):
            with pd.option_context("display.max_columns", 50, "display.width", 160, "display.precision", 12):
                formatters = {"|diff|": _fmt_diff} if "|diff|" in visible.columns else None
                lines.append(visible.to_string(formatters=formatters))
        if len(visible) < len(self.rows):
            lines.append(f"... {len(self.rows) - len(visible)} more matching rows")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        out = [f"<div class='pyml-parity'><div style='font-weight:bold;color:{colour}'>"
               f"{html.escape(self.summary())}</div>"]
        for p in self.problems:
            out.append(f"<div style='color:#cf222e'>{html.escape(p)}</div>")
        if self.latency:
            out.append(f"<div style='color:#57606a'>latency: {html.escape(self.latency_text())}</div>")
        visible = self._visible()
        bad_cells = self.rows.attrs.get("bad_cells", {})
        head = "".join(f"<th style='text-align:left'>{html.escape(str(c))}</th>" for c in ["", *visible.columns])
        body = []
        for idx, row in visible.iterrows():
            bad_row = row.get("match") == MISMATCH
            style = " style='background:#ffebe9'" if bad_row else ""
            cells = [f"<th style='text-align:left'>{html.escape(str(idx))}</th>"]
            for col, value in row.items():
                cell_style = ""
                if col == "|diff|":
                    value = _fmt_diff(value)
                if col in bad_cells.get(idx, ()):
                    cell_style = " style='color:#cf222e;font-weight:bold'"
                elif col == "match":
                    cell_style = f" style='color:{'#cf222e' if bad_row else '#1a7f37'};text-align:center'"
                cells.append(f"<td{cell_style}>{html.escape(_fmt_cell(value))}</td>")
            body.append(f"<tr{style}>{''.join(cells)}</tr>")
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        if len(visible) < len(self.rows):
            out.append(f"<div style='color:#57606a'>… {len(self.rows) - len(visible)} more matching rows</div>")
        out.append("</div>")
        return "".join(out)


# ----------------------------------------------------------------------------------------------- formatting


def _label(key: str) -> str:
    return key[:-3] if key.endswith("_ms") else key


def _fmt_ms(value: Any) -> str:
    try:
        return f"{float(value):.1f} ms"
    except (TypeError, ValueError):
        return str(value)


def _fmt_diff(value: float) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    if math.isnan(value) or math.isinf(value):
        return "n/a" if math.isnan(value) else "∞"
    return f"{value:.3g}"


def _fmt_cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "NaN" if value != value else repr(float(value))
    if value is None or value is pd.NA:
        return "null"
    return str(value)


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else (str(value) if math.isinf(value) else value)


def _json_cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None if math.isnan(value) else str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ----------------------------------------------------------------------------------------------- comparing


def _as_frame(value: Any) -> pd.DataFrame | None:
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame()
    return None


def _cell(value: Any) -> Any:
    """A tensor row as one readable cell."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        return np.array2string(value, threshold=8, precision=8, separator=", ")
    return value


@dataclass
class _LinedUp:
    """Both predictions as named outputs (notebook, target or None), their lengths and the rows' index."""

    outputs: dict[str, tuple[Any, Any]]
    n_expected: int
    n_actual: int
    index: pd.Index
    label: str  # how a reason names an output: "column" or "output"


def compare(expected: Any, actual: Any, *, sample: Any = None, target: str = "container", rtol: float = FLOAT_RTOL,
            atol: float = FLOAT_ATOL, latency: Mapping[str, Any] | None = None) -> ParityReport:
    """Compare the notebook's predictions (``expected``) with a target's (``actual``).

    Both are DataFrames (same columns, same number of rows; compared by position) or dicts of arrays (same
    names and shapes; compared along the first axis). ``sample`` is the input both predicted on, shown beside
    the predictions. A DataFrame ``actual`` whose ``attrs["pyml_timing"]`` holds timings (as
    :meth:`pyml_jupyter.deployments.Deployment.predict` records them) adds them to ``latency``.
    """
    problems: list[str] = []
    lat = _latency(actual, target, latency)
    if _as_frame(expected) is not None or _as_frame(actual) is not None:
        lined = _line_up_frames(expected, actual, target, problems)
    else:
        lined = _line_up_tensors(expected, actual, target, problems)
    n, n_a = lined.n_expected, lined.n_actual
    if n != n_a:
        problems.append(f"the notebook returned {n} rows but the {target} {n_a}")
    row_match = np.ones(n, dtype=bool)
    row_diff = np.full(n, np.nan)  # NaN: no numeric output to differ in
    mismatched: list[str] = []
    differences: dict[str, str] = {}
    max_diff = 0.0
    columns: dict[str, list] = {}
    bad_cells: dict[Any, set] = {}
    any_numeric = False
    for name, (e_col, a_col) in lined.outputs.items():
        e_rows = _rows(e_col)
        columns[f"{name} (notebook)"] = [_cell(v) for v in e_rows]
        if a_col is None:
            problems.append(f"the {target} did not return {name!r}")
            mismatched.append(name)
            row_match[:] = False
            columns[f"{name} ({target})"] = [None] * n
            max_diff = math.inf
            continue
        a_rows = _rows(a_col)
        numeric = _tolerant(e_col) or _numeric(e_col)
        any_numeric |= numeric
        col_match, col_diff = _compare_output(e_col, a_col, e_rows, a_rows, n, rtol, atol)
        if not col_match.all():
            mismatched.append(name)
            differences[name] = f"{lined.label} '{name}': " + _difference(col_match, col_diff, e_rows, a_rows, numeric)
        for i in np.flatnonzero(~col_match):
            bad_cells.setdefault(lined.index[i], set()).update({f"{name} (notebook)", f"{name} ({target})"})
        row_match &= col_match
        if numeric and n:
            row_diff = np.fmax(row_diff, col_diff)
            max_diff = max(max_diff, float(np.nanmax(col_diff)) if not np.isnan(col_diff).all() else 0.0)
        columns[f"{name} ({target})"] = [_cell(v) for v in a_rows][:n] + [None] * (n - len(a_rows))

    rows = _rows_frame(lined.index[:n], _sample_columns(sample, n), columns, row_diff if any_numeric else None,
                       row_match)
    rows.attrs["bad_cells"] = bad_cells
    n_bad = int((~row_match).sum()) + max(0, n_a - n)
    return ParityReport(ok=not problems and n_bad == 0, target=target, rows=rows, max_abs_diff=float(max_diff),
                        mismatched_columns=mismatched, n_rows=max(n, n_a), n_mismatched=n_bad, problems=problems,
                        latency=lat, rtol=rtol, atol=atol, differences=differences)


def _latency(actual: Any, target: str, latency: Mapping[str, Any] | None) -> dict[str, Any]:
    """``latency`` plus the timings a served prediction carries in ``attrs["pyml_timing"]``."""
    lat: dict[str, Any] = dict(latency or {})
    if isinstance(actual, pd.DataFrame) and isinstance(actual.attrs.get("pyml_timing"), Mapping):
        timing = dict(actual.attrs["pyml_timing"])
        round_trip = timing.pop("round_trip_ms", None)
        if round_trip is not None:
            lat.setdefault(f"{target}_ms", round_trip)
        if timing:
            lat["server"] = timing
    return lat


def _line_up_frames(expected: Any, actual: Any, target: str, problems: list[str]) -> _LinedUp:
    e_frame, a_frame = _as_frame(expected), _as_frame(actual)
    if e_frame is None or a_frame is None:
        problems.append(f"the notebook returned a {type(expected).__name__} but the {target} a "
                        f"{type(actual).__name__}")
        e_frame = e_frame if e_frame is not None else pd.DataFrame(index=range(0))
        a_frame = a_frame if a_frame is not None else pd.DataFrame(index=range(0))
    outputs = {str(c): (e_frame[c], a_frame[c] if c in a_frame.columns else None) for c in e_frame.columns}
    extra = [str(c) for c in a_frame.columns if c not in e_frame.columns]
    if extra:
        problems.append(f"the {target} returned columns the notebook did not: {', '.join(extra)}")
    return _LinedUp(outputs, len(e_frame), len(a_frame), e_frame.index, "column")


def _line_up_tensors(expected: Any, actual: Any, target: str, problems: list[str]) -> _LinedUp:
    e_map = dict(expected) if isinstance(expected, Mapping) else {"output": np.asarray(expected)}
    a_map = dict(actual) if isinstance(actual, Mapping) else {"output": np.asarray(actual)}
    outputs: dict[str, tuple[Any, Any]] = {}
    for name, value in e_map.items():
        e_arr = np.asarray(value)
        a_arr = np.asarray(a_map[name]) if name in a_map else None
        if a_arr is not None and e_arr.shape[1:] != a_arr.shape[1:]:
            problems.append(f"output {name!r} has shape {e_arr.shape} in the notebook but {a_arr.shape} in the "
                            f"{target}")
            a_arr = None
        outputs[str(name)] = (e_arr, a_arr)
    extra = [str(n) for n in a_map if n not in e_map]
    if extra:
        problems.append(f"the {target} returned outputs the notebook did not: {', '.join(extra)}")
    lengths = {len(np.atleast_1d(v[0])) for v in outputs.values()}
    n_e = max(lengths) if lengths else 0
    n_a = max((len(np.atleast_1d(v[1])) for v in outputs.values() if v[1] is not None), default=n_e)
    return _LinedUp(outputs, n_e, n_a, pd.RangeIndex(n_e), "output")


def _compare_output(e_col: Any, a_col: Any, e_rows: list, a_rows: list, n: int, rtol: float,
                    atol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (match, |difference|) of one output; rows the target did not return differ infinitely."""
    tolerant = _tolerant(e_col)
    col_match = np.zeros(n, dtype=bool)
    col_diff = np.full(n, np.inf)
    if e_rows and isinstance(e_rows[0], np.ndarray) and e_rows[0].ndim > 0:  # N-D tensors: per example
        for i, (ev, av) in enumerate(zip(e_rows, a_rows)):
            if np.shape(ev) != np.shape(av):
                continue
            m, d = compare_values(np.ravel(ev), np.ravel(av), tolerant, rtol, atol)
            col_match[i] = bool(m.all())
            col_diff[i] = float(d.max()) if d.size else 0.0
    else:
        e_ser, a_ser = _series(e_col), _series(a_col)
        k = min(len(e_ser), len(a_ser), n)
        col_match[:k], col_diff[:k] = compare_values(e_ser.iloc[:k], a_ser.iloc[:k], tolerant, rtol, atol)
    return col_match, col_diff


def _difference(match: np.ndarray, diff: np.ndarray, e_rows: list, a_rows: list, numeric: bool) -> str:
    """Why one output differs, in a few words."""
    bad = np.flatnonzero(~match)
    if numeric and not np.isnan(diff[bad]).all():
        return f"values differ by up to {_fmt_diff(float(np.nanmax(diff[bad])))}"
    i = int(bad[0])
    actual = a_rows[i] if i < len(a_rows) else None
    return f"{len(bad)} value(s) differ, first at row {i}: {e_rows[i]!r} vs {actual!r}"


def _rows_frame(index: pd.Index, inputs: dict[str, list], columns: dict[str, list], row_diff: np.ndarray | None,
                row_match: np.ndarray) -> pd.DataFrame:
    """The rows shown: the sample's columns, both predictions per output, the difference and the mark."""
    n = len(index)
    rows = pd.DataFrame(index=index)
    for col, values in inputs.items():
        rows[col if col not in columns and col != "match" else f"input {col}"] = list(values)
    for col, values in columns.items():
        rows[col] = values[:n]
    if row_diff is not None:
        rows["|diff|"] = row_diff
    rows["match"] = np.where(row_match, MATCH, MISMATCH)
    return rows


def _numeric(values: Any) -> bool:
    if isinstance(values, pd.Series):
        return is_number(values)
    return np.asarray(values).dtype.kind in "iufc"


def _tolerant(values: Any) -> bool:
    if isinstance(values, pd.Series):
        return is_float(values)
    return np.asarray(values).dtype.kind in "fc"


def _series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series(np.atleast_1d(np.asarray(values)))


def _rows(values: Any) -> list:
    if isinstance(values, pd.Series):
        return values.tolist()
    arr = np.asarray(values)
    if arr.ndim == 0:
        return [arr.item()]
    if arr.ndim == 1:
        return arr.tolist()
    return [arr[i] for i in range(arr.shape[0])]


def _sample_columns(sample: Any, n: int) -> dict[str, list]:
    """The sample input as display columns (nothing when absent or of another length)."""
    if sample is None:
        return {}
    if isinstance(sample, pd.DataFrame):
        if len(sample) != n:
            return {}
        return {str(c): sample[c].tolist() for c in sample.columns}
    if isinstance(sample, Mapping):
        out = {}
        for name, value in sample.items():
            arr = np.asarray(value)
            if arr.ndim and arr.shape[0] == n:
                out[str(name)] = [_cell(arr[i]) if arr.ndim > 1 else arr[i].item() if isinstance(arr[i], np.generic)
                                  else arr[i] for i in range(n)]
        return out
    return {}
