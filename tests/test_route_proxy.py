"""The alias route's forwarder (the real script, in its own process, on loopback): a request that a stopping
server never read is sent again to the current target; one it read is not; its state file counts connections."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pyml_jupyter import route_proxy

SCRIPT = Path(route_proxy.__file__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(threading.Thread):
    """A loopback server: ``answer`` replies ``HTTP 200 <name>``; ``unread`` closes each connection without
    reading it (the kernel resets it: data was unread), then calls ``on_close``; ``read_and_drop`` reads the
    request and closes without answering; ``hold`` answers but keeps the connection until the client leaves."""

    def __init__(self, mode: str, name: str = "", on_close=None) -> None:
        super().__init__(daemon=True)
        self.mode, self.name, self.on_close = mode, name, on_close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
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
            body = self.name.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if self.mode == "hold":
                conn.recv(1)  # until the client closes

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(tmp_path):
    """Start the forwarder on a free port; yields (url, set_target(port), read_state())."""
    target, state = tmp_path / "target", tmp_path / "state"
    port = _free_port()
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


def _get(url: str) -> str:
    with urllib.request.urlopen(url + "/invocations", timeout=10) as response:
        return response.read().decode()


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
    with pytest.raises(Exception):  # noqa: B017 - the connection closes without an answer
        _get(url)
    set_target_later.join()
    assert dropper.accepted == before + 1 and other.accepted == 0
    dropper.close(), other.close()


def test_a_refused_connection_is_retried_until_a_target_listens(proxy):
    start, set_target, _ = proxy
    url = start(_free_port())  # nothing listens there
    upstream = Upstream("answer", "late")
    threading.Timer(0.5, set_target, args=(upstream.port,)).start()
    assert _get(url) == "late"
    upstream.close()


def test_the_state_file_names_the_target_and_counts_open_connections_per_port(proxy):
    start, set_target, read_state = proxy
    held, new = Upstream("hold", "held"), Upstream("answer", "new")
    url = start(held.port)
    client = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.recv(65536).endswith(b"held")
    set_target(new.port)
    time.sleep(0.2)
    assert read_state() == {"target": new.port, "open": {str(held.port): 1}}
    client.close()
    deadline = time.monotonic() + 5
    while read_state()["open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_state() == {"target": new.port, "open": {}}
    held.close(), new.close()
