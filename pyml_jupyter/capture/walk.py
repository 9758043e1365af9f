"""Walking a model class's names: its helpers (transitively), imports, constants, and what cannot be captured.

Each global name a definition reads is resolved against the namespace the definition lives in: builtins are
skipped; modules and library objects become import lines; functions and classes defined in the notebook become
helpers, captured the same way; small literal constants are copied; anything else (a DataFrame, a fitted
estimator...) is a problem telling the user to pass it as an artifact.
"""

from __future__ import annotations

import builtins
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import CaptureError
from .imports import (
    FUTURE_ANNOTATIONS, MISSING, RUNTIME_PACKAGE, RUNTIME_SUBPACKAGE, Import, ImportStatements, module_import,
    needed_submodules, public_import,
)
from .names import (
    attribute_chains, compiled_with_future_annotations, constant_repr, definition_globals, describe, free_variables,
    global_names, is_code, join_words, module_of,
)
from .source import SourceFinder

__all__ = ["Definition", "Walk"]

#: Names IPython adds to ``builtins`` that a plain interpreter does not have.
_IPYTHON_BUILTINS = frozenset({"display", "get_ipython", "__IPYTHON__", "__IPYTHON__active"})


@dataclass
class Definition:
    """A helper (or the model class) emitted in model.py."""

    obj: Any
    name: str  # the name its statement defines
    text: str
    aliases: set[str] = field(default_factory=set)  # other names the code uses for it
    needs_at_definition: set[int] = field(default_factory=set)  # ids of definitions its statement runs
    needs: set[int] = field(default_factory=set)  # ids of all definitions it uses


class Walk:
    """The definitions, imports and constants a model class needs, found by walking its names."""

    def __init__(self, model_class: type, namespace: Mapping[str, Any], artifact_names: Iterable[str]) -> None:
        self.model_class = model_class
        self.namespace = namespace
        self.artifacts = set(artifact_names)
        self.local_modules = {"__main__", model_class.__module__}
        self.finder = SourceFinder(namespace)
        self.history = ImportStatements(self.finder)
        self.definitions: dict[int, Definition] = {}
        self.postorder: list[Definition] = []
        self.imports: set[Import] = set()
        self.attribute_lines: dict[str, str] = {}  # name -> "name = Outer.Inner"
        self.constants: dict[str, str] = {}  # name -> repr
        self.bindings: dict[str, Any] = {}  # every name model.py binds -> the object
        # problems, name -> description
        self.unsupported: dict[str, str] = {}
        self.undefined: dict[str, str] = {}
        self.artifact_globals: dict[str, str] = {}
        self.other: list[str] = []

    def _bind(self, name: str, value: Any, what: str) -> None:
        previous = self.bindings.get(name, MISSING)
        if previous is MISSING:
            self.bindings[name] = value
        elif previous is not value:
            self.other.append(
                f"The name `{name}` means two different things in the code to capture ({what}, and "
                f"{describe(previous)} elsewhere). Rename one of them."
            )

    def define(self, obj: Any, bound_name: str, namespace: Mapping[str, Any], user: str | None) -> Definition | None:
        """Capture ``obj`` (named ``bound_name`` by ``user``) and, transitively, the global names it reads."""
        existing = self.definitions.get(id(obj))
        if existing is not None:
            if bound_name != existing.name:
                existing.aliases.add(bound_name)
                self._bind(bound_name, obj, f"another name for `{existing.name}`")
            return existing
        if "<locals>" in (getattr(obj, "__qualname__", "") or "") or free_variables(obj):
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
        definition = Definition(obj=obj, name=found.name, text=found.text)
        self.definitions[id(obj)] = definition
        self._bind(found.name, obj, f"the {'class' if isinstance(obj, type) else 'function'} `{found.name}`")
        if bound_name != found.name:
            definition.aliases.add(bound_name)
            self._bind(bound_name, obj, f"another name for `{found.name}`")
        if compiled_with_future_annotations(obj):
            # Annotations stay unevaluated strings: model.py gets the same __future__ import, and the names
            # they mention are not needed at run time.
            self.imports.add(FUTURE_ANNOTATIONS)
        future = FUTURE_ANNOTATIONS in self.imports
        try:
            header = "from __future__ import annotations\n" if future else ""
            at_definition, anytime = global_names(header + found.text)
        except SyntaxError as exc:  # pragma: no cover - the text came from parsed source
            self.other.append(f"The source of `{found.name}` does not parse: {exc}.")
            return definition
        chains = attribute_chains(found.text)
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
    ) -> Definition | None:
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
        if name not in _IPYTHON_BUILTINS and vars(builtins).get(name, MISSING) is value:
            return None

        if isinstance(value, types.ModuleType):
            self._import_module(name, value, chains)
            return None
        module_name = module_of(value)
        if module_name.split(".")[0] == RUNTIME_PACKAGE and is_code(value):
            self._import_runtime_object(name, value, f" ({helper})" if helper else "")
            return None
        if module_name in self.local_modules and is_code(value):
            return self.define(value, name, definition_globals(value, namespace), user)

        statement = self.history.binding(name, value)
        if statement is not None and statement.top != RUNTIME_PACKAGE:
            self.imports.add(statement)
            self._bind(name, value, "an import")
            return None
        public = public_import(value, name)
        if public is not None:
            self.imports.add(public)
            qualname = getattr(value, "__qualname__", "")
            if "." in qualname and public.binds != name:  # a nested class: Outer.Inner
                self.attribute_lines[name] = f"{name} = {qualname}"
            self._bind(public.binds, vars(sys.modules[public.module]).get(public.name), "an import")
            self._bind(name, value, "an import")
            return None
        constant = constant_repr(value)
        if constant is not None:
            self.constants[name] = constant
            self._bind(name, value, "a constant")
            return None
        self.unsupported.setdefault(name, describe(value) + (f", {helper}" if helper else ""))
        return None

    def _import_module(self, name: str, module: types.ModuleType, chains: set[tuple[str, ...]]) -> None:
        module_name = module.__name__
        if module_name.split(".")[0] == RUNTIME_PACKAGE and not (
            module_name == RUNTIME_SUBPACKAGE or module_name.startswith(RUNTIME_SUBPACKAGE + ".")
        ):
            self.other.append(
                f"`{name}` is the module `{module_name}`, which does not exist where the model is served (only "
                f"`{RUNTIME_SUBPACKAGE}` does). Import the names you need instead, e.g. "
                "`from pyml_jupyter import DataFrameModel`."
            )
            return
        statement = self.history.binding(name, module)
        self.imports.add(statement if statement is not None else module_import(module, name))
        self._bind(name, module, "an import")
        for submodule in sorted(needed_submodules(module, chains)):
            self.imports.add(Import(submodule))

    def _import_runtime_object(self, name: str, value: Any, used_by: str) -> None:
        module_name = value.__module__
        if not (module_name == RUNTIME_SUBPACKAGE or module_name.startswith(RUNTIME_SUBPACKAGE + ".")):
            self.other.append(
                f"`{name}`{used_by} comes from `{module_name}`, which does not exist where the model is served "
                f"(only `{RUNTIME_SUBPACKAGE}` does). Do not use it inside the model class."
            )
            return
        public = public_import(value, name)
        if public is None:
            self.other.append(f"`{name}` ({module_name}) cannot be imported by name from `{module_name}`.")
            return
        self.imports.add(public)
        self._bind(name, value, "an import")

    # -- reporting

    def raise_problems(self) -> None:
        """Raise one :class:`CaptureError` naming every problem found, each with how to fix it."""
        cls_name = self.model_class.__name__
        paragraphs: list[str] = []
        if self.unsupported:
            names = list(self.unsupported)
            listed = join_words([f"`{n}` ({self.unsupported[n]})" for n in names])
            plural = len(names) > 1
            flags = " ".join(f"{n}={n}" for n in names)
            mapping = ", ".join(f'"{n}": {n}' for n in names)
            reads = join_words([f'`artifacts["{n}"]`' for n in names])
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
                f"{join_words([f'`{n}`{self.artifact_globals[n]}' for n in names])} as "
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
                f"{cls_name} uses {join_words([f'`{n}`{self.undefined[n]}' for n in names])}, which "
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
