"""Capture a model class defined in a notebook as the text of a self-contained ``model.py``.

:func:`capture_class` turns a class (a subclass of :class:`~pyml_jupyter.serving.contract.DataFrameModel` or
:class:`~pyml_jupyter.serving.contract.TensorModel`) into readable, runnable source: a short header, the import
lines it needs, the small constants it reads, the helper functions and classes it calls (transitively, in
dependency order), and the class itself. The result runs on its own in a fresh interpreter, which is what the
serving image does with it.

How it works:

* **Source.** ``inspect.getsource`` cannot find classes defined in Jupyter/IPython cells (Python 3.11 looks
  for the class in ``__main__``'s file). Instead we take one of the class's own methods, read the cell it was
  compiled from (``co_filename`` is the cell's name; IPython registers every cell's text in :mod:`linecache`),
  parse it and pick the ``class`` statement with the right qualified name whose lines contain the method.
  The class object points to its own cell, so when a cell is re-run with changes, the definition captured is
  the one the object came from. Fallbacks: ``inspect.getsource``, then the notebook's input history
  (``In``), latest cell first.
* **Names.** :mod:`symtable` tells which names each definition reads as globals (parameters, locals,
  comprehension variables and attributes are not globals). Each one is resolved against the namespace the
  definition lives in: builtins are skipped; modules and library objects become import lines (reusing the
  user's own import statement from the input history when it still binds the same object); functions and
  classes defined in the notebook become helpers, captured the same way; small literal constants are copied;
  anything else (a DataFrame, a fitted estimator...) is an error telling the user to pass it as an artifact.
"""

from __future__ import annotations

import __future__
import ast
import builtins
import functools
import inspect
import linecache
import os
import symtable
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from .errors import CaptureError
from .serving.contract import model_kind

__all__ = ["CapturedSource", "capture_class"]

#: The package whose objects the serving image provides; only its ``serving`` subpackage exists there.
_RUNTIME_PACKAGE = "pyml_jupyter"
_RUNTIME_SUBPACKAGE = "pyml_jupyter.serving"

#: Names IPython adds to ``builtins`` that a plain interpreter does not have.
_IPYTHON_BUILTINS = frozenset({"display", "get_ipython", "__IPYTHON__", "__IPYTHON__active"})

#: Comprehensions run when the enclosing statement runs; lambdas and functions only when called.
_EAGER_SCOPES = frozenset({"listcomp", "setcomp", "dictcomp", "genexpr"})

_MAX_CONSTANT_REPR = 200


@dataclass
class CapturedSource:
    """The captured ``model.py`` of a model class."""

    class_name: str
    kind: str  # "dataframe" | "tensor"
    source: str  # full text of model.py
    imports: list[str]  # the import lines emitted, in order
    helpers: list[str]  # names of captured helper functions/classes, in definition order
    modules: list[str]  # top-level non-stdlib modules the source imports (pyml_jupyter excluded)


def capture_class(
    model_class: type,
    namespace: Mapping[str, Any] | None = None,
    artifact_names: Iterable[str] = (),
) -> CapturedSource:
    """Capture ``model_class`` and everything it references as the source of a standalone ``model.py``.

    ``namespace`` is the globals the class was defined in: the IPython user namespace in a notebook
    (``get_ipython().user_ns``); by default the globals of the class's module. ``artifact_names`` are the
    names of the artifacts the model receives through its constructor. Raises :class:`CaptureError` when the
    class cannot be made self-contained, naming every offending variable at once.
    """
    if not isinstance(model_class, type):
        raise CaptureError(
            f"Expected a model class, got {_describe(model_class)}. Pass the class itself (`MyModel`), "
            "not an instance (`MyModel()`)."
        )
    kind = model_kind(model_class)
    if kind is None:
        raise CaptureError(
            f"{model_class.__name__} is not a model class: subclass DataFrameModel (a pandas DataFrame in, "
            "a DataFrame out) or TensorModel (named numpy arrays in and out): "
            "`from pyml_jupyter.serving.contract import DataFrameModel`."
        )
    if "<locals>" in model_class.__qualname__:
        raise CaptureError(
            f"{model_class.__name__} is defined inside a function ({model_class.__qualname__}); a model class "
            "must be defined at the top level of a cell so that it can be captured on its own."
        )
    if namespace is None:
        module = sys.modules.get(model_class.__module__)
        namespace = vars(module) if module is not None else {}
    capture = _Capture(model_class, namespace, artifact_names)
    return capture.run()


# --------------------------------------------------------------------------------------------------------------
# Finding source text


@dataclass
class _Source:
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


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _find_definition(lines: list[str], qualname: str, want_class: bool, lineno: int | None) -> str | None:
    """The text of the def/class named ``qualname`` in ``lines`` (the one containing ``lineno``, or the last)."""
    tree = _parse("".join(lines))
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
    tree = _parse("".join(lines))
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


def _own_functions(cls: type) -> list[types.FunctionType]:
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
    if _parse(cell) is None and "IPython" in sys.modules:
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
    tree = _parse(text)
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


class _SourceFinder:
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

    def source(self, obj: Any, bound_name: str) -> _Source | None:
        if isinstance(obj, type):
            return self._class_source(obj, bound_name)
        return self._function_source(obj, bound_name)

    def _class_source(self, cls: type, bound_name: str) -> _Source | None:
        for function in _own_functions(cls):
            code = function.__code__
            text = _find_definition(linecache.getlines(code.co_filename), cls.__qualname__, True, code.co_firstlineno)
            if text:
                return _Source(cls.__name__, text)
        text = self._inspect(cls)
        if text:
            return _Source(cls.__name__, text)
        for lines in self.cells_latest_first():
            text = _find_definition(lines, cls.__qualname__, True, None)
            if text:
                return _Source(cls.__name__, text)
        return self._assignment(bound_name)

    def _function_source(self, obj: Any, bound_name: str) -> _Source | None:
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
            return _Source(bound_name, text) if text else self._assignment(bound_name)
        text = _find_definition(lines, function.__qualname__, False, code.co_firstlineno) or self._inspect(obj)
        if text:
            return _Source(function.__name__, text)
        for lines in self.cells_latest_first():
            text = _find_definition(lines, function.__qualname__, False, None)
            if text:
                return _Source(function.__name__, text)
        return self._assignment(bound_name)

    def _assignment(self, name: str) -> _Source | None:
        """``Point = namedtuple(...)``-style definitions: the latest top-level assignment to the name."""
        for lines in self.cells_latest_first():
            text = _find_assignment(lines, name, None)
            if text:
                return _Source(name, text)
        return None

    @staticmethod
    def _inspect(obj: Any) -> str | None:
        try:
            text = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            return None
        return text if _parse(text) is not None else None


# --------------------------------------------------------------------------------------------------------------
# Global names a definition reads


def _global_names(text: str) -> tuple[set[str], set[str]]:
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


def _attribute_chains(text: str) -> dict[str, set[tuple[str, ...]]]:
    """``{"sk": {("preprocessing", "StandardScaler"), ("preprocessing",)}}`` for ``sk.preprocessing.StandardScaler``."""
    chains: dict[str, set[tuple[str, ...]]] = {}
    tree = _parse(text)
    for node in ast.walk(tree) if tree is not None else ():
        parts: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if parts and isinstance(current, ast.Name):
            chains.setdefault(current.id, set()).add(tuple(reversed(parts)))
    return chains


# --------------------------------------------------------------------------------------------------------------
# Import lines


@dataclass(frozen=True)
class _Import:
    """One imported name: ``import module [as alias]`` or ``from module import name [as alias]``."""

    module: str
    name: str | None = None
    alias: str | None = None

    @property
    def binds(self) -> str:
        if self.alias:
            return self.alias
        return self.name if self.name else self.module.split(".")[0]

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


def _is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def _import_group(module: str) -> int:
    top = module.split(".")[0]
    if top == "__future__":
        return -1
    if _is_stdlib(module):
        return 0
    return 2 if top == _RUNTIME_PACKAGE else 1


def _render_imports(imports: Iterable[_Import]) -> list[str]:
    """isort-style: stdlib, third party, pyml_jupyter; ``from`` imports of one module merged on one line."""
    plain = {imp for imp in imports if imp.name is None}
    # "import os.path" binds "os": a plain "import os" next to it says nothing more.
    plain = {
        imp
        for imp in plain
        if imp.alias or not any(o.alias is None and o.module.startswith(imp.module + ".") for o in plain)
    }
    froms: dict[str, set[str]] = {}
    for imp in imports:
        if imp.name is not None:
            froms.setdefault(imp.module, set()).add(imp.name + (f" as {imp.alias}" if imp.alias else ""))
    lines: list[tuple[int, str, str]] = []
    for imp in plain:
        text = f"import {imp.module}" + (f" as {imp.alias}" if imp.alias else "")
        lines.append((_import_group(imp.module), imp.module, text))
    for module, names in froms.items():
        lines.append((_import_group(module), module, f"from {module} import {', '.join(sorted(names))}"))
    lines.sort(key=lambda item: (item[0], item[1].lower(), not item[2].startswith("import "), item[2]))
    return [text for _, _, text in lines]


def _group_of_line(line: str) -> int:
    return _import_group(line.split()[1])


def _resolves_to(imp: _Import, value: Any) -> bool:
    """Whether ``imp`` binds ``value`` right now (checked against ``sys.modules``: nothing is imported)."""
    if imp.name is None:
        module = sys.modules.get(imp.module if imp.alias else imp.top)
        return module is not None and module is value
    module = sys.modules.get(imp.module)
    if module is not None and vars(module).get(imp.name, _MISSING) is value:
        return True
    return sys.modules.get(f"{imp.module}.{imp.name}", _MISSING) is value


_MISSING = object()


class _ImportStatements:
    """The user's own import statements from the input history, to reuse their spelling."""

    def __init__(self, finder: _SourceFinder) -> None:
        self._finder = finder
        self._statements: list[list[_Import]] | None = None

    def _all(self) -> list[list[_Import]]:
        if self._statements is None:
            self._statements = []
            for lines in self._finder.cells_latest_first():
                tree = _parse("".join(lines))
                if tree is None:  # keep what can be read: the import lines alone
                    tree = ast.Module(body=[], type_ignores=[])
                    for line in lines:
                        stripped = line.strip()
                        if stripped.startswith(("import ", "from ")):
                            tree.body.extend(getattr(_parse(stripped), "body", []))
                found = []
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found += [(node.lineno, _Import(a.name, None, a.asname)) for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        found += [(node.lineno, _Import(node.module, a.name, a.asname)) for a in node.names]
                found.sort(key=lambda item: item[0], reverse=True)
                self._statements.append([imp for _, imp in found])
        return self._statements

    def binding(self, name: str, value: Any) -> _Import | None:
        """The last import statement binding ``name``, if it still binds ``value``."""
        for cell in self._all():
            for imp in cell:
                if imp.name == "*":
                    module = sys.modules.get(imp.module)
                    if module is not None and vars(module).get(name, _MISSING) is value:
                        return _Import(imp.module, name)
                    continue
                if imp.binds == name:
                    return imp if _resolves_to(imp, value) else None
        return None


def _public_import(value: Any, name: str) -> _Import | None:
    """``from <shortest public module> import <name>`` for a library function or class, if one binds it."""
    module_name = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    top_name = qualname.split(".")[0]
    parts = module_name.split(".")
    if parts[0] == _RUNTIME_PACKAGE:
        candidates = [module_name]  # the image has the defining module, not the re-exports
    else:
        candidates = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        # prefer public modules: pandas.DataFrame over pandas.core.frame.DataFrame
        candidates.sort(key=lambda m: (any(p.startswith("_") for p in m.split(".")), m.count(".")))
    for candidate in candidates:
        module = sys.modules.get(candidate)
        if module is None:
            continue
        target = vars(module).get(top_name, _MISSING)
        for attribute in qualname.split(".")[1:]:
            target = getattr(target, attribute, _MISSING)
        if target is value:
            alias = None if name == top_name and "." not in qualname else name
            if "." in qualname:
                return _Import(candidate, top_name, None)
            return _Import(candidate, top_name, alias)
    return None


def _module_import(module: types.ModuleType, name: str) -> _Import:
    module_name = module.__name__
    if module_name == name:
        return _Import(module_name)
    parent, _, leaf = module_name.rpartition(".")
    if parent and leaf == name and sys.modules.get(parent) is not None:
        if vars(sys.modules[parent]).get(leaf) is module:
            return _Import(parent, leaf)
    return _Import(module_name, None, name)


@functools.lru_cache(maxsize=256)
def _eagerly_imported_submodules(package_file: str, package_name: str) -> frozenset[str]:
    """Submodules a package's ``__init__.py`` imports itself (read with ``ast``; nothing is imported)."""
    try:
        with open(package_file, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            absolute = module if node.level == 0 else (package_name + ("." + module if module else ""))
            if node.level > 1:
                continue
            if absolute == package_name:
                names.update(a.name for a in node.names)
            elif absolute.startswith(package_name + "."):
                names.add(absolute[len(package_name) + 1 :].split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(package_name + "."):
                    names.add(alias.name[len(package_name) + 1 :].split(".")[0])
    return frozenset(names)


def _needed_submodules(module: types.ModuleType, chains: Iterable[tuple[str, ...]]) -> set[str]:
    """Submodules reached as attributes (``sk.preprocessing.X``) that importing the parent may not load."""
    needed: set[str] = set()
    for chain in chains:
        current = module
        for attribute in chain:
            full = f"{current.__name__}.{attribute}"
            sub = sys.modules.get(full)
            if sub is None or vars(current).get(attribute) is not sub:
                break
            package_file = getattr(current, "__file__", None) or ""
            if attribute not in _eagerly_imported_submodules(package_file, current.__name__):
                needed.add(full)
            current = sub
    return needed


# --------------------------------------------------------------------------------------------------------------
# Constants


def _is_literal(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if value is None or kind in (bool, int, float, complex, str, bytes):
        return True
    if kind in (tuple, frozenset) and depth < 4:
        return all(_is_literal(item, depth + 1) for item in value)
    return False


def _constant_repr(value: Any) -> str | None:
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


# --------------------------------------------------------------------------------------------------------------
# The capture


def _describe(value: Any) -> str:
    kind = type(value)
    top = kind.__module__.split(".")[0]
    name = kind.__qualname__ if top in ("builtins", "__main__") else f"{top} {kind.__qualname__}"
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}"


@dataclass
class _Definition:
    """A helper (or the model class) emitted in model.py."""

    obj: Any
    name: str  # the name its statement defines
    text: str
    aliases: set[str] = field(default_factory=set)  # other names the code uses for it
    needs_at_definition: set[int] = field(default_factory=set)  # ids of definitions its statement runs
    needs: set[int] = field(default_factory=set)  # ids of all definitions it uses


def _definition_globals(obj: Any, fallback: Mapping[str, Any]) -> Mapping[str, Any]:
    """The globals ``obj``'s code reads: its functions' ``__globals__``, else ``fallback``."""
    functions = _own_functions(obj) if isinstance(obj, type) else [obj]
    for function in functions:
        try:
            function = inspect.unwrap(function)
        except Exception:
            continue
        if isinstance(function, types.FunctionType):
            return function.__globals__
    return fallback


class _Capture:
    def __init__(self, model_class: type, namespace: Mapping[str, Any], artifact_names: Iterable[str]) -> None:
        self.model_class = model_class
        self.namespace = namespace
        self.artifacts = set(artifact_names)
        self.local_modules = {"__main__", model_class.__module__}
        self.finder = _SourceFinder(namespace)
        self.history = _ImportStatements(self.finder)
        self.definitions: dict[int, _Definition] = {}
        self.postorder: list[_Definition] = []
        self.imports: set[_Import] = set()
        self.attribute_lines: dict[str, str] = {}  # name -> "name = Outer.Inner"
        self.constants: dict[str, str] = {}  # name -> repr
        self.bindings: dict[str, Any] = {}  # every name model.py binds -> the object
        # problems, name -> description
        self.unsupported: dict[str, str] = {}
        self.undefined: dict[str, str] = {}
        self.artifact_globals: dict[str, str] = {}
        self.other: list[str] = []

    # -- driving

    def run(self) -> CapturedSource:
        cls = self.model_class
        self._define(cls, cls.__name__, self.namespace, user=None)
        self._raise_problems()
        ordered = self._ordered()
        imports = _render_imports(self.imports)
        source = self._render(imports, ordered)
        try:
            compile(source, "model.py", "exec")
        except SyntaxError as exc:  # pragma: no cover - would be a bug in the segment extraction
            raise CaptureError(
                f"The captured source of {cls.__name__} does not compile ({exc}). Please report this; as a "
                "workaround, define the class and its helpers in plain cells without IPython magics."
            ) from exc
        modules = sorted(
            {
                imp.top
                for imp in self.imports
                if not _is_stdlib(imp.module) and imp.top not in (_RUNTIME_PACKAGE, "__main__")
            }
        )
        helpers = [d.name for d in ordered if d.obj is not cls]
        return CapturedSource(
            class_name=cls.__name__,
            kind=model_kind(cls) or "",
            source=source,
            imports=imports,
            helpers=helpers,
            modules=modules,
        )

    def _bind(self, name: str, value: Any, what: str) -> None:
        previous = self.bindings.get(name, _MISSING)
        if previous is _MISSING:
            self.bindings[name] = value
        elif previous is not value:
            self.other.append(
                f"The name `{name}` means two different things in the code to capture ({what}, and "
                f"{_describe(previous)} elsewhere). Rename one of them."
            )

    def _define(self, obj: Any, bound_name: str, namespace: Mapping[str, Any], user: str | None) -> _Definition | None:
        existing = self.definitions.get(id(obj))
        if existing is not None:
            if bound_name != existing.name:
                existing.aliases.add(bound_name)
                self._bind(bound_name, obj, f"another name for `{existing.name}`")
            return existing
        if "<locals>" in (getattr(obj, "__qualname__", "") or "") or _free_variables(obj):
            self.other.append(
                f"`{bound_name}`" + (f" (used by `{user}`)" if user else "") + " is defined inside a function, "
                "so its code depends on that function's local variables. Define it at the top level of a cell."
            )
            return None
        found = self.finder.source(obj, bound_name)
        if found is None:
            what = "class" if isinstance(obj, type) else "function"
            self.other.append(
                f"Cannot find the source of the {what} `{bound_name}`"
                + (f" (used by `{user}`)" if user else "")
                + ". Define it with `def`/`class` in a notebook cell and run that cell again."
            )
            return None
        definition = _Definition(obj=obj, name=found.name, text=found.text)
        self.definitions[id(obj)] = definition
        self._bind(found.name, obj, f"the {'class' if isinstance(obj, type) else 'function'} `{found.name}`")
        if bound_name != found.name:
            definition.aliases.add(bound_name)
            self._bind(bound_name, obj, f"another name for `{found.name}`")
        if _compiled_with_future_annotations(obj):
            # Annotations stay unevaluated strings: model.py gets the same __future__ import, and the names
            # they mention are not needed at run time.
            self.imports.add(_FUTURE_ANNOTATIONS)
        future = _FUTURE_ANNOTATIONS in self.imports
        try:
            header = "from __future__ import annotations\n" if future else ""
            at_definition, anytime = _global_names(header + found.text)
        except SyntaxError as exc:  # pragma: no cover - the text came from parsed source
            self.other.append(f"The source of `{found.name}` does not parse: {exc}.")
            return definition
        chains = _attribute_chains(found.text)
        for name in sorted(anytime - {found.name}):
            helper = self._resolve(name, namespace, found.name, chains.get(name, set()))
            if helper is not None:
                definition.needs.add(id(helper.obj))
                if name in at_definition:
                    definition.needs_at_definition.add(id(helper.obj))
        self.postorder.append(definition)
        return definition

    # -- resolving one global name

    def _resolve(
        self, name: str, namespace: Mapping[str, Any], user: str, chains: set[tuple[str, ...]]
    ) -> _Definition | None:
        helper = "" if user == self.model_class.__name__ else f"used by `{user}`"
        if name in self.artifacts:
            self.artifact_globals.setdefault(name, f" ({helper})" if helper else "")
            return None
        if name in namespace:
            value = namespace[name]
        elif name in vars(builtins) and name not in _IPYTHON_BUILTINS:
            return None
        elif name in vars(builtins):
            value = vars(builtins)[name]
        else:
            self.undefined.setdefault(name, f" ({helper})" if helper else "")
            return None
        if name not in _IPYTHON_BUILTINS and vars(builtins).get(name, _MISSING) is value:
            return None

        if isinstance(value, types.ModuleType):
            self._import_module(name, value, chains)
            return None
        module_name = _module_of(value)
        if module_name.split(".")[0] == _RUNTIME_PACKAGE and _is_code(value):
            self._import_runtime_object(name, value, f" ({helper})" if helper else "")
            return None
        if module_name in self.local_modules and _is_code(value):
            return self._define(value, name, _definition_globals(value, namespace), user)

        statement = self.history.binding(name, value)
        if statement is not None and statement.top != _RUNTIME_PACKAGE:
            self.imports.add(statement)
            self._bind(name, value, "an import")
            return None
        public = _public_import(value, name)
        if public is not None:
            self.imports.add(public)
            qualname = getattr(value, "__qualname__", "")
            if "." in qualname and public.binds != name:  # a nested class: Outer.Inner
                self.attribute_lines[name] = f"{name} = {qualname}"
            self._bind(public.binds, vars(sys.modules[public.module]).get(public.name), "an import")
            self._bind(name, value, "an import")
            return None
        constant = _constant_repr(value)
        if constant is not None:
            self.constants[name] = constant
            self._bind(name, value, "a constant")
            return None
        self.unsupported.setdefault(name, _describe(value) + (f", {helper}" if helper else ""))
        return None

    def _import_module(self, name: str, module: types.ModuleType, chains: set[tuple[str, ...]]) -> None:
        module_name = module.__name__
        if module_name.split(".")[0] == _RUNTIME_PACKAGE and not (
            module_name == _RUNTIME_SUBPACKAGE or module_name.startswith(_RUNTIME_SUBPACKAGE + ".")
        ):
            self.other.append(
                f"`{name}` is the module `{module_name}`, which does not exist where the model is served (only "
                f"`{_RUNTIME_SUBPACKAGE}` does). Import the names you need instead, e.g. "
                "`from pyml_jupyter import DataFrameModel`."
            )
            return
        statement = self.history.binding(name, module)
        self.imports.add(statement if statement is not None else _module_import(module, name))
        self._bind(name, module, "an import")
        for submodule in sorted(_needed_submodules(module, chains)):
            self.imports.add(_Import(submodule))

    def _import_runtime_object(self, name: str, value: Any, used_by: str) -> None:
        module_name = value.__module__
        if not (module_name == _RUNTIME_SUBPACKAGE or module_name.startswith(_RUNTIME_SUBPACKAGE + ".")):
            self.other.append(
                f"`{name}`{used_by} comes from `{module_name}`, which does not exist where the model is served "
                f"(only `{_RUNTIME_SUBPACKAGE}` does). Do not use it inside the model class."
            )
            return
        public = _public_import(value, name)
        if public is None:
            self.other.append(f"`{name}` ({module_name}) cannot be imported by name from `{module_name}`.")
            return
        self.imports.add(public)
        self._bind(name, value, "an import")

    # -- reporting

    def _raise_problems(self) -> None:
        cls_name = self.model_class.__name__
        paragraphs: list[str] = []
        if self.unsupported:
            names = list(self.unsupported)
            listed = _join([f"`{n}` ({self.unsupported[n]})" for n in names])
            plural = len(names) > 1
            flags = " ".join(f"{n}={n}" for n in names)
            mapping = ", ".join(f'"{n}": {n}' for n in names)
            reads = _join([f'`artifacts["{n}"]`' for n in names])
            what = (
                "are not imports, helper functions or classes, or artifacts"
                if plural
                else "is not an import, a helper function or class, or an artifact"
            )
            paragraphs.append(
                f"{cls_name} uses the notebook variable{'s' if plural else ''} {listed}, which {what}. "
                f"Pass {'them' if plural else 'it'} as "
                f"{'artifacts' if plural else 'an artifact'} (`--artifacts {flags}` / `artifacts={{{mapping}}}`) "
                f"and read {'them' if plural else 'it'} in the constructor as {reads}."
            )
        if self.artifact_globals:
            names = list(self.artifact_globals)
            plural = len(names) > 1
            first = names[0]
            paragraphs.append(
                f"{cls_name} reads the artifact{'s' if plural else ''} "
                f"{_join([f'`{n}`{self.artifact_globals[n]}' for n in names])} as "
                f"{'global variables' if plural else 'a global variable'}, but a served model only receives "
                "its artifacts through its constructor. "
                f"Take {'them' if plural else 'it'} there and keep {'them' if plural else 'it'} on `self`: "
                f'`def __init__(self, artifacts): self.{first} = artifacts["{first}"]`, then use '
                f"`self.{first}` instead of `{first}`."
            )
        if self.undefined:
            names = list(self.undefined)
            plural = len(names) > 1
            paragraphs.append(
                f"{cls_name} uses {_join([f'`{n}`{self.undefined[n]}' for n in names])}, which "
                f"{'are' if plural else 'is'} not defined in the notebook. Run the cell that defines "
                f"{'them' if plural else 'it'}, or fix the {'names' if plural else 'name'}."
            )
        paragraphs.extend(dict.fromkeys(self.other))
        if paragraphs:
            raise CaptureError(
                "\n\n".join(paragraphs),
                details={
                    "unsupported": list(self.unsupported),
                    "artifact_globals": list(self.artifact_globals),
                    "undefined": list(self.undefined),
                },
            )

    # -- emitting

    def _ordered(self) -> list[_Definition]:
        """Post-order of use, adjusted so that whatever a statement runs when defined comes before it."""
        rank = {id(d.obj): i for i, d in enumerate(self.postorder)}
        pending = list(self.postorder)
        done: set[int] = set()
        ordered: list[_Definition] = []
        while pending:
            ready = [d for d in pending if all(n in done or n not in rank for n in d.needs_at_definition)]
            chosen = min(ready or pending, key=lambda d: rank[id(d.obj)])
            pending.remove(chosen)
            done.add(id(chosen.obj))
            ordered.append(chosen)
        return ordered

    def _render(self, imports: list[str], ordered: list[_Definition]) -> str:
        cls = self.model_class
        parts = [
            f"# model.py of {cls.__name__}, captured by pyml_jupyter from the notebook.\n"
            "# Generated: edit the notebook and capture again rather than editing this file.\n"
        ]
        if imports:
            block, previous = [], None
            for line in imports:
                group = _group_of_line(line)
                if previous is not None and group != previous:
                    block.append("")
                block.append(line)
                previous = group
            parts.append("\n".join(block) + "\n")
        if self.attribute_lines:
            parts.append("\n".join(self.attribute_lines[n] for n in sorted(self.attribute_lines)) + "\n")
        if self.constants:
            lines = ["# Constants: the values these notebook variables had when the model was captured."]
            lines += [f"{name} = {text}" for name, text in sorted(self.constants.items())]
            parts.append("\n".join(lines) + "\n")
        body = []
        for definition in ordered:
            text = definition.text.rstrip() + "\n"
            aliases = "".join(f"{alias} = {definition.name}\n" for alias in sorted(definition.aliases))
            body.append(text + aliases)
        head = "\n".join(parts)
        return head + "\n\n" + "\n\n".join(body)


def _module_of(value: Any) -> str:
    """``value.__module__``, or ``""`` for objects without one (or whose attribute lookup misbehaves)."""
    try:
        module = getattr(value, "__module__", None)
    except Exception:
        return ""
    return module if isinstance(module, str) else ""


def _is_code(value: Any) -> bool:
    """A class or a function (possibly wrapped by a decorator), as opposed to a data object."""
    if isinstance(value, type) or isinstance(value, types.FunctionType):
        return True
    try:
        return callable(value) and isinstance(inspect.unwrap(value), types.FunctionType)
    except Exception:  # a misbehaving __wrapped__
        return False


_FUTURE_ANNOTATIONS = _Import("__future__", "annotations")


def _compiled_with_future_annotations(obj: Any) -> bool:
    """Whether the cell defining ``obj`` had ``from __future__ import annotations``."""
    functions = _own_functions(obj) if isinstance(obj, type) else [obj]
    for function in functions:
        try:
            code = getattr(inspect.unwrap(function), "__code__", None)
        except Exception:
            continue
        if code is not None and code.co_flags & __future__.annotations.compiler_flag:
            return True
    return False


def _free_variables(obj: Any) -> tuple[str, ...]:
    """Variables a function closes over (``__class__``, which ``super()`` uses, does not count)."""
    try:
        function = inspect.unwrap(obj)
    except Exception:
        return ()
    code = getattr(function, "__code__", None)
    return tuple(v for v in getattr(code, "co_freevars", ()) if v != "__class__")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
