"""DataFrame schemas: :class:`ColumnSpec` (one column) and :class:`DataFrameSchema` (the columns, in order)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Enforced, SchemaBase, _html
from .columns import _convert_column, _locate
from .dtypes import _infer_column, _parse_column_dtype
from .errors import EVERY_COLUMN, SchemaError, _Problem, _spec_error, problem
from .fast import _fast_enforce

__all__ = ["ColumnSpec", "DataFrameSchema"]


@dataclass(frozen=True)
class ColumnSpec:
    """One DataFrame column: name, canonical dtype and whether missing values are allowed.

    ``dtype`` is normalised on construction (``"str"`` -> ``"string"``, ``"int64?"`` -> nullable int64).
    """

    name: str
    dtype: str
    nullable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise _spec_error(str(self.name), f"column name {self.name!r} is not a string; "
                                              f"rename the columns with df.columns = df.columns.astype(str)")
        dtype, nullable = _parse_column_dtype(self.name, self.dtype)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "nullable", bool(self.nullable) or nullable)

    @property
    def declared(self) -> str:
        """The dtype as written in a spec: ``"int64"`` or ``"int64?"``."""
        return self.dtype + ("?" if self.nullable else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ColumnSpec":
        return cls(d["name"], d["dtype"], bool(d.get("nullable", False)))


class DataFrameSchema(SchemaBase):
    """The columns a DataFrame must have, in order. Build it with :meth:`from_spec` (from a mapping
    ``{"age": "int64", "city": "string?"}``, whose values may also be numpy/pandas dtypes, Python types or
    ColumnSpecs) or with :meth:`infer`."""

    kind = "dataframe"
    _specs_name = "columns"
    _spec_type = ColumnSpec
    _item = "column"
    _title = "DataFrame"
    _data = "a pandas DataFrame"
    _declaration = "a mapping of column name to dtype such as {'age': 'int64', 'city': 'string?'}"
    columns: tuple[ColumnSpec, ...]

    # -- construction
    @classmethod
    def _spec_of(cls, name: Any, value: Any) -> ColumnSpec:
        if isinstance(value, ColumnSpec):
            if value.name != name:
                raise _spec_error(str(name), f"column '{name}' maps to a ColumnSpec named '{value.name}'")
            return value
        return ColumnSpec(name, value)

    @classmethod
    def infer(cls, df: pd.DataFrame) -> "DataFrameSchema":
        """The schema of a DataFrame. Nullable where values are missing, and always for pandas' nullable
        dtypes (``Int64``, ``boolean``, ``Float64``)."""
        if not isinstance(df, pd.DataFrame):
            raise SchemaError([cls._not_data(df)])
        problems, columns = [], []
        for name in df.columns:
            if not isinstance(name, str):
                problems.append({"field": str(name), "error": f"column name {name!r} is not a string; "
                                 f"rename the columns with df.columns = df.columns.astype(str)"})
        if problems:
            raise SchemaError(problems, summary="Cannot infer a schema")
        for i, name in enumerate(df.columns):
            dtype, nullable, _ = _infer_column(df.iloc[:, i])
            columns.append(ColumnSpec(name, dtype, nullable))
        return cls(columns)

    # -- use
    def enforce(self, df: pd.DataFrame) -> Enforced:
        """A copy of ``df`` with exactly the schema's columns, in order, with the schema's dtypes.

        Raises :class:`SchemaError` listing every problem. Never mutates ``df``; keeps its index.
        """
        if not isinstance(df, pd.DataFrame):
            raise SchemaError([self._not_data(df)])
        fast = _fast_enforce(self, df)
        if fast is not None:
            return fast
        problems: list[dict] = []
        casts: list[str] = []
        out: dict[str, pd.Series] = {}
        for spec in self.columns:
            where = _locate(df, spec.name)
            if not where:
                problems.append(problem(spec.name, f"missing column '{spec.name}' ({spec.declared})", EVERY_COLUMN))
                continue
            if len(where) > 1:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' appears "
                                 f"{len(where)} times; drop the duplicates"})
                continue
            try:
                out[spec.name], note = _convert_column(spec, df.iloc[:, where[0]])
            except _Problem as found:
                problems.append(problem(spec.name, str(found), found.rule))
                continue
            if note:
                casts.append(note)
        if problems:
            raise SchemaError(problems)
        wanted = set(self.names)
        ignored = [str(c) for c in df.columns if not (isinstance(c, str) and c in wanted)]
        if out:
            result = pd.DataFrame(out, copy=False)
            result.index = df.index.copy()
        else:
            result = pd.DataFrame(index=df.index.copy())
        return Enforced(result, ignored, casts)

    def problems(self, df: Any) -> list[dict]:
        """Strict check without coercion (for a model's output): [] means ``df`` conforms.

        A column conforms when its values are of the declared dtype (same width; any pandas representation
        of it, e.g. ``Int64`` or pandas' string dtype) and it has no missing values unless nullable. Missing
        and extra columns are problems; column order is not. A column without values (0 rows, or all missing)
        of dtype ``object`` or ``float64`` (what pandas makes of ``[]`` and all-``None`` lists) conforms to
        any dtype.
        """
        if not isinstance(df, pd.DataFrame):
            return [self._not_data(df)]
        problems = []
        for spec in self.columns:
            where = _locate(df, spec.name)
            if len(where) != 1:
                error = (f"missing column '{spec.name}' ({spec.declared})" if not where
                         else f"column '{spec.name}' appears {len(where)} times")
                problems.append({"field": spec.name, "error": error})
                continue
            series = df.iloc[:, where[0]]
            dtype, _, missing = _infer_column(series)
            no_values = series.dtype in (object, np.float64) and bool(series.isna().all())
            if spec.dtype != "object" and dtype != spec.dtype and not no_values:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' is {dtype} "
                                 f"({series.dtype}) but the schema declares {spec.declared}"})
            elif missing and not spec.nullable:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' has missing values "
                                 f"but the schema declares {spec.dtype} (not nullable); declare it "
                                 f"'{spec.dtype}?'"})
        wanted = set(self.names)
        for c in df.columns:
            if not (isinstance(c, str) and c in wanted):
                problems.append({"field": str(c), "error": f"column '{c}' is not in the schema"})
        return problems

    def __repr__(self) -> str:
        return f"DataFrameSchema({ {c.name: c.declared for c in self.columns} !r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{_html(c.name)}</td><td><code>{c.declared}</code></td></tr>"
                       for c in self.columns)
        return f"<table><tr><th>column</th><th>dtype</th></tr>{rows}</table>"
