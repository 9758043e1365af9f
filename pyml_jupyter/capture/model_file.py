"""Rendering ``model.py``: a short header, the import lines, the constants, the helpers and the class itself."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import CaptureError
from ..serving.contract import model_kind
from .imports import RUNTIME_PACKAGE, group_of_line, is_stdlib, render_imports
from .names import describe
from .walk import Definition, Walk

__all__ = ["CapturedSource", "capture_class"]


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
    _check_capturable(model_class)
    if namespace is None:
        module = sys.modules.get(model_class.__module__)
        namespace = vars(module) if module is not None else {}
    walk = Walk(model_class, namespace, artifact_names)
    walk.define(model_class, model_class.__name__, namespace, user=None)
    walk.raise_problems()
    ordered = _ordered(walk.postorder)
    imports = render_imports(walk.imports)
    source = _render(model_class, walk, imports, ordered)
    try:
        compile(source, "model.py", "exec")
    except SyntaxError as exc:  # pragma: no cover - would be a bug in the segment extraction
        raise CaptureError(
            f"The captured source of {model_class.__name__} does not compile ({exc}). Please report this; as a "
            "workaround, define the class and its helpers in plain cells without IPython magics."
        ) from exc
    modules = sorted(
        {imp.top for imp in walk.imports if not is_stdlib(imp.module) and imp.top not in (RUNTIME_PACKAGE, "__main__")}
    )
    return CapturedSource(
        class_name=model_class.__name__,
        kind=model_kind(model_class) or "",
        source=source,
        imports=imports,
        helpers=[d.name for d in ordered if d.obj is not model_class],
        modules=modules,
    )


def _check_capturable(model_class: Any) -> None:
    """Raise :class:`CaptureError` unless ``model_class`` is a model class defined at the top level of a cell."""
    if not isinstance(model_class, type):
        raise CaptureError(
            f"Expected a model class, got {describe(model_class)}. Pass the class itself (`MyModel`), "
            "not an instance (`MyModel()`)."
        )
    if model_kind(model_class) is None:
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


def _ordered(postorder: list[Definition]) -> list[Definition]:
    """Post-order of use, adjusted so that whatever a statement runs when defined comes before it."""
    rank = {id(d.obj): i for i, d in enumerate(postorder)}
    pending = list(postorder)
    done: set[int] = set()
    ordered: list[Definition] = []
    while pending:
        ready = [d for d in pending if all(n in done or n not in rank for n in d.needs_at_definition)]
        chosen = min(ready or pending, key=lambda d: rank[id(d.obj)])
        pending.remove(chosen)
        done.add(id(chosen.obj))
        ordered.append(chosen)
    return ordered


def _render(cls: type, walk: Walk, imports: list[str], ordered: list[Definition]) -> str:
    parts = [
        f"# model.py of {cls.__name__}, captured by pyml_jupyter from the notebook.\n"
        "# Generated: edit the notebook and capture again rather than editing this file.\n"
    ]
    if imports:
        block, previous = [], None
        for line in imports:
            group = group_of_line(line)
            if previous is not None and group != previous:
                block.append("")
            block.append(line)
            previous = group
        parts.append("\n".join(block) + "\n")
    if walk.attribute_lines:
        parts.append("\n".join(walk.attribute_lines[n] for n in sorted(walk.attribute_lines)) + "\n")
    if walk.constants:
        lines = ["# Constants: the values these notebook variables had when the model was captured."]
        lines += [f"{name} = {text}" for name, text in sorted(walk.constants.items())]
        parts.append("\n".join(lines) + "\n")
    body = []
    for definition in ordered:
        text = definition.text.rstrip() + "\n"
        aliases = "".join(f"{alias} = {definition.name}\n" for alias in sorted(definition.aliases))
        body.append(text + aliases)
    head = "\n".join(parts)
    return head + "\n\n" + "\n\n".join(body)
