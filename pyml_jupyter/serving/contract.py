"""The model contract: the two base classes a pyml_jupyter model subclasses.

A model is a plain Python class with two methods:

* a **constructor** that loads the model's parameters. It receives ``artifacts``, a mapping from artifact
  name to the loaded object (``self.clf = artifacts["clf"]``). A constructor that takes nothing besides
  ``self`` is accepted too, for models that carry no trained objects.
* ``predict()``, whose types depend on the base class:

  ============================  =============================================  ==================================
  base class                    ``predict`` input                              ``predict`` output
  ============================  =============================================  ==================================
  :class:`DataFrameModel`       ``pandas.DataFrame`` (one row per example)     ``pandas.DataFrame``, same rows and
                                                                               index as the input
  :class:`TensorModel`          ``dict[str, numpy.ndarray]`` (named inputs)    ``dict[str, numpy.ndarray]``
  ============================  =============================================  ==================================

Schemas. A model may declare ``input_schema`` and ``output_schema`` as class attributes:

* DataFrameModel: a mapping ``column -> dtype`` (``{"age": "int64", "city": "string"}``); a dtype may end in
  ``?`` to allow missing values (``"int64?"``), or a :class:`~pyml_jupyter.serving.schema.DataFrameSchema`.
* TensorModel: a mapping ``name -> (dtype, shape)`` with ``-1`` or ``None`` for variable dimensions
  (``{"image": ("float32", (-1, 28, 28))}``), or a :class:`~pyml_jupyter.serving.schema.TensorSchema`.

Undeclared schemas are inferred from the sample input and the output the model produced on it. Wherever the
model runs (the notebook check, the served container, the Spark job), the input schema is enforced by
:mod:`pyml_jupyter.serving.schema` before ``predict`` is called, so user code always sees the declared dtypes.

Rules ``predict`` must follow (the contract check verifies each): return the declared type; keep the input's
rows and index (DataFrame); never mutate the input; give the same output for the same input; give 0 rows for
0 rows; give the same answer for a row whether it is scored alone or in a batch.

This module is part of the serving runtime: it imports only the standard library.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Mapping

__all__ = ["DataFrameModel", "TensorModel", "MODEL_KINDS", "model_kind", "constructor_takes_artifacts"]


class _Model:
    """Common base: not to be subclassed directly."""

    kind: ClassVar[str] = ""
    input_schema: ClassVar[Any] = None
    output_schema: ClassVar[Any] = None

    def __init__(self, artifacts: Mapping[str, Any] | None = None) -> None:  # pragma: no cover - trivial
        pass

    def predict(self, data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")


class DataFrameModel(_Model):
    """A model that takes a ``pandas.DataFrame`` and returns a ``pandas.DataFrame`` with the same rows."""

    kind: ClassVar[str] = "dataframe"

    def predict(self, df: "pandas.DataFrame") -> "pandas.DataFrame":  # noqa: F821
        raise NotImplementedError(f"{type(self).__name__} must implement predict(df)")


class TensorModel(_Model):
    """A model that takes and returns named ``numpy`` arrays: ``dict[str, numpy.ndarray]``."""

    kind: ClassVar[str] = "tensor"

    def predict(self, tensors: "dict[str, numpy.ndarray]") -> "dict[str, numpy.ndarray]":  # noqa: F821
        raise NotImplementedError(f"{type(self).__name__} must implement predict(tensors)")


MODEL_KINDS: dict[str, type[_Model]] = {"dataframe": DataFrameModel, "tensor": TensorModel}


def model_kind(model_class: type) -> str | None:
    """``"dataframe"`` or ``"tensor"`` for a class on the contract, else ``None``."""
    if isinstance(model_class, type):
        for kind, base in MODEL_KINDS.items():
            if issubclass(model_class, base) and model_class is not base:
                return kind
    return None


def constructor_takes_artifacts(model_class: type) -> bool:
    """True if ``__init__`` takes a positional argument besides ``self`` (the artifacts mapping)."""
    params = list(inspect.signature(model_class.__init__).parameters.values())[1:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in params)
