"""What the two schemas share: the result of ``enforce`` and the value-object base of both schema classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Mapping, TypeVar

from .errors import _DATA, _short, _spec_error

__all__ = ["Enforced", "SchemaBase"]

_S = TypeVar("_S", bound="SchemaBase")


@dataclass
class Enforced:
    """The result of ``enforce``: the coerced data, the fields dropped, and notes on the casts made."""

    data: Any
    ignored: list[str] = field(default_factory=list)
    casts: list[str] = field(default_factory=list)


class SchemaBase:
    """An ordered tuple of uniquely named specs (columns or tensors), built from a declaration or from its
    :meth:`to_dict` form, compared and hashed by value. Subclasses say what their specs are and how one is
    declared, and add ``infer``, ``enforce`` and ``problems``."""

    kind: ClassVar[str]  # "dataframe" or "tensor": the "type" of the dict form
    _specs_name: ClassVar[str]  # the attribute holding the specs, and their key in the dict form
    _spec_type: ClassVar[type]  # the class of one spec
    _item: ClassVar[str]  # what one spec is called in messages
    _title: ClassVar[str]  # what the schema is called in messages
    _declaration: ClassVar[str]  # how a schema is declared, in messages
    _data: ClassVar[str]  # what the data must be, in messages

    def __init__(self, specs: Iterable[Any] | Mapping[str, Any]) -> None:
        if isinstance(specs, Mapping):
            specs = type(self).from_spec(specs)._specs
        specs = tuple(specs)
        for spec in specs:
            if not isinstance(spec, self._spec_type):
                raise _spec_error(str(spec), f"expected a {self._spec_type.__name__}, got {type(spec).__name__} "
                                             f"{_short(spec)}")
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise _spec_error(spec.name, f"{self._item} '{spec.name}' is declared twice")
            seen.add(spec.name)
        setattr(self, self._specs_name, specs)

    @property
    def _specs(self) -> tuple:
        return getattr(self, self._specs_name)

    # -- construction
    @classmethod
    def from_spec(cls: type[_S], spec: Any) -> _S:
        """From a schema, a mapping of name to declaration (see the class), a list of specs, or a
        :meth:`to_dict` dict."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, Mapping):
            if spec.get("type") == cls.kind and isinstance(spec.get(cls._specs_name), list):
                return cls.from_dict(spec)
            return cls([cls._spec_of(name, value) for name, value in spec.items()])
        if isinstance(spec, (list, tuple)) and all(isinstance(s, cls._spec_type) for s in spec):
            return cls(spec)
        raise _spec_error(_DATA, f"a {cls._title} schema must be {cls._declaration}, got {type(spec).__name__}")

    @classmethod
    def _spec_of(cls, name: Any, value: Any) -> Any:
        """One spec from an entry ``name: value`` of a declaration mapping."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[_S], d: Mapping[str, Any]) -> _S:
        if d.get("type", cls.kind) != cls.kind:
            raise _spec_error(_DATA, f"not a {cls._title} schema: type {d.get('type')!r}")
        return cls(cls._spec_type.from_dict(s) for s in d[cls._specs_name])

    def to_dict(self) -> dict:
        return {"type": self.kind, self._specs_name: [s.to_dict() for s in self._specs]}

    @classmethod
    def _not_data(cls, data: Any) -> dict:
        """The problem with data that is not of the schema's kind at all."""
        return {"field": _DATA, "error": f"expected {cls._data}, got {type(data).__name__}"}

    # -- value object
    @property
    def names(self) -> list[str]:
        return [s.name for s in self._specs]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and self._specs == other._specs

    def __hash__(self) -> int:
        return hash((self.kind, self._specs))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
