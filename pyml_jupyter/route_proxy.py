"""An HTTP reverse proxy for an alias's stable local port: ``python route_proxy.py HOST PORT TARGET_FILE [STATE_FILE]``.

It runs in its own small container (the base Python image, host network), copied in by
:mod:`pyml_jupyter.routing` with the pure-Python libraries it needs (uvicorn serves it, httpx forwards). Each
*request* reads ``TARGET_FILE`` (``"<port> <version>"``) and goes to the port written there, whatever
connection the client sent it on: a client that keeps one keep-alive connection open (``requests.Session``,
``httpx.Client``) moves to a new version with its next request. Method, path, query, headers (less the
hop-by-hop ones) and body go upstream; status, headers and the body's bytes as sent (not decoded) come back,
the body streamed. HTTP/1.1 only: gRPC (HTTP/2) and WebSocket upgrades are not forwarded.

A request is sent again, to the then current target and for up to five seconds, only when nothing of it can
have been handled:

* the target refused the connection (a server stopping or not yet started);
* the target reset the connection before answering (a socket closed with unread data sends RST).

A target that closed cleanly without answering (it may have read and handled the request) is not retried: the
client gets ``502``. ``STATE_FILE`` (JSON, rewritten atomically) says which port new requests go to and how
many requests are still in flight to each *other* port (``{"target": port, "open": {port: requests}}``; the
target's own count is left out, so that steady traffic does not rewrite the file):
:func:`pyml_jupyter.routing.drain_and_stop` waits until the old port has none before it stops the old container.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import ssl
import sys

if importlib.util.find_spec("sniffio") is None:
    # httpcore runs ``import sniffio`` on every request; when it is not installed, each failed import scans
    # sys.path (about 0.3 ms a request here). Marking it absent once makes that import fail at once.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

import httpx  # noqa: E402
import uvicorn  # noqa: E402

_RETRY_SECONDS = 5.0
_POLL_SECONDS = 0.02
# RFC 9110 section 7.6.1: meaningful for one connection only; never forwarded (plus those named in Connection).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})


def read_target(path: str, last: int | None) -> int | None:
    """The port in the target file, or ``last`` while the file is unreadable (being rewritten)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return last


def end_to_end(headers: list[tuple[bytes, bytes]], drop: frozenset[str] = frozenset()) -> list[tuple[bytes, bytes]]:
    """``headers`` without the hop-by-hop ones, those the Connection header names, and ``drop``."""
    named = {token.strip().lower() for k, v in headers if k.lower() == b"connection"
             for token in v.decode("latin-1").split(",")}
    skip = HOP_BY_HOP | named | drop
    return [(k, v) for k, v in headers if k.decode("latin-1").lower() not in skip]


def _retryable(exc: BaseException) -> bool:
    """Nothing of the request can have been handled: refused, or reset before any answer."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return True
    if not isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return False  # e.g. closed cleanly without answering: the request may have been handled
    while exc is not None and not isinstance(exc, ConnectionResetError):
        exc = exc.__cause__ or exc.__context__
    return exc is not None


class RouteProxy:
    """The ASGI app: forwards each request to the current target, counting requests in flight per port."""

    def __init__(self, target_file: str, state_file: str | None = None) -> None:
        self.target_file, self.state_file = target_file, state_file
        self.port = read_target(target_file, None)
        self.open: dict[int, int] = {}
        self._written = ""
        self.client: httpx.AsyncClient | None = None

    def _count(self, port: int | None, delta: int) -> None:
        if port is not None:
            self.open[port] = self.open.get(port, 0) + delta
            if not self.open[port]:
                del self.open[port]

    def write_state(self) -> None:
        """The port new requests go to and the requests in flight to other ports, replaced atomically."""
        if not self.state_file:
            return
        text = json.dumps({"target": self.port, "open": {str(p): n for p, n in sorted(self.open.items())
                                                          if p != self.port}})
        if text == self._written:
            return
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.state_file)
        self._written = text

    async def watch(self) -> None:
        """Follow the target file; the state is written in the same step, so a state naming the new target
        counts every request that went to the old one."""
        while True:
            self.port = read_target(self.target_file, self.port)
            self.write_state()
            await asyncio.sleep(_POLL_SECONDS)

    def pick(self) -> int | None:
        """The current target, counted under its port in the same step (no await in between)."""
        port = self.port = read_target(self.target_file, self.port)
        self._count(port, +1)
        return port

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return  # WebSocket: not forwarded (the connection is refused)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await self.forward(scope, bytes(body), send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Upstreams are plain HTTP on loopback; the TLS context is the base image's own, so that no
                # CA bundle has to be shipped into the route container.
                self.client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0), trust_env=False,
                                                verify=ssl.create_default_context(),
                                                limits=httpx.Limits(max_connections=None,
                                                                    max_keepalive_connections=64,
                                                                    keepalive_expiry=2.0))  # < uvicorn's 5 s
                watcher = asyncio.ensure_future(self.watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                watcher.cancel()
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _open(self, scope, body: bytes) -> tuple[int | None, httpx.Response | None]:
        """The upstream response (headers read, body not yet), retried on refusal or reset until the deadline;
        ``(None, None)`` when no target answered. The returned port stays counted until the caller uncounts it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RETRY_SECONDS
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        headers = end_to_end(scope["headers"], frozenset({"content-length"}))
        while True:
            port = self.pick()
            try:
                if port is None:
                    raise httpx.ConnectError("no target")
                url = f"http://127.0.0.1:{port}{path.decode('latin-1')}" + (f"?{query.decode('latin-1')}"
                                                                           if query else "")
                request = self.client.build_request(scope["method"], url, headers=headers, content=body)
                return port, await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                self._count(port, -1)
                if not _retryable(exc) or loop.time() > deadline:
                    return None, None
                await asyncio.sleep(0.02)

    async def forward(self, scope, body: bytes, send) -> None:
        port, response = await self._open(scope, body)
        if response is None:
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"the alias's target did not answer\n"})
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": end_to_end(response.headers.raw)})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
            self._count(port, -1)


def serve(host: str, port: int, target_file: str, state_file: str | None = None) -> None:
    """Serve the proxy until interrupted (h11, one process; no Server/Date headers of its own)."""
    uvicorn.run(RouteProxy(target_file, state_file), host=host, port=port, http="h11", lifespan="on",
                log_level="warning", access_log=False, server_header=False, date_header=False, backlog=1024,
                ws="none", proxy_headers=False)


def main(argv: list[str] | None = None) -> int:
    args = (argv if argv is not None else sys.argv[1:])[:4]
    host, port, target_file = args[:3]
    serve(host, int(port), target_file, args[3] if len(args) > 3 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
