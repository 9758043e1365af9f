"""REST handlers for the JupyterLab sidebar. Each verb parses its input, makes one call into
:mod:`pyml_jupyter.api` and writes the JSON result; errors are mapped once, in :class:`PymlHandler`.

Routes (all under ``{base_url}pyml/``, all authenticated and authorized (resource ``pyml``), XSRF-checked for
non-GET by ``APIHandler``)::

    GET    models                          registered models and their versions     -> {"models": [...]}
    POST   builds        {ref, base_image?}  build the image in a job                  -> 202 job
    POST   deployments   {ref, port?, memory?, pids_limit?, allowed_hosts?, token?, workers?}
                                         build if needed, run the container (job)  -> 202 job
    GET    deployments                     running model containers                 -> {"deployments": [...]}
    DELETE deployments/NAME[/VERSION]      stop containers                          -> {"stopped": [...]}
    GET    deployments/NAME/VERSION/logs?tail=N   the container's recent log lines  -> {"lines": [...]}
    GET    jobs                            known jobs, newest first                 -> {"jobs": [...]}
    GET    jobs/ID                         one job with its progress snapshot       -> job
    POST   tests         {ref, target?}      parity test in a child process (job)       -> 202 job (result: report)
    POST   aliases       {ref, alias?, compare?, targets?}  promote behind the gates in a child process (job) -> 202 job
    POST   pushes        {ref, registry}     push the version's image (job)            -> 202 job
    GET    config                          MLflow UI link, tracking URI, version

Anything that blocks (MLflow queries, Docker calls) runs in a worker thread so the Tornado loop keeps serving;
builds, deployments and tests run as jobs (:mod:`pyml_jupyter.jobs`) that the panel polls. A test runs in a
child process (:mod:`pyml_jupyter.worker`): the server never loads a user's model nor starts a JVM.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import tornado
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import api, worker
from ..container_security import ContainerSettings
from ..errors import HINT_BUILD, HINT_DEPLOYMENTS, HINT_PUSH, HINT_REGISTER, PymlError
from ..jobs import Job, JobManager, error_dict
from ..uris import redact

NAME = r"(?P<name>[^/]+)"
VERSION = r"(?P<version>[^/]+)"

# What the panel's user can do next, by the core error's hint key (errors.with_hint).
HINTS = {
    HINT_REGISTER: "Register it from a notebook with %pyml_register, then refresh the panel.",
    HINT_BUILD: "Deploy it from the panel: Deploy builds the image first.",
    HINT_DEPLOYMENTS: "Refresh the panel to see which deployments run.",
    HINT_PUSH: "Push it from a notebook with %pyml_push NAME/VERSION --registry HOST[:PORT].",
}


class BadRequest(PymlError):
    """The request body is not what the route expects."""

    code = "bad_request"


AUTH_RESOURCE = "pyml"


class PymlHandler(APIHandler):
    """Base: the job manager, JSON helpers and the one place where exceptions become HTTP errors.

    Every verb is ``@authenticated`` and ``@authorized``: jupyter_server's Authorizer decides, for the resource
    ``pyml``, whether the user may ``read`` (GET) or ``write`` (POST, DELETE); writes are XSRF-checked."""

    auth_resource = AUTH_RESOURCE

    @property
    def jobs(self) -> JobManager:
        return self.settings["pyml_jobs"]

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    def json_body(self) -> dict[str, Any]:
        body = self.get_json_body()  # a malformed body raises HTTPError(400)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise BadRequest("Send a JSON object as the request body, e.g. {\"ref\": \"NAME/VERSION\"}.")
        return body

    def body_ref(self, body: dict[str, Any]) -> str:
        """The model reference (``NAME``, ``NAME/VERSION``, ``NAME@ALIAS``) from the body, parsed by the core."""
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise BadRequest('Say which model: send {"ref": "NAME"} or {"ref": "NAME/VERSION"}.')
        api.parse_ref(ref)  # raises InvalidName (400) before the name reaches MLflow, Docker or a path
        return ref

    async def submit(self, kind: str, ref: str, fn) -> Job:
        """Start ``fn(resolved_ref, progress)`` as a job keyed by the version ``ref`` resolves to now, so that
        ``churn``, ``churn@champion`` and ``churn/3`` (when they mean version 3) are one job, not three."""
        resolved = await in_thread(api.resolve_ref, ref)  # 404 now for an unknown model, version or alias
        exact = api.ModelRef(resolved.name, resolved.version)
        return self.jobs.submit(kind, str(exact), lambda progress: fn(exact, progress),
                                key=(kind, api.store_id(), resolved.name, resolved.version))

    def write_job(self, job: Job) -> None:
        self.set_header("Location", url_path_join(self.base_url, "pyml", "jobs", job.id))
        self.write_json(job.to_dict(), status=202)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is JSON ``{"error": code, "message": text}``: PymlError keeps its own status."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PymlError):
            self.set_status(exc.status)
            payload = error_dict(exc, HINTS)
        elif isinstance(exc, tornado.web.HTTPError) or exc is None:
            message = redact((exc.log_message if exc is not None else None) or _phrase(status_code))
            payload = {"error": f"http_{status_code}", "message": message}
        else:
            payload = error_dict(exc)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, PymlError):  # the user's mistake, not the server's: no traceback
            self.log.warning("%s %s -> %s: %s", self.request.method, self.request.uri, value.status, value)
        else:
            super().log_exception(typ, value, tb)


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"


async def in_thread(fn, *args, **kwargs):
    """Run blocking core work off the Tornado loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class ModelsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self):
        models = await in_thread(api.list_models)
        self.write_json({"models": [model.to_dict() for model in models]})


class BuildsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        ref, base_image = self.body_ref(body), body.get("base_image")
        if base_image is not None and not isinstance(base_image, str):
            raise BadRequest(f"base_image must be an image reference such as 'python:3.11-slim', not {base_image!r}.")
        self.write_job(await self.submit("build", ref, lambda r, p: api.build(r, base_image=base_image, progress=p)))


class DeploymentsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self):
        deployments = await in_thread(api.deployments)
        self.write_json({"deployments": [d.to_dict() for d in deployments]})

    @tornado.web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        ref, port = self.body_ref(body), body.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise BadRequest(f"port must be an integer between 1 and 65535, not {port!r}.")
        workers = body.get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise BadRequest(f"workers must be a positive integer, not {workers!r}.")
        limits = {key: body.get(key) for key in ("memory", "pids_limit", "allowed_hosts", "token")}
        ContainerSettings.build(**limits)  # a bad limit is a 400 now, not a failed job later
        self.write_job(await self.submit("deploy", ref, lambda r, p: api.deploy(r, port=port, progress=p,
                                                                               workers=workers, **limits)))


class DeploymentHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str, version: str | None = None):
        ref = name if version is None else f"{name}/{version}"
        api.parse_ref(ref)
        stopped = await in_thread(api.stop, ref)
        self.write_json({"stopped": [d.to_dict() for d in stopped]})


class DeploymentLogsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, name: str, version: str):
        ref = f"{name}/{version}"
        api.parse_ref(ref)
        tail = self.get_query_argument("tail", "100")
        if not tail.isdigit() or not 0 < int(tail) <= 10000:
            raise BadRequest(f"tail must be a number of lines between 1 and 10000, not {tail!r}.")
        self.write_json({"lines": await in_thread(api.logs, ref, int(tail))})


class JobsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    def get(self):
        self.write_json({"jobs": [job.to_dict(log_tail=20) for job in self.jobs.list()]})


class JobHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, job_id: str):
        self.write_json(self.jobs.get(job_id).to_dict())


class TestsHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        ref, target = self.body_ref(body), body.get("target", "all")
        if target not in api.TEST_TARGETS:
            raise BadRequest(f"target must be one of {', '.join(map(repr, api.TEST_TARGETS))}, not {target!r}.")
        # keyed by the version the ref resolves to now (an unknown one is a 404 now, not a failed job later)
        job = await self.submit("test", ref, lambda exact, p: worker.run_cli(["test", str(exact), "--target",
                                                                              target], p))
        self.write_job(job)


def optional_text(body: dict[str, Any], key: str) -> str | None:
    """An optional string field of the body."""
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise BadRequest(f"{key} must be a non-empty string, not {value!r}.")
    return value


class AliasesHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self):
        from ..promotion import validate_alias, validate_targets

        body = self.json_body()
        ref, alias, compare = self.body_ref(body), optional_text(body, "alias") or "champion", \
            optional_text(body, "compare")
        validate_alias(alias)
        try:
            targets = validate_targets(optional_text(body, "targets") or "all")
        except PymlError as exc:
            raise BadRequest(exc.message) from None
        extra = ["--compare", compare] if compare else []
        extra += ["--targets", targets]
        # in a child process, like a test: the parity gate predicts with the model, never in the server
        self.write_job(await self.submit("promote", ref, lambda r, p: worker.run_cli(
            ["promote", str(r), "--alias", alias, *extra], p)))


class PushesHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self):
        from ..registry import validate_registry

        body = self.json_body()
        ref, registry = self.body_ref(body), optional_text(body, "registry")
        if registry is None:
            raise BadRequest('Say where to push: send {"ref": "NAME/VERSION", "registry": "HOST[:PORT]"}.')
        validate_registry(registry)
        self.write_job(await self.submit("push", ref, lambda r, p: api.push(r, registry, progress=p)))


class ConfigHandler(PymlHandler):
    @tornado.web.authenticated
    @authorized
    def get(self):
        self.write_json(api.config())


def setup_handlers(web_app) -> None:
    base_url = web_app.settings["base_url"]

    def route(*parts: str) -> str:
        return url_path_join(base_url, "pyml", *parts)

    web_app.add_handlers(
        ".*$",
        [
            (route("models"), ModelsHandler),
            (route("builds"), BuildsHandler),
            (route("deployments"), DeploymentsHandler),
            (route("deployments", NAME), DeploymentHandler),
            (route("deployments", NAME, VERSION), DeploymentHandler),
            (route("deployments", NAME, VERSION, "logs"), DeploymentLogsHandler),
            (route("jobs"), JobsHandler),
            (route("jobs", r"(?P<job_id>[^/]+)"), JobHandler),
            (route("tests"), TestsHandler),
            (route("aliases"), AliasesHandler),
            (route("pushes"), PushesHandler),
            (route("config"), ConfigHandler),
        ],
    )
