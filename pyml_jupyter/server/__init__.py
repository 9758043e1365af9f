"""The jupyter_server extension behind the JupyterLab sidebar: REST handlers under ``/pyml/``.

Installing the package enables it: ``jupyter-config/server-config/pyml_jupyter.json`` lands in
``etc/jupyter/jupyter_server_config.d/`` and sets ``jpserver_extensions = {"pyml_jupyter": true}``; the
server then asks ``pyml_jupyter._jupyter_server_extension_points()``, which points here. Tornado is imported
only when the server loads the extension, never by ``import pyml_jupyter``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["_load_jupyter_server_extension", "jobs_state_file"]


def jobs_state_file(server_app) -> Path:
    """Where the server keeps its jobs across restarts: ``PYML_JOBS_FILE``, else a file in Jupyter's data
    directory named for the server's root directory (two servers on two folders keep separate files)."""
    configured = os.environ.get("PYML_JOBS_FILE")
    if configured:
        return Path(configured)
    root = hashlib.sha256(str(Path(server_app.root_dir).resolve()).encode()).hexdigest()[:12]
    return Path(server_app.data_dir) / "pyml_jupyter" / f"jobs-{root}.json"


def _load_jupyter_server_extension(server_app) -> None:
    """Create the job manager and register the ``/pyml/`` handlers on the server's web app."""
    from ..jobs import JobManager
    from .handlers import HINTS, setup_handlers

    import logging

    from ..uris import RedactingFilter

    # The server log never shows a URI's credentials, whoever logs (handlers, jobs, MLflow, tornado).
    for handler in {*server_app.log.handlers, *logging.getLogger().handlers}:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    web_app = server_app.web_app
    web_app.settings.setdefault("pyml_jobs", JobManager(state_file=jobs_state_file(server_app), hints=HINTS))
    setup_handlers(web_app)
    server_app.log.info("pyml_jupyter: registered the /pyml/ REST handlers")


# The notebook-server era name, still looked up by some launchers.
load_jupyter_server_extension = _load_jupyter_server_extension
