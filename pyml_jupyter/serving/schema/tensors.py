"""Tensor schemas: :class:`TensorSpec` (one named tensor: dtype and shape), how an array is checked and cast
to it, and :class:`TensorSchema` (the named tensors)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .base import Enforced, SchemaBase, _html
from .dtypes import TENSOR_DTYPES, _int_range_error, _integral_values, _is_number, _is_present
from .errors import (EVERY_TENSOR, RECTANGULAR, TENSOR_SHAPE, SchemaError, _Problem, _short, _spec_error,
                     problem)

__all__ = ["TensorSpec", "TensorSchema", "json_array"]


def _parse_tensor_dtype(name: str, value: Any) -> str:
    if isinstance(value, str) and value.strip() in ("string", "str"):
        return "string"
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is not None and dt.kind == "U":
        return "string"
    if dt is None or dt.name not in TENSOR_DTYPES:
        raise _spec_error(name, f"tensor '{name}' has unsupported dtype {value!r}; use one of "
                                f"{', '.join(TENSOR_DTYPES)}")
    return dt.name


def _parse_shape(name: str, shape: Any) -> tuple[int | None, ...]:
    if isinstance(shape, (int, np.integer)) or shape is None:
        shape = (shape,)
    try:
        dims = tuple(None if d is None or int(d) == -1 else int(d) for d in shape)
    except (TypeError, ValueError):
        dims = None
    if dims is None or any(d is not None and d < 0 for d in dims):
        raise _spec_error(name, f"tensor '{name}' has invalid shape {shape!r}; use a tuple of sizes "
                                f"with -1 or None for variable dimensions, e.g. (-1, 28, 28)")
    return dims


def _shape_matches(declared: tuple[int | None, ...], shape: tuple[int, ...]) -> bool:
    """Same rank, and every fixed dimension equal."""
    return len(declared) == len(shape) and all(d is None or d == a for d, a in zip(declared, shape))


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: numpy dtype name (or ``"string"``) and shape, ``None`` for variable dimensions."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise _spec_error(str(self.name), f"tensor name {self.name!r} is not a string")
        object.__setattr__(self, "dtype", _parse_tensor_dtype(self.name, self.dtype))
        object.__setattr__(self, "shape", _parse_shape(self.name, self.shape))

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    def describe(self) -> str:
        return f"{self.dtype}, shape {_shape_text(self.shape)}"

    def shape_problem(self, shape: tuple[int, ...]) -> dict | None:
        """The problem of data of this ``shape`` (same rank, every fixed dimension equal), or None."""
        if _shape_matches(self.shape, tuple(shape)):
            return None
        return problem(self.name, f"tensor '{self.name}' has shape {_shape_text(tuple(shape))} but the schema "
                                  f"declares {_shape_text(self.shape)}", TENSOR_SHAPE)


def _string_array(arr: np.ndarray) -> bool:
    return arr.dtype.kind == "U" or (arr.dtype == object and all(isinstance(v, str) for v in arr.flat))


def _tensor_from_objects(name: str, arr: np.ndarray, dtype: str) -> np.ndarray:
    """An object array (nested JSON lists with None, Python numbers) as a numeric array."""
    flat = list(arr.flat)
    missing = [not _is_present(v) for v in flat]
    present = [v for v, m in zip(flat, missing) if not m]
    if any(missing) and not dtype.startswith("float"):
        raise _Problem(f"tensor '{name}' has missing values (None/NaN) but is declared {dtype}; "
                       f"declare a float dtype or fill them")
    if dtype == "bool" and all(isinstance(v, (bool, np.bool_)) for v in present):
        return arr.astype(bool)
    if not all(_is_number(v) for v in present):
        bad = next(v for v in present if not _is_number(v))
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds {type(bad).__name__} values such "
                       f"as {_short(bad)}; send numbers")
    if all(isinstance(v, (int, np.integer)) for v in present) and not any(missing):
        ints = [int(v) for v in flat]
        lo, hi = (min(ints), max(ints)) if ints else (0, 0)
        kind = np.int64 if lo >= np.iinfo(np.int64).min and hi <= np.iinfo(np.int64).max else np.uint64
        if lo < 0 and kind is np.uint64:
            raise _Problem(f"tensor '{name}' has integers too large for any integer dtype")
        return np.array(ints, dtype=kind).reshape(arr.shape)
    return np.array([float(v) if not m else np.nan for v, m in zip(flat, missing)],
                    dtype=np.float64).reshape(arr.shape)


def _bools_among(values: list, arr: np.ndarray) -> bool:
    """Whether nested lists that numpy read as the numeric ``arr`` held bools (numpy reads True as 1 and False
    as 0, so only the values equal to 0 or 1 are looked at, each in place when they are few)."""
    candidates = np.flatnonzero((arr == 0) | (arr == 1))
    if not len(candidates):
        return False
    if arr.ndim == 1:
        return any(type(values[i]) in (bool, np.bool_) for i in candidates.tolist())
    if len(candidates) * arr.ndim > arr.size:
        flat: Any = values
        for _ in range(arr.ndim - 1):
            flat = itertools.chain.from_iterable(flat)
        return any(t in (bool, np.bool_) for t in set(map(type, flat)))
    for index in zip(*np.unravel_index(candidates, arr.shape)):
        value: Any = values
        for i in index:
            value = value[int(i)]
        if type(value) in (bool, np.bool_):
            return True
    return False


def json_array(values: Any, dtype: str) -> np.ndarray:
    """An array of nested lists (raises ValueError when they are ragged). For a tensor of numbers (``dtype``
    not bool) a list mixing bools with numbers stays an object array, so that the cast refuses the bools as it
    refuses a list of bools alone: numpy alone would read True as 1."""
    arr = np.asarray(values)
    if (isinstance(values, list) and arr.dtype.kind in "iuf" and dtype not in ("bool", "string")
            and _bools_among(values, arr)):
        return np.array(values, dtype=object)
    return arr


def _convert_tensor(spec: TensorSpec, value: Any) -> tuple[np.ndarray, str | None, list[dict]]:
    """(array as declared, cast note, problems)."""
    name = spec.name
    source = "list" if not isinstance(value, np.ndarray) else str(value.dtype)
    try:
        arr = json_array(value, spec.dtype)
    except ValueError:
        return value, None, [problem(name, f"tensor '{name}' is a ragged nested list; every row must have the "
                                           f"same length", RECTANGULAR)]
    shape_problem = spec.shape_problem(arr.shape)
    problems = [] if shape_problem is None else [shape_problem]
    try:
        out = _cast_tensor(spec, arr)
    except _Problem as found:
        return arr, None, problems + [problem(name, str(found), found.rule)]
    if problems:
        return arr, None, problems
    note = f"{name}: {source} -> {spec.dtype}" if source != out.dtype.name else None
    if spec.dtype == "string" and source in ("object",):
        note = None
    return out, note, []


def _holds(arr: np.ndarray) -> str:
    return {"U": "str", "S": "bytes", "O": "object"}.get(arr.dtype.kind, arr.dtype.name)


def _cast_tensor(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    name, dtype = spec.name, spec.dtype
    if dtype == "string":
        if arr.size and not _string_array(arr):  # no values (JSON's [] reads as float64): none of a wrong type
            raise _Problem(f"tensor '{name}' is declared string but holds {_holds(arr)} values; send strings")
        out = np.empty(arr.shape, dtype=object)
        out.flat[:] = [str(v) for v in arr.flat] if arr.size else []
        return out
    if arr.dtype == object:
        arr = _tensor_from_objects(name, arr, dtype)
    target = np.dtype(dtype)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds {_holds(arr)} values; send numbers")
    if target.kind == "b":
        if kind != "b":
            bad = ~np.isin(arr, (0, 1))
            if bad.any():
                raise _Problem(f"tensor '{name}' is declared bool but holds numbers other than 0 and 1 "
                               f"such as {_short(arr[bad].flat[0])}")
        return arr.astype(bool)
    if kind == "b":
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds bool values; send numbers (convert an "
                       f"array with .astype('{dtype}'))")
    if target.kind in "iu":
        if kind == "f":
            if np.isnan(arr).any():
                raise _Problem(f"tensor '{name}' has missing values (NaN) but is declared {dtype}; "
                               f"declare a float dtype or fill them")
            integral = _integral_values(arr)
            if not integral.all():
                raise _Problem(f"tensor '{name}' is declared {dtype} but holds non-integral values such "
                               f"as {_short(arr[~integral].flat[0])}; declare a float dtype or round them")
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0, 0)
        else:
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        error = _int_range_error(name, "tensor", target, lo, hi)
        if error:
            raise _Problem(error)
        return arr.astype(target)
    with np.errstate(over="ignore"):
        out = arr.astype(target)
    if kind == "f" and target.itemsize < arr.dtype.itemsize:
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            raise _Problem(f"tensor '{name}' has values too large for {dtype} such as "
                           f"{_short(arr[overflow].flat[0])}; declare a wider float dtype")
    return out


class TensorSchema(SchemaBase):
    """The named tensors a model takes or returns. Build it with :meth:`from_spec` (from a mapping
    ``{"image": ("float32", (-1, 28, 28))}``, whose values may also be TensorSpecs or ``{"dtype", "shape"}``
    dicts) or with :meth:`infer`."""

    kind = "tensor"
    _specs_name = "tensors"
    _spec_type = TensorSpec
    _item = "tensor"
    _title = "tensor"
    _data = "a dict of numpy arrays"
    _declaration = "a mapping of name to (dtype, shape) such as {'image': ('float32', (-1, 28, 28))}"
    tensors: tuple[TensorSpec, ...]

    # -- construction
    @classmethod
    def _spec_of(cls, name: Any, value: Any) -> TensorSpec:
        if isinstance(value, TensorSpec):
            return value
        if isinstance(value, Mapping) and "dtype" in value and "shape" in value:
            return TensorSpec(name, value["dtype"], value["shape"])
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return TensorSpec(name, value[0], value[1])
        raise _spec_error(str(name), f"tensor '{name}' must be declared as (dtype, shape), "
                                     f"e.g. ('float32', (-1, 28, 28)); got {_short(value)}")

    @classmethod
    def infer(cls, tensors: Mapping[str, Any]) -> "TensorSchema":
        """The schema of named arrays; the first dimension (the batch) is variable."""
        if not isinstance(tensors, Mapping):
            raise SchemaError([cls._not_data(tensors)])
        specs, problems = [], []
        for name, value in tensors.items():
            arr = np.asarray(value)
            if _string_array(arr):
                dtype = "string"
            elif arr.dtype.name in TENSOR_DTYPES:
                dtype = arr.dtype.name
            else:
                problems.append({"field": str(name), "error": f"tensor '{name}' has dtype {arr.dtype}, "
                                 f"which has no schema dtype; use one of {', '.join(TENSOR_DTYPES)}"})
                continue
            shape = (None, *arr.shape[1:]) if arr.ndim else ()
            specs.append(TensorSpec(str(name), dtype, shape))
        if problems:
            raise SchemaError(problems, summary="Cannot infer a schema")
        return cls(specs)

    # -- use
    def enforce(self, tensors: Any) -> Enforced:
        """New arrays with the declared dtypes, after checking shapes; raises :class:`SchemaError`.

        Lists are turned into arrays; a bare array (or list) is accepted when the schema has one tensor.
        Casts allowed: any lossless one, int -> float, float64 -> float32, integral floats -> int, 0/1 -> bool.
        """
        if not isinstance(tensors, Mapping) and len(self.tensors) == 1 and isinstance(tensors, (np.ndarray, list)):
            tensors = {self.tensors[0].name: tensors}
        if not isinstance(tensors, Mapping):
            raise SchemaError([self._not_data(tensors)])
        problems: list[dict] = []
        casts: list[str] = []
        out: dict[str, np.ndarray] = {}
        for spec in self.tensors:
            if spec.name not in tensors:
                problems.append(problem(spec.name, f"missing tensor '{spec.name}' ({spec.describe()})", EVERY_TENSOR))
                continue
            value, note, errors = _convert_tensor(spec, tensors[spec.name])
            problems.extend(errors)
            if not errors:
                out[spec.name] = value if value is not tensors[spec.name] else np.array(value, copy=True)
                if note:
                    casts.append(note)
        if problems:
            raise SchemaError(problems)
        ignored = [str(k) for k in tensors if k not in out]
        return Enforced(out, ignored, casts)

    def problems(self, tensors: Any) -> list[dict]:
        """Strict check without coercion: numpy arrays of exactly the declared dtypes and shapes, no extra
        tensors. [] means conforms."""
        if not isinstance(tensors, Mapping):
            return [self._not_data(tensors)]
        problems = []
        for spec in self.tensors:
            if spec.name not in tensors:
                problems.append({"field": spec.name, "error": f"missing tensor '{spec.name}' ({spec.describe()})"})
                continue
            arr = tensors[spec.name]
            if not isinstance(arr, np.ndarray):
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' is a "
                                 f"{type(arr).__name__}, not a numpy array"})
                continue
            ok = _string_array(arr) if spec.dtype == "string" else arr.dtype.name == spec.dtype
            if not ok:
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' has dtype {arr.dtype} "
                                 f"but the schema declares {spec.dtype}"})
            if not _shape_matches(spec.shape, arr.shape):
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' has shape "
                                 f"{_shape_text(arr.shape)} but the schema declares {_shape_text(spec.shape)}"})
        for name in tensors:
            if name not in set(self.names):
                problems.append({"field": str(name), "error": f"tensor '{name}' is not in the schema"})
        return problems

    def __repr__(self) -> str:
        return f"TensorSchema({ {t.name: (t.dtype, t.shape) for t in self.tensors} !r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{_html(t.name)}</td><td><code>{t.dtype}</code></td>"
                       f"<td><code>{_shape_text(t.shape)}</code></td></tr>" for t in self.tensors)
        return f"<table><tr><th>tensor</th><th>dtype</th><th>shape</th></tr>{rows}</table>"
