"""The alias route's HTTP proxy (the real script, in its own process, on loopback): each request goes to the
current target, even on a connection the client keeps open; a request a stopping server never read is sent again
to the current target, one it read is not; status, headers and body pass unchanged; its state file counts the
requests in flight per target."""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyml_jupyter import route_proxy
from processes import free_port

SCRIPT = Path(route_proxy.__file__)


class Upstream(threading.Thread):
    """A loopback server: ``answer`` replies ``HTTP 200 <name>``; ``unread`` closes each connection without
    reading it (the kernel resets it: data was unread), then calls ``on_close``; ``read_and_drop`` reads the
    request and closes without answering; ``slow`` answers once ``release`` is set."""

    def __init__(self, mode: str, name: str = "", on_close=None) -> None:
        super().__init__(daemon=True)
        self.mode, self.name, self.on_close = mode, name, on_close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.release = threading.Event()
        self.start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "unread":
                time.sleep(0.3)  # the request is in the kernel's buffer, never read: close() sends RST
                if self.on_close:
                    self.on_close()
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            if self.mode == "read_and_drop":
                return
            if self.mode == "slow":
                self.release.wait(10)
            body = self.name.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(tmp_path):
    """Start the forwarder on a free port; yields (url, set_target(port), read_state())."""
    target, state = tmp_path / "target", tmp_path / "state"
    port = free_port()
    procs = []

    def set_target(upstream_port: int) -> None:
        tmp = tmp_path / f"target.{threading.get_ident()}"
        tmp.write_text(f"{upstream_port} v\n")
        tmp.replace(target)

    def start(upstream_port: int) -> str:
        set_target(upstream_port)
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), "127.0.0.1", str(port), str(target),
                                       str(state)]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the forwarder did not listen")

    def read_state() -> dict:
        return json.loads(state.read_text())

    yield start, set_target, read_state
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


class Echo(http.server.ThreadingHTTPServer):
    """A keep-alive HTTP/1.1 server on loopback: answers ``201`` with its name, the request's method, path and
    headers in a JSON body compressed with gzip (``Content-Encoding: gzip``), and the request body's length and
    SHA-free digest (first and last bytes)."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                answer = {"name": name, "method": self.command, "path": self.path, "length": len(data),
                          "ends": [data[:8].decode("latin-1"), data[-8:].decode("latin-1")],
                          "headers": {k.lower(): v for k, v in self.headers.items()}}
                body = gzip.compress(json.dumps(answer).encode())
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("X-Upstream", name)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_GET

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def _call(conn: http.client.HTTPConnection, method: str = "POST", path: str = "/invocations?a=1",
          body: bytes = b"{}", headers: dict | None = None) -> tuple[http.client.HTTPResponse, dict]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, json.loads(gzip.decompress(response.read()))


def _get(url: str) -> str:
    with urllib.request.urlopen(url + "/invocations", timeout=10) as response:
        return response.read().decode()


def _error_status(url: str) -> int:
    """The status of a call that must fail, its connection closed (an unclosed one fails a later test)."""
    with pytest.raises(urllib.error.HTTPError) as failed:
        _get(url)
    with failed.value:
        return failed.value.code


def test_a_request_a_stopping_server_never_read_is_sent_again_to_the_new_target(proxy):
    start, set_target, _ = proxy
    new = Upstream("answer", "new")
    armed = threading.Event()  # not for the start-up probe's own connection
    old = Upstream("unread", on_close=lambda: armed.is_set() and set_target(new.port))  # the swap, as it closes
    url = start(old.port)
    time.sleep(0.5)
    before = old.accepted
    armed.set()
    assert _get(url) == "new"
    assert old.accepted == before + 1 and new.accepted == 1
    old.close(), new.close()


def test_a_request_the_server_read_is_not_sent_again(proxy):
    start, set_target, _ = proxy
    other = Upstream("answer", "other")
    dropper = Upstream("read_and_drop")
    url = start(dropper.port)
    time.sleep(0.3)
    before = dropper.accepted
    set_target_later = threading.Timer(0.1, set_target, args=(other.port,))
    set_target_later.start()
    assert _error_status(url) == 502  # closed without an answer: a 502, not a retry
    set_target_later.join()
    assert dropper.accepted == before + 1 and other.accepted == 0
    dropper.close(), other.close()


def test_a_refused_connection_is_retried_until_a_target_listens(proxy):
    start, set_target, _ = proxy
    url = start(free_port())  # nothing listens there
    upstream = Upstream("answer", "late")
    threading.Timer(0.5, set_target, args=(upstream.port,)).start()
    assert _get(url) == "late"
    upstream.close()


def test_the_state_file_names_the_target_and_counts_requests_still_in_flight_elsewhere(proxy):
    start, set_target, read_state = proxy
    slow, new = Upstream("slow", "slow"), Echo("new")
    url = start(slow.port)
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(_get(url)))
    caller.start()
    deadline = time.monotonic() + 5
    while not slow.accepted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_state() == {"target": slow.port, "open": {}}  # the target's own requests are not listed
    set_target(new.port)
    time.sleep(0.2)
    assert read_state() == {"target": new.port, "open": {str(slow.port): 1}}  # moved, one request still there
    slow.release.set()
    caller.join(10)
    assert answers == ["slow"]
    deadline = time.monotonic() + 5
    while read_state()["open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_state() == {"target": new.port, "open": {}}
    slow.close(), new.close()


def test_one_keep_alive_connection_follows_the_target_request_by_request(proxy):
    """The client never reconnects; its very next request after the move goes to the new target."""
    start, set_target, read_state = proxy
    old, new = Echo("old"), Echo("new")
    url = start(old.port)
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
    conn.connect()
    conn.auto_open = 0  # a closed connection raises instead of silently reconnecting
    names = [_call(conn)[1]["name"] for _ in range(3)]
    sock = conn.sock
    set_target(new.port)
    names += [_call(conn)[1]["name"] for _ in range(3)]
    assert names == ["old"] * 3 + ["new"] * 3
    assert conn.sock is sock  # one connection throughout
    time.sleep(0.1)  # the state is rewritten every 20 ms
    assert read_state() == {"target": new.port, "open": {}}  # nothing in flight: the old target can stop now
    conn.close()
    old.close(), new.close()


def test_method_path_query_headers_and_body_pass_and_hop_by_hop_headers_do_not(proxy):
    start, _, _ = proxy
    upstream = Echo("echo")
    url = start(upstream.port)
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    body = b"B" * 8 + bytes(range(256)) * (20 * 1024 * 4) + b"E" * 8  # 20 MiB + 16 bytes, the runtime's limit
    response, seen = _call(conn, "PUT", "/v2/models/m/infer?x=1&y=%20z", body,
                           {"X-Trace": "abc", "Keep-Alive": "timeout=5", "Connection": "keep-alive, X-Secret",
                            "X-Secret": "per-hop", "Content-Type": "application/octet-stream"})
    assert response.status == 201
    assert response.getheader("Content-Encoding") == "gzip"  # the body's bytes as the upstream sent them
    assert response.getheader("X-Upstream") == "echo"
    assert (seen["method"], seen["path"]) == ("PUT", "/v2/models/m/infer?x=1&y=%20z")
    assert seen["length"] == len(body) and seen["ends"] == ["B" * 8, "E" * 8]
    assert seen["headers"]["x-trace"] == "abc" and seen["headers"]["content-type"] == "application/octet-stream"
    assert "keep-alive" not in seen["headers"] and "x-secret" not in seen["headers"]
    conn.close()
    upstream.close()


def test_a_target_that_never_answers_is_a_502_after_the_retry_window(proxy):
    start, _, _ = proxy
    url = start(free_port())
    t0 = time.monotonic()
    assert _error_status(url) == 502 and 4.5 < time.monotonic() - t0 < 15


def test_the_route_container_gets_python_sources_only_no_certificate_bundle():
    from pyml_jupyter.routing import proxy_files

    files = proxy_files()
    assert any(path.endswith("/httpx/__init__.py") for path in files)
    assert all(path.endswith(".py") for path in files), sorted(p for p in files if not p.endswith(".py"))[:5]
    assert not any(b"BEGIN CERTIFICATE" in body for body in files.values())
