"""A TCP forwarder for an alias's stable local port: ``python route_proxy.py HOST PORT TARGET_FILE [STATE_FILE]``.

Standard library only: it runs in its own small container (the base Python image, host network), copied in by
:mod:`pyml_jupyter.routing`. It watches ``TARGET_FILE`` (``"<port> <version>"``) and sends each new connection
to the port written there, so rewriting the file moves new connections to another container while the open
ones finish where they started.

Two failures are retried on the current target, for up to five seconds, because they lose nothing:

* the target refuses the connection (a server stopping or not started);
* the target closes the connection before answering anything and without having read what was sent: the
  kernel then resets the connection (a socket closed with unread data sends RST), or it closed before the
  client had sent a byte. The client's bytes are kept until the first byte of an answer, and sent again to the
  fresh connection. A target that read the request and then closed without answering is *not* retried (the
  request may have had an effect): the client's connection is closed.

``STATE_FILE`` (JSON, rewritten atomically) says which port new connections go to and how many connections are
open to each port: :func:`pyml_jupyter.routing.drain_and_stop` waits until the old port has none before it stops
the old container.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

_RETRY_SECONDS = 5.0
_POLL_SECONDS = 0.02


def read_target(path: str, last: int | None) -> int | None:
    """The port in the target file, or ``last`` while the file is unreadable (being rewritten)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return last


class _Retry(Exception):
    """The upstream connection ended before it read or answered anything: send the request elsewhere."""


class _Relay:
    """One client connection. Its bytes go to the current upstream and are kept until the upstream answers, so
    that a fresh upstream can be sent them again."""

    def __init__(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.client_reader, self.client_writer = client_reader, client_writer
        self.unanswered = bytearray()
        self.answered = False
        self.client_done = False
        self.upstream: asyncio.StreamWriter | None = None
        self.upstream_ready = asyncio.Event()

    def attach(self, writer: asyncio.StreamWriter) -> None:
        """A (new) upstream: it gets everything the client sent so far."""
        self.upstream = writer
        if self.unanswered:
            writer.write(bytes(self.unanswered))
        if self.client_done and writer.can_write_eof():
            writer.write_eof()
        self.upstream_ready.set()

    async def from_client(self) -> None:
        try:
            while True:
                data = await self.client_reader.read(65536)
                if not data:
                    break
                if not self.answered:
                    self.unanswered += data
                if not self.upstream_ready.is_set():
                    continue  # attach() sends what is kept
                try:
                    self.upstream.write(data)
                    await self.upstream.drain()
                except (ConnectionError, OSError):
                    pass  # the upstream's reader decides whether to retry
        except (ConnectionError, OSError):
            pass
        self.client_done = True
        try:
            if self.upstream is not None and self.upstream.can_write_eof():
                self.upstream.write_eof()
        except (ConnectionError, OSError):
            pass

    async def from_upstream(self, reader: asyncio.StreamReader) -> None:
        """Copy the answer to the client; :class:`_Retry` when the upstream ended unread and unanswered."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if not self.answered and not self.unanswered and not self.client_done:
                        raise _Retry()  # closed before the client sent anything
                    break
                self.answered = True
                self.unanswered.clear()
                self.client_writer.write(data)
                await self.client_writer.drain()
        except ConnectionResetError:
            if not self.answered:
                raise _Retry() from None  # reset with our bytes unread: nothing of the request was consumed
        except (ConnectionError, OSError):
            pass
        if self.client_writer.can_write_eof():
            try:
                self.client_writer.write_eof()
            except (ConnectionError, OSError):
                pass


class Forwarder:
    def __init__(self, target_file: str, state_file: str | None = None) -> None:
        self.target_file, self.state_file = target_file, state_file
        self.port = read_target(target_file, None)
        self.open: dict[int, int] = {}
        self._written = ""

    def _count(self, port: int | None, delta: int) -> None:
        if port is not None:
            self.open[port] = self.open.get(port, 0) + delta
            if not self.open[port]:
                del self.open[port]

    def write_state(self) -> None:
        """The port new connections go to and the open connections per port, replaced atomically."""
        if not self.state_file:
            return
        text = json.dumps({"target": self.port, "open": {str(p): n for p, n in sorted(self.open.items())}})
        if text == self._written:
            return
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.state_file)
        self._written = text

    async def watch(self) -> None:
        """Follow the target file; the state is written in the same step, so a state naming the new target
        counts every connection that went to the old one."""
        while True:
            self.port = read_target(self.target_file, self.port)
            self.write_state()
            await asyncio.sleep(_POLL_SECONDS)

    async def connect(self, deadline: float):
        """A connection to the current target (counted under its port), retried until ``deadline``."""
        loop = asyncio.get_running_loop()
        while True:
            port = self.port = read_target(self.target_file, self.port)  # counted in the same step
            self._count(port, +1)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                return port, reader, writer
            except (OSError, TypeError):
                self._count(port, -1)
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RETRY_SECONDS
        relay = _Relay(client_reader, client_writer)
        sending = asyncio.ensure_future(relay.from_client())
        try:
            while True:
                try:
                    port, reader, writer = await self.connect(deadline)
                except (OSError, TypeError):
                    return
                relay.attach(writer)
                try:
                    await relay.from_upstream(reader)
                    await sending
                    return
                except _Retry:
                    relay.upstream_ready.clear()
                    if loop.time() > deadline:
                        return
                    await asyncio.sleep(0.02)
                finally:
                    writer.close()
                    self._count(port, -1)
        finally:
            sending.cancel()
            client_writer.close()


async def serve(host: str, port: int, target_file: str, state_file: str | None = None) -> None:
    forwarder = Forwarder(target_file, state_file)
    watcher = asyncio.ensure_future(forwarder.watch())
    server = await asyncio.start_server(forwarder.handle, host, port, backlog=1024, reuse_address=True)
    try:
        async with server:
            await server.serve_forever()
    finally:
        watcher.cancel()


def main(argv: list[str] | None = None) -> int:
    args = (argv if argv is not None else sys.argv[1:])[:4]
    host, port, target_file = args[:3]
    try:
        asyncio.run(serve(host, int(port), target_file, args[3] if len(args) > 3 else None))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
