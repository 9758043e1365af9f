"""Walking names: the global names a definition reads, and what the values behind them are.

:mod:`symtable` tells which names each definition reads as globals (parameters, locals, comprehension variables
and attributes are not globals); the helpers here classify the values: code or data, small literal constants
(copied into ``model.py``), functions closing over local variables (which cannot be captured).
"""

from __future__ import annotations

import __future__
import ast
import inspect
import symtable
import types
from typing import Any, Mapping

from .source import own_functions, parse

__all__ = [
    "global_names", "attribute_chains", "constant_repr", "describe", "definition_globals", "module_of", "is_code",
    "compiled_with_future_annotations", "free_variables", "join_words",
]

#: Comprehensions run when the enclosing statement runs; lambdas and functions only when called.
_EAGER_SCOPES = frozenset({"listcomp", "setcomp", "dictcomp", "genexpr"})

_MAX_CONSTANT_REPR = 200


def global_names(text: str) -> tuple[set[str], set[str]]:
    """``(read when the statement runs, read at any time)``: the global names a top-level statement uses."""
    table = symtable.symtable(text, "<capture>", "exec")
    at_definition = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_referenced()}
    anytime = set(at_definition)

    def walk(scope: symtable.SymbolTable, deferred: bool) -> None:
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and (symbol.is_global() or symbol.is_declared_global()):
                anytime.add(symbol.get_name())
                if not deferred:
                    at_definition.add(symbol.get_name())
        for child in scope.get_children():
            lazy = str(child.get_type()) != "class" and child.get_name() not in _EAGER_SCOPES
            walk(child, deferred or lazy)

    for child in table.get_children():
        walk(child, str(child.get_type()) != "class" and child.get_name() not in _EAGER_SCOPES)
    return at_definition, anytime


def attribute_chains(text: str) -> dict[str, set[tuple[str, ...]]]:
    """``{"sk": {("preprocessing", "StandardScaler"), ("preprocessing",)}}`` for ``sk.preprocessing.StandardScaler``."""
    chains: dict[str, set[tuple[str, ...]]] = {}
    tree = parse(text)
    for node in ast.walk(tree) if tree is not None else ():
        parts: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if parts and isinstance(current, ast.Name):
            chains.setdefault(current.id, set()).add(tuple(reversed(parts)))
    return chains


def _is_literal(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if value is None or kind in (bool, int, float, complex, str, bytes):
        return True
    if kind in (tuple, frozenset) and depth < 4:
        return all(_is_literal(item, depth + 1) for item in value)
    return False


def constant_repr(value: Any) -> str | None:
    """``repr(value)`` when it is a small literal that reads back as itself, else ``None``."""
    if not _is_literal(value):
        return None
    text = repr(value)
    if len(text) >= _MAX_CONSTANT_REPR:
        return None
    if isinstance(value, float) and text in ("nan", "inf", "-inf"):
        text = f"float({text!r})"
    try:
        back = eval(text, {"__builtins__": {"frozenset": frozenset, "float": float}})  # noqa: S307 - our repr
    except Exception:
        return None
    return text if type(back) is type(value) and repr(back) == repr(value) else None


def describe(value: Any) -> str:
    kind = type(value)
    top = kind.__module__.split(".")[0]
    name = kind.__qualname__ if top in ("builtins", "__main__") else f"{top} {kind.__qualname__}"
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}"


def definition_globals(obj: Any, fallback: Mapping[str, Any]) -> Mapping[str, Any]:
    """The globals ``obj``'s code reads: its functions' ``__globals__``, else ``fallback``."""
    functions = own_functions(obj) if isinstance(obj, type) else [obj]
    for function in functions:
        try:
            function = inspect.unwrap(function)
        except Exception:
            continue
        if isinstance(function, types.FunctionType):
            return function.__globals__
    return fallback


def module_of(value: Any) -> str:
    """``value.__module__``, or ``""`` for objects without one (or whose attribute lookup misbehaves)."""
    try:
        module = getattr(value, "__module__", None)
    except Exception:
        return ""
    return module if isinstance(module, str) else ""


def is_code(value: Any) -> bool:
    """A class or a function (possibly wrapped by a decorator), as opposed to a data object."""
    if isinstance(value, type) or isinstance(value, types.FunctionType):
        return True
    try:
        return callable(value) and isinstance(inspect.unwrap(value), types.FunctionType)
    except Exception:  # a misbehaving __wrapped__
        return False


def compiled_with_future_annotations(obj: Any) -> bool:
    """Whether the cell defining ``obj`` had ``from __future__ import annotations``."""
    functions = own_functions(obj) if isinstance(obj, type) else [obj]
    for function in functions:
        try:
            code = getattr(inspect.unwrap(function), "__code__", None)
        except Exception:
            continue
        if code is not None and code.co_flags & __future__.annotations.compiler_flag:
            return True
    return False


def free_variables(obj: Any) -> tuple[str, ...]:
    """Variables a function closes over (``__class__``, which ``super()`` uses, does not count)."""
    try:
        function = inspect.unwrap(obj)
    except Exception:
        return ()
    code = getattr(function, "__code__", None)
    return tuple(v for v in getattr(code, "co_freevars", ()) if v != "__class__")


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
