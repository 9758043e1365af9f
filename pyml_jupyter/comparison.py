"""When do two predicted values agree: the one rule behind the contract check and the parity reports.

Integers, booleans, strings and dates must be equal; floats may differ by ``FLOAT_ATOL + FLOAT_RTOL * |expected|``
(JSON and numeric libraries may round the last bit); a missing value matches only a missing value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FLOAT_RTOL", "FLOAT_ATOL", "is_missing", "values_equal", "compare_values", "is_float", "is_number"]

FLOAT_RTOL = 1e-9
"""The relative tolerance for floats, relative to the expected value."""
FLOAT_ATOL = 1e-12
"""The absolute tolerance for floats (for expected values near zero)."""


def is_missing(value: Any) -> bool:
    """Whether one value is missing (None, NaN, NaT, ``pd.NA``); an array-like value never is."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def values_equal(a: Any, b: Any) -> bool:
    """Two single values: both missing, or equal (arrays elementwise, of the same shape)."""
    if is_missing(a) or is_missing(b):
        return is_missing(a) and is_missing(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def is_float(series: pd.Series) -> bool:
    """Whether a column holds floats (compared within the tolerance)."""
    dtype = series.dtype
    return (isinstance(dtype, np.dtype) and dtype.kind in "fc") or str(dtype) in ("Float32", "Float64")


def is_number(series: pd.Series) -> bool:
    """Whether a column holds numbers other than booleans."""
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _floats(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series.astype(object).where(series.notna(), np.nan), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan)


def compare_values(expected: np.ndarray | pd.Series, actual: np.ndarray | pd.Series, tolerant: bool,
                   rtol: float = FLOAT_RTOL, atol: float = FLOAT_ATOL) -> tuple[np.ndarray, np.ndarray]:
    """Per-element (match, |difference|) for two aligned 1-D columns; ``tolerant`` for float columns.

    The difference is NaN where it is undefined (strings), infinite between a value and a missing value.
    """
    e = pd.Series(expected).reset_index(drop=True)
    a = pd.Series(actual).reset_index(drop=True)
    if not (tolerant or (is_number(e) and is_number(a))):
        match = np.array([values_equal(x, y) for x, y in zip(e.tolist(), a.tolist())], dtype=bool)
        return match, np.full(len(match), np.nan)  # no numeric difference between strings
    ev, av = _floats(e), _floats(a)
    both_missing = np.isnan(ev) & np.isnan(av)
    one_missing = np.isnan(ev) ^ np.isnan(av)  # also strings where numbers were expected (coerced to NaN)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(ev - av)
        if tolerant:
            match = (diff <= atol + rtol * np.abs(ev)) | (ev == av) | both_missing
        else:  # integers: exact, and float conversion could hide a difference between large integers
            exact = np.array([values_equal(x, y) for x, y in zip(e.tolist(), a.tolist())], dtype=bool)
            match = ((ev == av) | both_missing) & (exact | both_missing)
    diff = np.where(both_missing, 0.0, diff)
    diff = np.where(one_missing, np.inf, diff)
    return match & ~one_missing, diff
