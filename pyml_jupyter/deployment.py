"""One deployment: a handle on a model's container and a Python client of the served model.

:meth:`Deployment.predict` sends a DataFrame or named arrays to ``POST /invocations`` (MLflow's scoring protocol)
and returns the predictions with the model's output dtypes, decoded by the same schema module the server
encodes them with. The engine operations that start, find and stop deployments are in
:mod:`pyml_jupyter.deployments`.
"""

from __future__ import annotations

import html
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import HINT_DEPLOYMENTS, DeployError, InvalidInput, NotFound
from .images import labels as L
from .images.builder import docker_client
from .images.context import CONTAINER_PORT, GRPC_CONTAINER_PORT

__all__ = ["Deployment", "log_tail_html"]

_PORT_KEY = f"{CONTAINER_PORT}/tcp"
_GRPC_PORT_KEY = f"{GRPC_CONTAINER_PORT}/tcp"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Local traffic (readiness pings, test predictions) never goes through http_proxy: behind a corporate proxy
# without no_proxy, the proxy cannot reach this machine's loopback, and sample rows must not be sent to it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _host_port(bindings: list | None) -> str:
    """The host port of a published container port (the loopback binding first), or ``""``."""
    bindings = bindings or []
    binding = next((p for p in bindings if p.get("HostIp") in ("127.0.0.1", "0.0.0.0", "")),
                   bindings[0] if bindings else None)
    return (binding or {}).get("HostPort") or ""


def _request(url: str, *, data: bytes | None = None, timeout: float = 60.0,
             headers: dict | None = None, token: str = "") -> tuple[int, bytes]:
    """``(status, body)`` of a GET (or a JSON POST when ``data`` is given); HTTP errors are returned too. The
    response's headers are copied into ``headers`` (lower-case names) when it is given. A ``token`` is sent as
    ``Authorization: Bearer``."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    opener = _DIRECT if urllib.parse.urlsplit(url).hostname in LOCAL_HOSTS else urllib.request.build_opener()
    try:
        with opener.open(req, timeout=timeout) as resp:
            if headers is not None:
                headers.update((k.lower(), v) for k, v in resp.headers.items())
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


_TIMING_RE = re.compile(r"(\w+);dur=([0-9.]+)")


def _server_timing(header: str) -> dict[str, float]:
    """The phases of a ``Server-Timing`` header (``parse;dur=0.041, predict;dur=1.9``) as ``{"parse_ms": ...}``."""
    return {f"{phase}_ms": float(ms) for phase, ms in _TIMING_RE.findall(header)}


STOPPED = ("exited", "dead")
"""Container states in which a deployment no longer serves: listed with their exit code and last log lines."""
STOPPED_LOG_LINES = 10


@dataclass
class Deployment:
    """A model version running in a container, and a client to it."""

    name: str
    version: int
    run_id: str
    container_id: str
    url: str
    status: str
    image: str
    image_id: str = ""
    digest: str = ""
    container_name: str = ""
    store: str = ""
    grpc_target: str = ""  # host:port of the Open Inference Protocol over gRPC (tritonclient.grpc's url)
    token: str = field(default="", repr=False, compare=False)  # the bearer token (PYML_TOKEN), never shown
    exit_code: int | None = None  # a stopped container's: how the server ended
    log_tail: str = ""  # a stopped container's last log lines: why it ended
    _client: Any = field(default=None, repr=False, compare=False)
    _metadata: dict | None = field(default=None, repr=False, compare=False)
    last_timing: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_container(cls, container, client=None) -> "Deployment":
        attrs = container.attrs
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        published = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
        port, grpc_port = _host_port(published.get(_PORT_KEY)), _host_port(published.get(_GRPC_PORT_KEY))
        url = f"http://127.0.0.1:{port}" if port else ""
        image = labels.get("pyml.image") or (attrs.get("Config") or {}).get("Image", "")
        env = (attrs.get("Config") or {}).get("Env") or []
        token = next((item[len("PYML_TOKEN="):] for item in env if item.startswith("PYML_TOKEN=")), "")
        stopped = container.status in STOPPED
        return cls(name=labels.get(L.MODEL, ""), version=L.label_version(labels),
                   run_id=labels.get("pyml.run_id", ""), container_id=container.id, url=url,
                   status=container.status, image=image, image_id=attrs.get("Image", ""),
                   digest=labels.get("pyml.digest", ""), container_name=container.name,
                   store=labels.get("pyml.store", ""),
                   grpc_target=f"127.0.0.1:{grpc_port}" if grpc_port else "", token=token, _client=client,
                   exit_code=(attrs.get("State") or {}).get("ExitCode") if stopped else None,
                   log_tail=_tail(container, STOPPED_LOG_LINES) if stopped else "")

    def to_dict(self) -> dict:
        """A JSON-ready form (for the panel and the CLI)."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "container_id": self.container_id,
                "container_name": self.container_name, "url": self.url, "status": self.status, "image": self.image,
                "image_id": self.image_id, "digest": self.digest, "grpc_target": self.grpc_target,
                "store": self.store, "exit_code": self.exit_code, "log_tail": self.log_tail}

    @property
    def state(self) -> str:
        """The status, with the exit code of a stopped container: ``running``, ``exited (137)``."""
        return self.status if self.exit_code is None else f"{self.status} ({self.exit_code})"

    # ----------------------------------------------------------------------------------- engine side
    def _engine(self):
        if self._client is None:
            self._client = docker_client(error=DeployError)
        return self._client

    def _container(self):
        import docker

        try:
            return self._engine().containers.get(self.container_id)
        except docker.errors.NotFound:
            raise NotFound(f"The container of {self.name}/{self.version} ({self.container_id[:12]}) no longer "
                           "exists: deploy it again.") from None

    def refresh(self) -> "Deployment":
        """Update :attr:`status` (and the URL) from the engine."""
        container = self._container()
        container.reload()
        fresh = Deployment.from_container(container, self._client)
        self.status, self.url = fresh.status, fresh.url or self.url
        self.grpc_target = fresh.grpc_target or self.grpc_target
        return self

    def logs(self, tail: int = 100) -> str:
        """The last ``tail`` lines the server wrote (stdout and stderr)."""
        return self._container().logs(tail=tail).decode("utf-8", "replace")

    def error_log(self, error_id: str, tail: int = 2000) -> str:
        """The server's log lines for one error (a 500's ``error_id``): its message, exception and traceback,
        each tagged ``[error_id=...]`` by the server; "" when the last ``tail`` lines hold none."""
        tag = f"[error_id={error_id}]"
        try:
            lines = self.logs(tail=tail).splitlines()
        except Exception:  # noqa: BLE001 - the log is a courtesy: a vanished container has none
            return ""
        return "\n".join(line.split(tag, 1)[1].strip(" ") for line in lines if tag in line)

    def stop(self) -> list["Deployment"]:
        """Stop and remove this deployment's container."""
        from .deployments import stop_deployment  # the engine side imports this module

        return stop_deployment(self.name, self.version, client=self._client)

    # ----------------------------------------------------------------------------------- HTTP side
    def ping(self, timeout: float = 2.0) -> bool:
        """True if ``GET /ping`` answers 200."""
        if not self.url:
            return False
        try:
            return _request(self.url + "/ping", timeout=timeout)[0] == 200
        except OSError:
            return False

    def metadata(self) -> dict:
        """``GET /metadata``: name, version, run id, kind and the input and output schemas."""
        if self._metadata is None:
            status, body = self._call("/metadata")
            self._metadata = json.loads(body)
        return self._metadata

    def _call(self, path: str, data: bytes | None = None, timeout: float = 60.0,
              headers: dict | None = None) -> tuple[int, bytes]:
        if not self.url:
            raise DeployError(f"Deployment {self.name}/{self.version} has no published port (status "
                              f"{self.status}).")
        try:
            status, body = _request(self.url + path, data=data, timeout=timeout, headers=headers, token=self.token)
        except OSError as exc:
            raise DeployError(f"Deployment {self.name}/{self.version} is not answering at {self.url} ({exc}).",
                              hint=HINT_DEPLOYMENTS) from exc
        if status >= 400:
            try:
                answer = json.loads(body)
            except ValueError:
                answer = {"message": body.decode("utf-8", "replace")[:2000]}
            code = answer.get("error_code") or answer.get("error") or "error"
            if status == 422 and isinstance(answer.get("problems"), list):  # the input, not the deployment
                raise InvalidInput(f"{self.name}/{self.version} rejected the input: {answer.get('message', code)}",
                                   answer["problems"])
            message = f"{self.name}/{self.version} answered {status} {code}: {answer.get('message', answer)}"
            log = self.error_log(str(answer["error_id"])) if status >= 500 and answer.get("error_id") else ""
            if log:  # the server keeps the model's exception to its log: show it to the notebook's user
                message += f"\nThe container's log for error_id {answer['error_id']}:\n{log}"
            raise DeployError(message, details={"status": status, "response": answer, "log": log})
        return status, body

    def predict(self, data: Any, *, timing: bool = False, timeout: float = 60.0) -> Any:
        """Predict with the served model, like ``LoadedModel.predict`` does in the notebook.

        ``data`` is a DataFrame (sent as ``dataframe_split``; the result is a DataFrame with the output columns
        and dtypes and the input's index) or a mapping of arrays (sent as ``inputs``; the result is a dict of
        arrays). Input the model's schema rejects (the server's 422) raises
        :class:`~pyml_jupyter.errors.InvalidInput` with its problems; any other 4xx/5xx answer
        :class:`~pyml_jupyter.errors.DeployError` with the server's message.
        With ``timing=True`` the server's own phase times for this request (parse, validate, queue, predict,
        serialize, from its ``Server-Timing`` header) are recorded with the round trip in
        ``result.attrs["pyml_timing"]`` (DataFrames) and in :attr:`last_timing`.
        """
        import pandas as pd

        from .serving.schema import (
            dataframe_from_json,
            dataframe_to_json,
            schema_from_dict,
            tensors_from_json,
            tensors_to_json,
        )

        frame = data if isinstance(data, pd.DataFrame) else None
        if frame is not None:
            payload = {"dataframe_split": dataframe_to_json(frame)}
        elif isinstance(data, Mapping):
            payload = {"inputs": tensors_to_json(data)}
        else:
            raise DeployError(f"predict() takes a pandas DataFrame or a dict of numpy arrays, not "
                              f"{type(data).__name__}.")
        body = json.dumps(payload, allow_nan=False).encode()
        try:
            output_schema = schema_from_dict(self.metadata()["output_schema"])
        except (DeployError, KeyError, ValueError, TypeError):
            output_schema = None
        headers: dict = {}
        started = time.perf_counter()
        _, answer = self._call("/invocations", body, timeout=timeout, headers=headers)
        round_trip = (time.perf_counter() - started) * 1e3
        predictions = json.loads(answer)["predictions"]
        self.last_timing = {"round_trip_ms": round_trip}
        if timing:
            self.last_timing.update(_server_timing(headers.get("server-timing", "")))
        if frame is not None:
            if output_schema is not None and output_schema.kind == "dataframe":
                result = dataframe_from_json(predictions, output_schema)
            else:
                result = pd.DataFrame.from_records(predictions)
            if len(result) == len(frame):
                result.index = frame.index
            result.attrs["pyml_timing"] = dict(self.last_timing)
            return result
        schema = output_schema if output_schema is not None and output_schema.kind == "tensor" else None
        return tensors_from_json(predictions, schema)

    # ----------------------------------------------------------------------------------- display
    def __repr__(self) -> str:
        text = (f"<Deployment {self.name}/{self.version} {self.state} at {self.url or '-'} "
                f"(gRPC {self.grpc_target or '-'}, container {self.container_id[:12]}, image {self.image})>")
        return text + (f"\nlast log lines:\n{self.log_tail}" if self.log_tail else "")

    def _repr_html_(self) -> str:
        colour = {"running": "#1a7f37", "exited": "#cf222e", "dead": "#cf222e"}.get(self.status, "#9a6700")
        rows = [("model", f"{self.name}/{self.version}"), ("url", self.url or "-"),
                ("gRPC", self.grpc_target or "-"), ("container",
                f"{self.container_name or ''} {self.container_id[:12]}"), ("image", self.image),
                ("run id", self.run_id or "-"), ("digest", self.digest[:19] + "…" if self.digest else "-")]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td>"
                       "</tr>" for k, v in rows)
        return (f"<div class='pyml-deployment'><b>Deployment</b> <span style='color:{colour}'>● "
                f"{html.escape(self.state)}</span><table>{body}</table>{log_tail_html(self.log_tail)}</div>")


def log_tail_html(log_tail: str) -> str:
    """A stopped container's last log lines, as a block under its row."""
    return f"<pre style='margin:0.2em 0 0.5em 1em'>{html.escape(log_tail)}</pre>" if log_tail else ""


def _tail(container, lines: int = 40) -> str:
    try:
        return container.logs(tail=lines).decode("utf-8", "replace").rstrip()
    except Exception:  # noqa: BLE001 - the container may be gone already
        return "(no log: the container is gone)"
