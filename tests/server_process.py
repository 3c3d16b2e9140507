"""A server run as a separate process (the Hypercorn CLI, the standalone executable), found
through the "Running on http://..." line Hypercorn logs once it listens."""

from __future__ import annotations

import re
import subprocess
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path


@dataclass
class ServerProcess:
    process: trio.Process
    url: str = ""
    output: list[str] = field(default_factory=list[str])

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path

    def transcript(self) -> str:
        """Everything the process printed so far (stdout and stderr), for failure messages."""
        return "\n".join(self.output)


async def _read_lines(stream: trio.abc.ReceiveStream, lines: list[str], found: trio.Event) -> None:
    """Collect the process's output (so the pipe never fills); `found` once it serves."""
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            lines.append(raw.decode(errors="replace"))
            if "Running on http://" in lines[-1]:
                found.set()


@asynccontextmanager
async def server_process(
    command: list[str], *, env: Mapping[str, str], cwd: Path, start_timeout: float
) -> AsyncIterator[ServerProcess]:
    """Run `command` (which must bind and log where) until the block ends; killed if still
    running then. Waits at most `start_timeout` seconds for it to listen."""
    process = await trio.lowlevel.open_process(
        command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = ServerProcess(process)
    assert process.stdout is not None
    try:
        async with trio.open_nursery() as nursery:
            serving = trio.Event()
            nursery.start_soon(_read_lines, process.stdout, server.output, serving)
            with trio.move_on_after(start_timeout):
                await serving.wait()
            match = re.search(r"Running on (http://\S+)", server.transcript())
            assert match, f"{command[0]} did not start:\n{server.transcript()}"
            server.url = match.group(1)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
