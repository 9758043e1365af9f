"""A stable local port per alias: ``deploy("churn@champion")`` serves on one URL whichever version the alias
names, and a redeploy after the alias moved swaps versions with no failed request.

The port belongs to a small route container, ``pyml-NAME-at-ALIAS`` (the base Python image, host network,
running :mod:`pyml_jupyter.route_proxy`, an HTTP reverse proxy, on ``127.0.0.1:PORT``), which sends each
request to the published port of the version's own container. A swap is: the new version's container starts
and answers ``/ping`` (``deploy``); the route's target file is rewritten (the next request, even on a
connection a client keeps open, goes to the new version); the swap waits until the proxy's state file says it
follows the new target and has no request in flight to the old one (bounded by ``_DRAIN_TIMEOUT`` for a request
that never ends); then the old container is stopped with SIGTERM, which lets its server finish what it holds.
A request that meets a stopping server that refused or reset it unread is sent again by the proxy (see
:mod:`.route_proxy`). The proxy forwards HTTP/1.1 only, not gRPC.
Like deployments, routes are found again by their labels.
"""

from __future__ import annotations

import importlib.util
import io
import json
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .images.context import default_base_image, sanitize_name
from .progress import Progress

__all__ = ["Route", "find_route", "route_to", "remove_routes", "serve_alias", "stop_alias", "drain_and_stop",
           "wait_drained", "ROUTE_LABEL"]

ROUTE_LABEL = "pyml.route"
_DIR = "/pyml-route"
_STATE = "/tmp/pyml-route.state"  # written by the proxy: {"target": port, "open": {port: requests in flight}}
_DRAIN_TIMEOUT = 30.0  # longest wait for the old version's requests in flight to end
# The proxy's libraries (pure Python), copied from this environment into the route container beside it.
PROXY_LIBRARIES = ("uvicorn", "h11", "click", "httpx", "httpcore", "anyio", "idna", "certifi", "typing_extensions")


@dataclass
class Route:
    """An alias's stable URL and the version its traffic goes to."""

    name: str
    alias: str
    port: int
    version: str
    container_id: str
    previous: str = ""
    previous_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_dict(self) -> dict:
        return {"name": self.name, "alias": self.alias, "url": self.url, "version": self.version,
                "previous": self.previous or None, "container_id": self.container_id}


def _container_name(name: str, alias: str) -> str:
    return f"pyml-{sanitize_name(name)}-at-{alias.lower()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _archive(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read(container, path: str) -> str:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read().decode() if member else ""


def _target(container) -> tuple[int, str]:
    """(port, version) the route sends new connections to."""
    parts = _read(container, f"{_DIR}/target").split()
    return (int(parts[0]) if parts and parts[0].isdigit() else 0), (parts[1] if len(parts) > 1 else "")


def _target_version(container) -> str:
    return _target(container)[1]


def _proxy_state(container) -> dict | None:
    """The proxy's state file, or None while it cannot be read."""
    import docker

    try:
        return json.loads(_read(container, _STATE))
    except (docker.errors.APIError, ValueError, IndexError, tarfile.TarError):
        return None


def _routes(client, name: str, alias: str | None = None) -> list:
    filters = [f"{ROUTE_LABEL}=true", f"pyml.model={sanitize_name(name)}"]
    if alias is not None:
        filters.append(f"pyml.alias={alias}")
    return client.containers.list(all=True, filters={"label": filters})


def find_route(name: str, alias: str, client=None) -> Route | None:
    """The route of ``NAME@ALIAS`` on this engine, or None."""
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    for container in _routes(client, name, alias):
        if container.status == "running":
            return Route(name, alias, int(container.labels["pyml.route.port"]), _target_version(container),
                         container.id)
    return None


def _wait_listening(port: int, container, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            container.reload()
            if container.status in ("exited", "dead"):
                break
            time.sleep(0.05)
    log = container.logs(tail=20).decode("utf-8", "replace")
    container.remove(force=True)
    raise DeployError(f"the route {container.name} did not listen on 127.0.0.1:{port}: {log or 'no log'}")


def proxy_files() -> dict[str, bytes]:
    """The proxy script and its libraries' Python sources, by path inside the route container.

    Only ``.py`` files outside test folders go in: no certificate bundle (certifi's) or other data from this
    environment."""
    files = {f"{_DIR.lstrip('/')}/route_proxy.py": (Path(__file__).parent / "route_proxy.py").read_bytes()}
    for name in PROXY_LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise DeployError(f"the alias route needs the Python package {name!r}: pip install {name}")
        origin = Path(spec.origin)
        root = origin.parent if spec.submodule_search_locations else origin
        paths = [p for p in root.rglob("*.py") if not {"__pycache__", "tests"} & set(p.relative_to(root).parts)] \
            if root.is_dir() else [root]
        for path in paths:
            files[f"{_DIR.lstrip('/')}/lib/{path.relative_to(root.parent).as_posix()}"] = path.read_bytes()
    return files


def _start(client, name: str, alias: str, port: int | None, target: str, progress: Progress):
    import docker

    image = default_base_image()
    port = port or _free_port()
    labels = {ROUTE_LABEL: "true", "pyml.model": sanitize_name(name), "pyml.alias": alias,
              "pyml.route.port": str(port)}
    try:
        container = client.containers.create(
            image, name=_container_name(name, alias), labels=labels, network_mode="host", user="65534:65534",
            command=["python", f"{_DIR}/route_proxy.py", "127.0.0.1", str(port), f"{_DIR}/target", _STATE],
            environment={"PYTHONPATH": f"{_DIR}/lib", "PYTHONDONTWRITEBYTECODE": "1"},
            cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="256m", pids_limit=64,
            restart_policy={"Name": "unless-stopped"}, working_dir="/")
    except docker.errors.ImageNotFound:
        raise DeployError(f"the route of {name}@{alias} runs on {image}, which is not on this engine: pull or "
                          "build it first (the model images use it too).") from None
    except docker.errors.APIError as exc:
        raise DeployError(f"could not create the route {_container_name(name, alias)}: {exc.explanation or exc}"
                          ) from None
    container.put_archive("/", _archive({**proxy_files(), f"{_DIR.lstrip('/')}/target": target}))
    container.start()
    _wait_listening(port, container)
    progress.log(f"route {name}@{alias} listens on 127.0.0.1:{port}")
    return container, port


def route_to(name: str, alias: str, port: int, version: str, *, route_port: int | None = None,
             progress: Progress | None = None, client=None) -> Route:
    """Send ``NAME@ALIAS``'s stable port to a version's published ``port`` (creating the route on first use);
    ``Route.previous`` is the version it served before ("" if none or the same)."""
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    progress = progress or Progress(f"route {name}@{alias}")
    target = f"{port} {version}\n"
    running = [c for c in _routes(client, name, alias) if c.status == "running"]
    for stale in [c for c in _routes(client, name, alias) if c.status != "running"]:
        stale.remove(force=True)
    if not running:
        container, stable = _start(client, name, alias, route_port, target, progress)
        return Route(name, alias, stable, version, container.id)
    container = running[0]
    previous_port, previous = _target(container)
    container.put_archive("/", _archive({f"{_DIR.lstrip('/')}/target": target}))
    progress.log(f"route {name}@{alias}: new connections go to v{version}" +
                 (f" (was v{previous})" if previous and previous != version else ""))
    moved = previous != version
    return Route(name, alias, int(container.labels["pyml.route.port"]), version, container.id,
                 previous=previous if moved else "", previous_port=previous_port if moved else 0)


def wait_drained(route: Route, client=None, timeout: float = _DRAIN_TIMEOUT) -> bool:
    """Wait until the route's proxy follows its new target and has no request in flight to the port it served
    before; False when ``timeout`` ran out first (or the proxy keeps no state)."""
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    container = client.containers.get(route.container_id)
    new_port = int(_read(container, f"{_DIR}/target").split()[0])
    start = time.monotonic()
    while time.monotonic() < start + timeout:
        state = _proxy_state(container)
        if state is None and time.monotonic() > start + 2.0:
            return False  # a proxy of an earlier release: it keeps no state
        if state is not None and state.get("target") == new_port and \
                not state.get("open", {}).get(str(route.previous_port)):
            return True
        time.sleep(0.05)
    return False


def drain_and_stop(name: str, version: str, progress: Progress | None = None, client=None, *,
                   route: Route | None = None) -> None:
    """Stop a version's container once no route sends it traffic: after ``route`` moved away from it, when its
    proxy has no request in flight to it; then SIGTERM (its server finishes what it holds)."""
    from .deployments import stop_deployment
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    if any(_target_version(c) == version for c in _routes(client, name) if c.status == "running"):
        return  # another alias still routes to it
    if route is not None and route.previous_port:
        t0 = time.monotonic()
        drained = wait_drained(route, client=client)
        if progress:
            progress.log(f"{name}/{version}: " + (f"no request in flight left after {time.monotonic() - t0:.2f}s"
                                                  if drained else f"requests still in flight after {_DRAIN_TIMEOUT:.0f}s"
                                                  "; stopping it (its server finishes what it holds)"))
    stop_deployment(name, version, client=client)
    if progress:
        progress.log(f"stopped {name}/{version}: no alias routes to it any more")


def remove_routes(name: str, alias: str | None = None, client=None) -> list[Route]:
    """Remove the routes of a model (every alias, or one); returns what was removed."""
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    removed = []
    for container in _routes(client, name, alias):
        removed.append(Route(name, container.labels.get("pyml.alias", ""),
                             int(container.labels.get("pyml.route.port", "0")), "", container.id))
        container.remove(force=True)
    return removed


def serve_alias(name: str, alias: str, deployment, progress: Progress | None = None):
    """Point ``NAME@ALIAS``'s stable port at a ready ``deployment``, stop the version it served before (when no
    other alias routes to it), and return the deployment with the stable URL."""
    port = int(deployment.url.rsplit(":", 1)[1])
    route = route_to(name, alias, port, str(deployment.version), progress=progress)
    if route.previous:
        drain_and_stop(name, route.previous, progress=progress, route=route)
    deployment.url = route.url
    return deployment


def stop_alias(name: str, alias: str, client=None) -> list:
    """Remove ``NAME@ALIAS``'s route and stop the version it served (unless another alias routes to it)."""
    from .deployments import stop_deployment
    from .images.builder import docker_client

    client = docker_client(client, error=DeployError)
    route = find_route(name, alias, client=client)
    remove_routes(name, alias, client=client)
    if route is None or not route.version:
        return []
    if any(_target_version(c) == route.version for c in _routes(client, name) if c.status == "running"):
        return []
    return stop_deployment(name, route.version, client=client)
