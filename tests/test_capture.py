"""capture_class: a class defined in notebook cells becomes a readable, self-contained model.py.

Every test defines its code in cells of a real IPython shell, as a data scientist would, then captures.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from notebook_shell import ipython, run, shell  # noqa: F401 - fixtures are used by name
from pyml_jupyter.capture import CapturedSource, capture_class
from pyml_jupyter.errors import CaptureError

REPO = Path(__file__).resolve().parents[1]


def capture(shell, name: str = "ChurnModel", artifacts=()) -> CapturedSource:
    return capture_class(shell.user_ns[name], shell.user_ns, artifact_names=artifacts)


def define_model(shell, body: str = "return df[['x']] * 2", extra_methods: str = "") -> None:
    """``class ChurnModel(DataFrameModel)`` with ``predict`` returning ``body``, plus ``extra_methods``."""
    run(shell, "from pyml_jupyter.serving.contract import DataFrameModel")
    cell = "class ChurnModel(DataFrameModel):\n    def predict(self, df):\n        " + body + "\n"
    cell += textwrap.indent(textwrap.dedent(extra_methods), "    ")
    run(shell, cell)


def exec_source(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "model.py", "exec"), namespace)
    return namespace


# -- finding the source --------------------------------------------------------------------------------------


def test_class_defined_in_a_cell_is_captured_although_inspect_cannot_find_its_source(shell):
    define_model(shell)
    with pytest.raises((OSError, TypeError)):
        inspect.getsource(shell.user_ns["ChurnModel"])

    captured = capture(shell)

    assert captured.class_name == "ChurnModel"
    assert captured.kind == "dataframe"
    assert "class ChurnModel(DataFrameModel):" in captured.source
    assert "return df[['x']] * 2" in captured.source
    assert "ChurnModel" in exec_source(captured.source)


def test_rerunning_a_cell_with_a_changed_class_captures_the_latest_definition(shell):
    define_model(shell, body="return df * 1")
    define_model(shell, body="return df * 2")

    captured = capture(shell)

    assert "return df * 2" in captured.source
    assert "return df * 1" not in captured.source


def test_an_older_class_object_is_captured_from_its_own_cell(shell):
    define_model(shell, body="return df * 1")
    old_class = shell.user_ns["ChurnModel"]
    define_model(shell, body="return df * 2")

    captured = capture_class(old_class, shell.user_ns)

    assert "return df * 1" in captured.source


def test_class_without_methods_of_its_own_is_found_in_the_input_history(shell):
    define_model(shell)
    run(shell, "class ScaledModel(ChurnModel):\n    factor = 3\n")

    captured = capture(shell, "ScaledModel")

    assert "class ScaledModel(ChurnModel):\n    factor = 3" in captured.source
    assert captured.helpers == ["ChurnModel"]


def test_class_defined_under_a_cell_magic_is_found_in_the_magics_body(shell):
    run(shell, "from pyml_jupyter.serving.contract import DataFrameModel")
    run(shell, "%%time\nclass ChurnModel(DataFrameModel):\n    def predict(self, df):\n        return df * 3\n")

    captured = capture(shell)

    assert "class ChurnModel(DataFrameModel):" in captured.source
    assert "return df * 3" in captured.source


def test_postponed_annotations_stay_postponed(shell):
    # With the __future__ import, annotations may name things that exist only for type checkers.
    run(
        shell,
        """
        from __future__ import annotations
        from pyml_jupyter.serving.contract import DataFrameModel

        class ChurnModel(DataFrameModel):
            def predict(self, df: pd.DataFrame) -> NotImportedHere:
                return df
        """,
    )

    captured = capture(shell)

    assert captured.imports[0] == "from __future__ import annotations"
    assert "ChurnModel" in exec_source(captured.source)


def test_class_defined_in_a_module_file_is_captured_with_that_modules_helpers(tmp_path, monkeypatch):
    (tmp_path / "churn_models.py").write_text(
        textwrap.dedent(
            """
            import os.path as osp

            from pyml_jupyter.serving.contract import DataFrameModel


            def basename(p):
                return osp.basename(p)


            class FileModel(DataFrameModel):
                def predict(self, df):
                    return df.assign(name=df["path"].map(basename))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import churn_models

    captured = capture_class(churn_models.FileModel)  # namespace: the module's globals

    assert captured.helpers == ["basename"]
    assert "import os.path as osp" in captured.imports
    monkeypatch.delitem(sys.modules, "churn_models")


def test_tensor_model_kind_is_reported(shell):
    run(shell, "from pyml_jupyter.serving.contract import TensorModel")
    run(shell, "class Doubler(TensorModel):\n    def predict(self, tensors):\n        return tensors\n")

    assert capture(shell, "Doubler").kind == "tensor"


def test_a_class_that_is_not_a_model_is_rejected(shell):
    run(shell, "class Plain:\n    def predict(self, df):\n        return df\n")

    with pytest.raises(CaptureError, match="DataFrameModel"):
        capture(shell, "Plain")


# -- helpers ----------------------------------------------------------------------------------------------------


def test_helper_function_is_captured_before_the_class(shell):
    run(shell, "def add_ratio(df):\n    return df.assign(ratio=df['x'] / df['y'])\n")
    define_model(shell, body="return add_ratio(df)")

    captured = capture(shell)

    assert captured.helpers == ["add_ratio"]
    assert captured.source.index("def add_ratio(df):") < captured.source.index("class ChurnModel")


def test_helper_calling_another_helper_is_captured_transitively_in_dependency_order(shell):
    run(shell, "def clean(s):\n    return s.strip().lower()\n")
    run(shell, "def normalize_city(s):\n    return clean(s).replace('-', ' ')\n")
    define_model(shell, body="return df.assign(city=df['city'].map(normalize_city))")

    captured = capture(shell)

    assert captured.helpers == ["clean", "normalize_city"]
    source = captured.source
    assert source.index("def clean") < source.index("def normalize_city") < source.index("class ChurnModel")
    assert exec_source(source)["normalize_city"]("  New-York ") == "new york"


def test_helper_class_is_captured(shell):
    run(
        shell,
        """
        class Bucketizer:
            def __init__(self, edges):
                self.edges = edges

            def bucket(self, value):
                return sum(value > edge for edge in self.edges)
        """,
    )
    define_model(shell, body="return df.assign(bucket=df['x'].map(Bucketizer([0, 10]).bucket))")

    captured = capture(shell)

    assert captured.helpers == ["Bucketizer"]
    assert exec_source(captured.source)["Bucketizer"]([0, 10]).bucket(5) == 1


def test_decorated_helper_keeps_its_decorator(shell):
    run(shell, "import functools")
    run(shell, "@functools.lru_cache(maxsize=None)\ndef code_of(city):\n    return hash(city) % 7\n")
    define_model(shell, body="return df.assign(code=df['city'].map(code_of))")

    captured = capture(shell)

    assert "@functools.lru_cache(maxsize=None)\ndef code_of(city):" in captured.source
    assert "import functools" in captured.imports
    assert exec_source(captured.source)["code_of"].cache_info().hits == 0


def test_helper_assigned_as_a_lambda_is_captured_with_its_assignment(shell):
    run(shell, "shout = lambda s: s.upper()\n")
    define_model(shell, body="return df.assign(city=df['city'].map(shout))")

    captured = capture(shell)

    assert "shout = lambda s: s.upper()" in captured.source
    assert exec_source(captured.source)["shout"]("a") == "A"


def test_helper_defined_inside_a_function_is_an_error(shell):
    run(shell, "def make():\n    k = 2\n    def scale(v):\n        return v * k\n    return scale\n\nscale = make()\n")
    define_model(shell, body="return df * scale(1)")

    with pytest.raises(CaptureError, match="`scale`.*inside a function"):
        capture(shell)


# -- imports ----------------------------------------------------------------------------------------------------


def test_module_alias_is_kept(shell):
    run(shell, "import numpy as np")
    define_model(shell, body="return df.assign(log_x=np.log1p(df['x']))")

    captured = capture(shell)

    assert "import numpy as np" in captured.imports


def test_users_from_import_statement_is_reused_for_the_names_the_model_uses(shell):
    run(shell, "from sklearn.preprocessing import MinMaxScaler, StandardScaler")
    define_model(shell, body="return df", extra_methods="def fresh(self):\n    return StandardScaler()\n")

    captured = capture(shell)

    assert "from sklearn.preprocessing import StandardScaler" in captured.imports
    assert "MinMaxScaler" not in captured.source


def test_import_statement_is_reused_from_a_cell_containing_magics(shell):
    run(shell, "import os.path as osp\nhere = %pwd\n")
    define_model(shell, body="return df.assign(name=df['path'].map(osp.basename))")

    captured = capture(shell)

    assert "import os.path as osp" in captured.imports  # not "import posixpath as osp"


def test_library_function_without_an_import_statement_is_imported_from_its_public_module(shell):
    from sklearn.preprocessing import StandardScaler

    define_model(shell, body="return df", extra_methods="def fresh(self):\n    return Scaler()\n")
    shell.user_ns["Scaler"] = StandardScaler  # bound without an import statement in the history

    captured = capture(shell)

    assert "from sklearn.preprocessing import StandardScaler as Scaler" in captured.imports


def test_submodule_used_through_its_package_is_imported(shell):
    run(shell, "import sklearn\nimport sklearn.preprocessing\nimport sklearn")
    define_model(
        shell, body="return df", extra_methods="def fresh(self):\n    return sklearn.preprocessing.StandardScaler()\n"
    )

    captured = capture(shell)

    assert "import sklearn.preprocessing" in captured.imports
    assert exec_source(captured.source)["ChurnModel"]().fresh() is not None


def test_pyml_jupyter_base_class_is_imported_from_its_defining_module(shell):
    run(shell, "from pyml_jupyter import DataFrameModel")
    run(shell, "class ChurnModel(DataFrameModel):\n    def predict(self, df):\n        return df\n")

    captured = capture(shell)

    assert "from pyml_jupyter.serving.contract import DataFrameModel" in captured.imports
    assert "from pyml_jupyter import DataFrameModel" not in captured.source


def test_modules_lists_the_third_party_top_level_modules_but_not_the_standard_library(shell):
    run(shell, "import math, os\nimport numpy as np\nfrom sklearn.preprocessing import StandardScaler")
    define_model(
        shell,
        body="return df.assign(y=np.sqrt(df['x']) * math.pi, cwd=os.getcwd())",
        extra_methods="def fresh(self):\n    return StandardScaler()\n",
    )

    captured = capture(shell)

    assert captured.modules == ["numpy", "sklearn"]
    assert "import math" in captured.imports and "import os" in captured.imports


# -- constants and notebook variables --------------------------------------------------------------------------


def test_small_constant_is_copied_as_an_assignment(shell):
    run(shell, "THRESHOLD = 0.35\nCITIES = ('paris', 'lyon')\n")
    define_model(shell, body="return df.assign(hit=(df['x'] > THRESHOLD) & df['city'].isin(CITIES))")

    captured = capture(shell)

    assert "THRESHOLD = 0.35" in captured.source
    assert "CITIES = ('paris', 'lyon')" in captured.source
    assert exec_source(captured.source)["THRESHOLD"] == 0.35


def test_notebook_dataframe_is_an_error_naming_it_and_suggesting_an_artifact(shell):
    run(shell, "import pandas as pd\nreference = pd.DataFrame({'x': [1.0]})\n")
    define_model(shell, body="return df - reference['x'].mean()")

    with pytest.raises(CaptureError) as error:
        capture(shell)

    message = error.value.message
    assert "`reference`" in message and "DataFrame" in message
    assert 'artifacts={"reference": reference}' in message
    assert 'artifacts["reference"]' in message


def test_every_undeclared_notebook_variable_is_named_in_one_error(shell):
    run(shell, "import pandas as pd\nfrom sklearn.preprocessing import StandardScaler\n")
    run(shell, "scaler = StandardScaler()\nreference = pd.DataFrame({'x': [1.0]})\nweights = {'x': 1.0}\n")
    define_model(shell, body="return scaler.transform(df - reference) * weights['x']")

    with pytest.raises(CaptureError) as error:
        capture(shell)

    assert set(error.value.details["unsupported"]) == {"scaler", "reference", "weights"}
    for name in ("scaler", "reference", "weights"):
        assert f"`{name}`" in error.value.message


def test_undeclared_variable_used_by_a_helper_names_the_helper(shell):
    run(shell, "lookup = {'paris': 1}\ndef city_code(c):\n    return lookup[c]\n")
    define_model(shell, body="return df.assign(code=df['city'].map(city_code))")

    with pytest.raises(CaptureError, match="`lookup`.*used by `city_code`"):
        capture(shell)


def test_artifact_read_as_a_global_is_an_error_pointing_to_the_constructor(shell):
    run(shell, "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()\n")
    define_model(shell, body="return scaler.transform(df)")

    with pytest.raises(CaptureError) as error:
        capture(shell, artifacts=["scaler"])

    assert error.value.details["artifact_globals"] == ["scaler"]
    assert 'artifacts["scaler"]' in error.value.message and "constructor" in error.value.message


def test_name_defined_nowhere_is_an_error(shell):
    define_model(shell, body="return undefined_helper(df)")

    with pytest.raises(CaptureError, match="`undefined_helper`.*not defined in the notebook"):
        capture(shell)


def test_parameters_locals_and_comprehension_variables_are_not_mistaken_for_globals(shell):
    # Notebook variables with the same names exist and would be errors if the capture thought they were used.
    run(shell, "import pandas as pd\ndf = pd.DataFrame()\ncols = pd.DataFrame()\nc = pd.DataFrame()\nout = {}\n")
    define_model(
        shell,
        body="cols = [c for c in df.columns if c != 'id']\n        out = df[cols]\n        return out",
    )

    captured = capture(shell)

    assert captured.helpers == []
    assert "cols =" not in captured.source.split("class ChurnModel")[0]


def test_attributes_of_self_are_not_mistaken_for_globals(shell):
    run(shell, "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()\n")
    define_model(
        shell,
        body="return self.scaler.transform(df)",
        extra_methods='def __init__(self, artifacts):\n    self.scaler = artifacts["scaler"]\n',
    )

    captured = capture(shell, artifacts=["scaler"])

    assert 'self.scaler = artifacts["scaler"]' in captured.source


# -- the result runs on its own ---------------------------------------------------------------------------------


def test_captured_source_runs_in_a_fresh_interpreter(shell, tmp_path):
    run(shell, "import numpy as np\nimport pandas as pd\nfrom sklearn.preprocessing import StandardScaler\n")
    run(shell, "OFFSET = 1.5\n\ndef shifted(values):\n    return values + OFFSET\n")
    run(
        shell,
        """
        from pyml_jupyter.serving.contract import DataFrameModel

        class ChurnModel(DataFrameModel):
            def __init__(self, artifacts):
                self.scaler = artifacts["scaler"]

            def predict(self, df):
                scaled = self.scaler.transform(df[["x"]].to_numpy())
                return pd.DataFrame({"score": shifted(np.round(scaled[:, 0], 3))}, index=df.index)
        """,
    )
    model_py = tmp_path / "model.py"
    model_py.write_text(capture(shell, artifacts=["scaler"]).source)
    script = textwrap.dedent(
        """
        import json, sys
        namespace = {}
        exec(compile(open(sys.argv[1]).read(), "model.py", "exec"), namespace)
        import pandas as pd
        from sklearn.preprocessing import StandardScaler
        scaler = StandardScaler().fit([[0.0], [2.0]])
        model = namespace["ChurnModel"]({"scaler": scaler})
        print(json.dumps(model.predict(pd.DataFrame({"x": [0.0, 2.0]}))["score"].tolist()))
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script, str(model_py)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0.5, 2.5]
