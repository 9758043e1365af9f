"""Finding the source of notebook functions and classes in the cells they were defined in.

``inspect.getsource`` cannot find classes defined in Jupyter/IPython cells (Python 3.11 looks for the class in
``__main__``'s file). Instead we take one of the class's own methods, read the cell it was compiled from
(``co_filename`` is the cell's name; IPython registers every cell's text in :mod:`linecache`), parse it and pick
the ``class`` statement with the right qualified name whose lines contain the method. The class object points
to its own cell, so when a cell is re-run with changes, the definition captured is the one the object came from.
Fallbacks: ``inspect.getsource``, then the notebook's input history (``In``), latest cell first.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import os
import sys
import textwrap
import types
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

__all__ = ["Source", "SourceFinder", "own_functions", "parse"]


@dataclass
class Source:
    """The text of one top-level statement, and the name it defines."""

    name: str
    text: str


def _node_start(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The statement's text (decorators included), dedented so it can stand at the top of a module."""
    start, end = _node_start(node), node.end_lineno
    chunk = [line if line.endswith("\n") else line + "\n" for line in lines[start - 1 : end]]
    # Column offsets are UTF-8 byte offsets. Cut anything after the statement on its last line ("...; x = 1").
    last = chunk[-1].encode("utf-8")
    chunk[-1] = last[: node.end_col_offset].decode("utf-8", errors="replace").rstrip() + "\n"
    first = chunk[0]
    indent = first[: len(first) - len(first.lstrip())]
    if start == node.lineno:
        prefix = first.encode("utf-8")[: node.col_offset].decode("utf-8", errors="replace")
        if prefix.strip():  # "if x: def f(): ..." — keep the statement only
            chunk[0] = " " * len(prefix) + first[len(prefix) :]
            indent = " " * len(prefix)
    if not indent:
        return "".join(chunk)
    if all(not line.strip() or line.startswith(indent) for line in chunk):
        return "".join(line[len(indent) :] if line.strip() else "\n" for line in chunk)
    # A multi-line string inside is less indented than the statement: keep the text exact under a block.
    return "if True:\n" + "".join(chunk)


def _qualified_definitions(tree: ast.AST) -> Iterator[tuple[str, ast.stmt]]:
    """Every ``def``/``class`` in ``tree`` with the ``__qualname__`` Python gives it."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.stmt]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = prefix + child.name
                yield qualname, child
                inner = ".<locals>." if not isinstance(child, ast.ClassDef) else "."
                yield from visit(child, qualname + inner)
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _find_definition(lines: list[str], qualname: str, want_class: bool, lineno: int | None) -> str | None:
    """The text of the def/class named ``qualname`` in ``lines`` (the one containing ``lineno``, or the last)."""
    tree = parse("".join(lines))
    if tree is None:
        return None
    found = None
    for name, node in _qualified_definitions(tree):
        if name != qualname or isinstance(node, ast.ClassDef) != want_class:
            continue
        if lineno is None or _node_start(node) <= lineno <= node.end_lineno:
            found = node
    return _segment(lines, found) if found is not None else None


def _find_assignment(lines: list[str], name: str, lineno: int | None) -> str | None:
    """The text of the last top-level ``name = ...`` statement (containing ``lineno`` when given)."""
    tree = parse("".join(lines))
    if tree is None:
        return None
    found = None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == name
            and (lineno is None or node.lineno <= lineno <= node.end_lineno)
        ):
            found = node
    return _segment(lines, found) if found is not None else None


def own_functions(cls: type) -> list[types.FunctionType]:
    """Functions written in the body of ``cls`` (methods, static/class methods, properties), unwrapped."""
    prefix = cls.__qualname__ + "."
    functions = []
    for value in list(vars(cls).values()):
        if isinstance(value, (staticmethod, classmethod)):
            candidates = [value.__func__]
        elif isinstance(value, property):
            candidates = [value.fget, value.fset, value.fdel]
        elif isinstance(value, functools.cached_property):
            candidates = [value.func]
        else:
            candidates = [value]
        for candidate in candidates:
            try:
                candidate = inspect.unwrap(candidate) if candidate is not None else None
            except Exception:  # a misbehaving __wrapped__
                continue
            if isinstance(candidate, types.FunctionType) and candidate.__qualname__.startswith(prefix):
                functions.append(candidate)
    return functions


def _history_cells(namespace: Mapping[str, Any]) -> list[str]:
    """The notebook's input cells, oldest first (IPython's ``In``), or the source file of a module."""
    cells = namespace.get("In", namespace.get("_ih"))
    if isinstance(cells, (list, tuple)):
        return [cell for cell in cells if isinstance(cell, str) and cell.strip()]
    filename = namespace.get("__file__")
    if isinstance(filename, str) and os.path.isfile(filename):
        return ["".join(linecache.getlines(filename))]
    return []


def _python_text(cell: str) -> str:
    """A cell's Python text, IPython syntax such as ``%magic`` transformed away."""
    if parse(cell) is None and "IPython" in sys.modules:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            return TransformerManager().transform_cell(cell)
        except Exception:  # pragma: no cover - IPython's transformer failing on odd input
            pass
    return cell


def _cell_texts(cell: str) -> list[str]:
    """The cell's Python text, then the bodies of its cell magics (``%%time`` wraps a whole cell in a string)."""
    text = _python_text(cell)
    texts = [text]
    tree = parse(text)
    for node in ast.walk(tree) if tree is not None else ():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_cell_magic"
            and len(node.args) == 3
            and isinstance(node.args[2], ast.Constant)
            and isinstance(node.args[2].value, str)
        ):
            texts.append(_python_text(node.args[2].value))
    return texts


class SourceFinder:
    """Finds the source of notebook functions and classes (see the module docstring)."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace
        self._cells: list[list[str]] | None = None

    def cells_latest_first(self) -> list[list[str]]:
        if self._cells is None:
            self._cells = [
                text.splitlines(keepends=True)
                for cell in reversed(_history_cells(self._namespace))
                for text in reversed(_cell_texts(cell))
            ]
        return self._cells

    def source(self, obj: Any, bound_name: str) -> Source | None:
        if isinstance(obj, type):
            return self._class_source(obj, bound_name)
        return self._function_source(obj, bound_name)

    def _class_source(self, cls: type, bound_name: str) -> Source | None:
        for function in own_functions(cls):
            code = function.__code__
            text = _find_definition(linecache.getlines(code.co_filename), cls.__qualname__, True, code.co_firstlineno)
            if text:
                return Source(cls.__name__, text)
        text = self._inspect(cls)
        if text:
            return Source(cls.__name__, text)
        for lines in self.cells_latest_first():
            text = _find_definition(lines, cls.__qualname__, True, None)
            if text:
                return Source(cls.__name__, text)
        return self._assignment(bound_name)

    def _function_source(self, obj: Any, bound_name: str) -> Source | None:
        try:
            function = inspect.unwrap(obj)
        except Exception:
            function = obj
        if not isinstance(function, types.FunctionType):
            return None
        code = function.__code__
        lines = linecache.getlines(code.co_filename)
        if function.__name__ == "<lambda>":
            text = _find_assignment(lines, bound_name, code.co_firstlineno)
            return Source(bound_name, text) if text else self._assignment(bound_name)
        text = _find_definition(lines, function.__qualname__, False, code.co_firstlineno) or self._inspect(obj)
        if text:
            return Source(function.__name__, text)
        for lines in self.cells_latest_first():
            text = _find_definition(lines, function.__qualname__, False, None)
            if text:
                return Source(function.__name__, text)
        return self._assignment(bound_name)

    def _assignment(self, name: str) -> Source | None:
        """``Point = namedtuple(...)``-style definitions: the latest top-level assignment to the name."""
        for lines in self.cells_latest_first():
            text = _find_assignment(lines, name, None)
            if text:
                return Source(name, text)
        return None

    @staticmethod
    def _inspect(obj: Any) -> str | None:
        try:
            text = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            return None
        return text if parse(text) is not None else None
