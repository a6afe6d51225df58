"""A loopback TCP proxy whose connections a test can cut (a flaky network, for real)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from tests.support.process import GatewayProcess, RunnerProcess, run_cli


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(Exception):
            dst.close()

    def cut(self) -> int:
        """Abort every proxied connection (both sides see a reset)."""
        n = 0
        for a, b in list(self._pairs):
            for w in (a, b):
                transport = w.transport
                if not transport.is_closing():
                    transport.abort()
                    n += 1
        self._pairs.clear()
        return n

    async def aclose(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


async def proxied_runner(
    gateway: GatewayProcess, home: Path, name: str = "box"
) -> tuple[Proxy, RunnerProcess, Path]:
    """A runner enrolled through the CLI and connected through a :class:`Proxy` the test
    can cut; it reconnects within a second. Its workspace ``app`` is ``home/ws-NAME``.
    The caller stops the runner and closes the proxy."""
    proxy = Proxy(int(gateway.url.rsplit(":", 1)[1]))
    await proxy.start()
    ws = home / f"ws-{name}"
    ws.mkdir()
    runner = RunnerProcess(home, name, env={"TETHER_RUNNER__RECONNECT_MAX_DELAY": "1"})
    added = json.loads(run_cli(gateway.home, "--json", "runners", "add", name).stdout)
    # the proxy runs on the caller's event loop: block in threads, not on the loop
    enrol = await asyncio.to_thread(
        run_cli,
        home,
        "runner",
        "enroll",
        "--gateway",
        proxy.url,
        "--code",
        added["code"],
        f"--workspace=app={ws}",
        env={"TETHER_CONFIG_DIR": str(runner.config_dir)},
    )
    assert enrol.returncode == 0, enrol.stderr
    await asyncio.to_thread(runner.start)
    return proxy, runner, ws
