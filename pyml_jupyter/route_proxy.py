"""A TCP forwarder for an alias's stable local port: ``python route_proxy.py HOST PORT TARGET_FILE``.

Standard library only: it runs in its own small container (the base Python image, host network), copied in by
:mod:`pyml_jupyter.routing`. Each new connection goes to the port written in ``TARGET_FILE`` at that moment
(``"<port> <version>"``), so rewriting the file moves new connections to another container while the open
ones finish where they started. A target that refuses a connection (a server stopping) is tried again, after
re-reading the file, for up to five seconds before the client's connection is closed.
"""

from __future__ import annotations

import asyncio
import sys

_RETRY_SECONDS = 5.0


def read_target(path: str, last: int | None) -> int | None:
    """The port in the target file, or ``last`` while the file is unreadable (being rewritten)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return last


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Forwarder:
    def __init__(self, target_file: str) -> None:
        self.target_file = target_file
        self.port = read_target(target_file, None)

    async def connect(self):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RETRY_SECONDS
        while True:
            self.port = read_target(self.target_file, self.port)
            try:
                return await asyncio.open_connection("127.0.0.1", self.port)
            except (OSError, TypeError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self.connect()
        except (OSError, TypeError):
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            for writer in (upstream_writer, client_writer):
                writer.close()


async def serve(host: str, port: int, target_file: str) -> None:
    forwarder = Forwarder(target_file)
    server = await asyncio.start_server(forwarder.handle, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    host, port, target_file = (argv if argv is not None else sys.argv[1:])[:3]
    try:
        asyncio.run(serve(host, int(port), target_file))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
