"""A real IPython shell standing in for a notebook (imported by test_checks, test_register and test_magics).

Cells run with ``store_history=True``, as Jupyter runs them, so the capture finds their text the way it does
in a kernel. The ``shell`` fixture gives each test an empty namespace and input history.
"""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture(scope="session")
def ipython():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # keep the user's IPython history out of the tests
    return InteractiveShell.instance(config=config)


@pytest.fixture
def shell(ipython):
    """A fresh notebook: empty namespace and input history."""
    ipython.reset(new_session=False)
    yield ipython
    ipython.reset(new_session=False)


def run(shell, code: str):
    """Run one cell; an exception in it fails the test with its own traceback."""
    result = shell.run_cell(textwrap.dedent(code), store_history=True)
    result.raise_error()
    return result.result


# A churn model as a data scientist writes it: generated data, a helper, two trained artifacts, the class.
CHURN_NOTEBOOK = """
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pyml_jupyter import DataFrameModel, register

    rng = np.random.default_rng(0)
    customers = pd.DataFrame({
        "tenure_months": rng.integers(1, 72, 300),
        "monthly_charges": rng.uniform(20, 120, 300).round(2),
        "contract": rng.choice(["monthly", "yearly", "two_year"], 300),
    })
    churned = ((customers["contract"] == "monthly") & (customers["tenure_months"] < 18)).astype(int)


    def features(df):
        is_monthly = (df["contract"] == "monthly").to_numpy(dtype=float)
        return np.column_stack([df["tenure_months"], df["monthly_charges"], is_monthly]).astype(float)


    scaler = StandardScaler().fit(features(customers))
    clf = LogisticRegression().fit(scaler.transform(features(customers)), churned)


    class ChurnModel(DataFrameModel):
        def __init__(self, artifacts):
            self.scaler = artifacts["scaler"]
            self.clf = artifacts["clf"]

        def predict(self, df):
            p = self.clf.predict_proba(self.scaler.transform(features(df)))[:, 1]
            return pd.DataFrame({"churn_probability": p, "churn": p > 0.5}, index=df.index)


    sample = customers.head(8)
"""
