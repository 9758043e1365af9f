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
