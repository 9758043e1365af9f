"""The package step: capture a notebook class and its artifacts, write the package, pin its requirements."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from notebook_shell import ipython, run, shell  # noqa: F401
from pyml_jupyter.errors import CaptureError
from pyml_jupyter.package import capture_package
from pyml_jupyter.serving.loader import read_package
from pyml_jupyter.serving.schema import DataFrameSchema

MODEL = """
    import pandas as pd
    from pyml_jupyter import DataFrameModel

    class ChurnModel(DataFrameModel):
        def __init__(self, artifacts):
            self.rates = artifacts["rates"]

        def predict(self, df):
            return pd.DataFrame({"score": df["contract"].map(self.rates)}, index=df.index)
"""


@pytest.fixture
def notebook(shell):
    run(shell, MODEL)
    return shell


def draft_of(notebook, tmp_path, artifacts):
    return capture_package(notebook.user_ns["ChurnModel"], artifacts, tmp_path / "package",
                           namespace=notebook.user_ns)


def test_the_artifacts_are_saved_and_loaded_back(notebook, tmp_path):
    draft = draft_of(notebook, tmp_path, {"rates": {"monthly": 0.5, "yearly": 0.1}})

    assert draft.loaded_artifacts == {"rates": {"monthly": 0.5, "yearly": 0.1}}
    assert list(draft.artifacts.specs) == ["rates"]
    assert "class ChurnModel(DataFrameModel):" in draft.captured.source


def test_an_artifact_that_cannot_be_saved_is_a_capture_error_naming_it(notebook, tmp_path):
    with pytest.raises(CaptureError, match="an artifact cannot be saved and loaded back.*'rates'"):
        draft_of(notebook, tmp_path, {"rates": lambda contract: 0.5})


def test_an_artifact_of_a_notebook_class_is_a_capture_error_saying_where_to_move_it(notebook, tmp_path):
    run(notebook, """
        class Rates(dict):
            pass
    """)
    with pytest.raises(CaptureError, match="artifact\\(s\\) rates contain objects of a class defined in the notebook"):
        draft_of(notebook, tmp_path, {"rates": notebook.user_ns["Rates"](monthly=0.5)})


def test_the_written_package_reads_back_with_its_schemas(notebook, tmp_path):
    draft = draft_of(notebook, tmp_path, {"rates": {"monthly": 0.5}})
    sample = pd.DataFrame({"contract": ["monthly", "monthly"]})
    output = pd.DataFrame({"score": [0.5, 0.5]})

    info = draft.write(sample=sample, input_schema=DataFrameSchema.infer(sample),
                       output_schema=DataFrameSchema.infer(output), takes_artifacts=True)

    assert info == read_package(draft.directory)
    contract = json.loads((draft.directory / "pyml.json").read_text())
    assert contract["class_name"] == "ChurnModel"
    assert contract["input_schema"] == DataFrameSchema.infer(sample).to_dict()
    assert contract["requirements"] == []


def test_pinning_writes_the_requirements_into_the_package(notebook, tmp_path):
    draft = draft_of(notebook, tmp_path, {"rates": {"monthly": 0.5}})
    sample = pd.DataFrame({"contract": ["monthly"]})
    draft.write(sample=sample, input_schema=DataFrameSchema.infer(sample),
                output_schema=DataFrameSchema.infer(pd.DataFrame({"score": [0.5]})), takes_artifacts=True)

    requirements = draft.pin_requirements()

    pinned = json.loads((draft.directory / "pyml.json").read_text())["requirements"]
    assert pinned == list(requirements.pinned)
    assert any(line.startswith("pandas==") for line in pinned)
    assert (draft.directory / "requirements.txt").read_text() == requirements.to_text()
