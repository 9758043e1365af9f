"""Rebuilding import lines: how ``model.py`` imports each module and library object the model uses.

The user's own import statement from the input history is reused when it still binds the same object; otherwise
the shortest public module that binds it. Lines are rendered isort-style.
"""

from __future__ import annotations

import ast
import functools
import sys
import types
from dataclasses import dataclass
from typing import Any, Iterable

from .source import SourceFinder, parse

__all__ = [
    "Import", "ImportStatements", "FUTURE_ANNOTATIONS", "MISSING", "RUNTIME_PACKAGE", "RUNTIME_SUBPACKAGE",
    "group_of_line", "is_stdlib", "module_import", "needed_submodules", "public_import", "render_imports",
]

#: The package whose objects the serving image provides; only its ``serving`` subpackage exists there.
RUNTIME_PACKAGE = "pyml_jupyter"
RUNTIME_SUBPACKAGE = "pyml_jupyter.serving"


@dataclass(frozen=True)
class Import:
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


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def _import_group(module: str) -> int:
    top = module.split(".")[0]
    if top == "__future__":
        return -1
    if is_stdlib(module):
        return 0
    return 2 if top == RUNTIME_PACKAGE else 1


def render_imports(imports: Iterable[Import]) -> list[str]:
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


def group_of_line(line: str) -> int:
    return _import_group(line.split()[1])


def _resolves_to(imp: Import, value: Any) -> bool:
    """Whether ``imp`` binds ``value`` right now (checked against ``sys.modules``: nothing is imported)."""
    if imp.name is None:
        module = sys.modules.get(imp.module if imp.alias else imp.top)
        return module is not None and module is value
    module = sys.modules.get(imp.module)
    if module is not None and vars(module).get(imp.name, MISSING) is value:
        return True
    return sys.modules.get(f"{imp.module}.{imp.name}", MISSING) is value


MISSING = object()


class ImportStatements:
    """The user's own import statements from the input history, to reuse their spelling."""

    def __init__(self, finder: SourceFinder) -> None:
        self._finder = finder
        self._statements: list[list[Import]] | None = None

    def _all(self) -> list[list[Import]]:
        if self._statements is None:
            self._statements = []
            for lines in self._finder.cells_latest_first():
                tree = parse("".join(lines))
                if tree is None:  # keep what can be read: the import lines alone
                    tree = ast.Module(body=[], type_ignores=[])
                    for line in lines:
                        stripped = line.strip()
                        if stripped.startswith(("import ", "from ")):
                            tree.body.extend(getattr(parse(stripped), "body", []))
                found = []
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found += [(node.lineno, Import(a.name, None, a.asname)) for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        found += [(node.lineno, Import(node.module, a.name, a.asname)) for a in node.names]
                found.sort(key=lambda item: item[0], reverse=True)
                self._statements.append([imp for _, imp in found])
        return self._statements

    def binding(self, name: str, value: Any) -> Import | None:
        """The last import statement binding ``name``, if it still binds ``value``."""
        for cell in self._all():
            for imp in cell:
                if imp.name == "*":
                    module = sys.modules.get(imp.module)
                    if module is not None and vars(module).get(name, MISSING) is value:
                        return Import(imp.module, name)
                    continue
                if imp.binds == name:
                    return imp if _resolves_to(imp, value) else None
        return None


def public_import(value: Any, name: str) -> Import | None:
    """``from <shortest public module> import <name>`` for a library function or class, if one binds it."""
    module_name = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    top_name = qualname.split(".")[0]
    parts = module_name.split(".")
    if parts[0] == RUNTIME_PACKAGE:
        candidates = [module_name]  # the image has the defining module, not the re-exports
    else:
        candidates = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        # prefer public modules: pandas.DataFrame over pandas.core.frame.DataFrame
        candidates.sort(key=lambda m: (any(p.startswith("_") for p in m.split(".")), m.count(".")))
    for candidate in candidates:
        module = sys.modules.get(candidate)
        if module is None:
            continue
        target = vars(module).get(top_name, MISSING)
        for attribute in qualname.split(".")[1:]:
            target = getattr(target, attribute, MISSING)
        if target is value:
            alias = None if name == top_name and "." not in qualname else name
            if "." in qualname:
                return Import(candidate, top_name, None)
            return Import(candidate, top_name, alias)
    return None


def module_import(module: types.ModuleType, name: str) -> Import:
    module_name = module.__name__
    if module_name == name:
        return Import(module_name)
    parent, _, leaf = module_name.rpartition(".")
    if parent and leaf == name and sys.modules.get(parent) is not None:
        if vars(sys.modules[parent]).get(leaf) is module:
            return Import(parent, leaf)
    return Import(module_name, None, name)


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


def needed_submodules(module: types.ModuleType, chains: Iterable[tuple[str, ...]]) -> set[str]:
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


FUTURE_ANNOTATIONS = Import("__future__", "annotations")
