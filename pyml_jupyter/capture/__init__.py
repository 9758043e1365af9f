"""Capture a model class defined in a notebook as the text of a self-contained ``model.py``.

:func:`capture_class` turns a class (a subclass of :class:`~pyml_jupyter.serving.contract.DataFrameModel` or
:class:`~pyml_jupyter.serving.contract.TensorModel`) into readable, runnable source: a short header, the import
lines it needs, the small constants it reads, the helper functions and classes it calls (transitively, in
dependency order), and the class itself. The result runs on its own in a fresh interpreter, which is what the
serving image does with it.

How it works, one module each: :mod:`.source` finds a definition's text in the notebook's cells; :mod:`.names`
tells which global names it reads and what their values are; :mod:`.walk` resolves each name (helper, import,
constant, or a problem to report); :mod:`.imports` rebuilds the import lines; :mod:`.model_file` renders
``model.py``.
"""

from __future__ import annotations

from .model_file import CapturedSource, capture_class

__all__ = ["CapturedSource", "capture_class"]
