"""Who may talk to the served model: a ``Host`` allow-list and an optional bearer token.

* **Host allow-list.** A request whose ``Host`` header names neither a loopback name (``localhost``,
  ``127.0.0.1``, ``::1``), nor this machine's (the container's) own host name or addresses, nor a name in
  ``PYML_ALLOWED_HOSTS`` (comma-separated; ``.example.com`` also allows its subdomains; ``*`` allows any host)
  is refused with 400 ``HOST_NOT_ALLOWED``. It stops DNS-rebinding pages in a browser from reaching a model
  published on ``127.0.0.1``. Configured names extend the defaults, never replace them: the container's own
  health check and the notebook's client both use a loopback name.
* **Bearer token.** With ``PYML_TOKEN`` set, every request but the probes (``/ping``, ``/health``,
  ``/v2/health/live``, ``/v2/health/ready``) needs ``Authorization: Bearer <token>``; without it, 401
  ``UNAUTHENTICATED`` with ``WWW-Authenticate: Bearer``. gRPC calls need the same ``authorization`` metadata,
  except ``ServerLive``, ``ServerReady`` and ``ModelReady`` (see :func:`grpc_interceptor`).
  Tokens are compared in constant time and never logged.

:class:`AccessGuard` is a plain ASGI middleware: one pass over the request's headers, no allocation on the
allowed path. This module is part of the serving runtime: it imports only the standard library (and grpcio
inside :func:`grpc_interceptor`).
"""

from __future__ import annotations

import hmac
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

__all__ = ["AccessPolicy", "AccessGuard", "OPEN_PATHS", "OPEN_GRPC_METHODS", "default_hosts", "document_access",
           "grpc_interceptor", "policy_from_env"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = frozenset({"/ping", "/health", "/v2/health/live", "/v2/health/ready"})
OPEN_GRPC_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})


def default_hosts() -> set[str]:
    """Loopback names, this machine's host name and the addresses it resolves to (a container's own IP)."""
    hosts = set(LOOPBACK_HOSTS)
    try:
        name = socket.gethostname()
    except OSError:  # pragma: no cover - no host name at all
        return hosts
    if name:
        hosts.add(name.lower())
        try:
            hosts.update(info[4][0].lower() for info in socket.getaddrinfo(name, None))
        except (OSError, UnicodeError):
            pass
    return hosts


def host_name(header: str) -> str:
    """The host part of a ``Host`` header, lower-case, without its port (``[::1]:8080`` -> ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, colon, port = value.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else value


@dataclass(frozen=True)
class AccessPolicy:
    """The hosts a request may name and the token it must carry (``token=None``: none needed)."""

    hosts: frozenset[str] = field(default_factory=lambda: frozenset(LOOPBACK_HOSTS))
    token: str | None = None

    @classmethod
    def build(cls, allowed_hosts: Iterable[str] | str | None = None, token: str | None = None) -> "AccessPolicy":
        """The defaults (:func:`default_hosts`) plus ``allowed_hosts`` (a list, or a comma-separated string)."""
        if isinstance(allowed_hosts, str):
            allowed_hosts = allowed_hosts.split(",")
        extra = {h.strip().lower() for h in allowed_hosts or () if h.strip()}
        return cls(hosts=frozenset(default_hosts() | {host_name(h) if not h.startswith(".") else h for h in extra}),
                   token=token or None)

    @property
    def any_host(self) -> bool:
        return "*" in self.hosts

    def host_allowed(self, header: str | None) -> bool:
        if self.any_host:
            return True
        if not header:
            return False
        name = host_name(header)
        if name in self.hosts:
            return True
        return any(h.startswith(".") and (name.endswith(h) or name == h[1:]) for h in self.hosts)

    def token_ok(self, authorization: str | None) -> bool:
        if self.token is None:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.token.encode())


def policy_from_env(environ: dict | None = None) -> AccessPolicy:
    """The policy from ``PYML_ALLOWED_HOSTS`` and ``PYML_TOKEN``."""
    environ = os.environ if environ is None else environ
    return AccessPolicy.build(environ.get("PYML_ALLOWED_HOSTS") or None, environ.get("PYML_TOKEN") or None)


def document_access(document: dict, policy: AccessPolicy) -> dict:
    """``document`` (an OpenAPI 3 dict) saying what ``policy`` asks: with a token, a bearer security scheme on
    every operation but the probes, each of which may then answer 401."""
    if policy.token is None:
        return document
    document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in document.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "no bearer token, or not the server's (PYML_TOKEN)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return document


def _json(status: int, code: str, message: str, extra_headers: list | None = None) -> tuple[dict, dict]:
    body = json.dumps({"error_code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return ({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])},
            {"type": "http.response.body", "body": body})


class AccessGuard:
    """ASGI middleware enforcing an :class:`AccessPolicy` on HTTP requests; ``refused(path, method, status,
    error_code)`` (optional) is called for each refusal, e.g. to count it in metrics."""

    def __init__(self, app: Callable, policy: AccessPolicy,
                 refused: Callable[[str, str, int, str], None] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.refused = refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        host = authorization = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1") if host is None else host
            elif key == b"authorization":
                authorization = value.decode("latin-1") if authorization is None else authorization
        if not policy.host_allowed(host):
            shown = (host or "")[:100]
            await self._refuse(scope, send, 400, "HOST_NOT_ALLOWED",
                               f"Host {shown!r} is not allowed; add it to PYML_ALLOWED_HOSTS "
                               f"(deploy(..., allowed_hosts=[...]))")
            return
        if policy.token is not None and scope["path"] not in OPEN_PATHS and not policy.token_ok(authorization):
            message = ("A bearer token is required: send 'Authorization: Bearer <token>' (the PYML_TOKEN the "
                       "server was deployed with)" if authorization is None else "The bearer token is not valid")
            await self._refuse(scope, send, 401, "UNAUTHENTICATED", message,
                               [(b"www-authenticate", b'Bearer realm="pyml"')])
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: dict, send: Callable, status: int, code: str, message: str,
                      headers: list | None = None) -> None:
        if self.refused is not None:
            self.refused(scope["path"], scope["method"], status, code)
        start, body = _json(status, code, message, headers)
        await send(start)
        await send(body)


def grpc_interceptor(policy: AccessPolicy) -> Any:
    """A ``grpc.aio`` server interceptor that refuses calls without the policy's bearer token
    (``UNAUTHENTICATED``), except the health methods; ``None`` when the policy needs no token."""
    if policy.token is None:
        return None
    import grpc
    from grpc import aio

    async def deny(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "A bearer token is required: send the metadata "
                                                             "'authorization: Bearer <token>'")

    class TokenInterceptor(aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):  # noqa: D401 - grpc's signature
            if details.method.rpartition("/")[2] in OPEN_GRPC_METHODS:
                return await continuation(details)
            metadata = dict(details.invocation_metadata or ())
            if policy.token_ok(metadata.get("authorization")):
                return await continuation(details)
            handler = await continuation(details)
            if handler is None:
                return None
            return grpc.unary_unary_rpc_method_handler(deny, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)

    return TokenInterceptor()
