"""Shared by the bench scripts that run our server and the reference side by side, each as a
process of its own on a loopback port (not a benchmark itself: `make bench` skips `_*.py`).

The reference is `openhands-agent-server` 1.58.2, used when a virtualenv with it exists at
/tmp/refvenv (`python3.12 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install
openhands-agent-server==1.58.2`); scripts take `--reference-python PATH` to point elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REFERENCE_PYTHON = Path("/tmp/refvenv/bin/python")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ours_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trio_openhands.cli",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]


def reference_command(reference_python: Path, port: int) -> list[str]:
    return [
        str(reference_python),
        "-m",
        "openhands.agent_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


REFERENCE_ENV = {"OH_SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}


def start(command: list[str], cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start a server and wait for `/ready` (the SDK imported, so no import competes). Its
    HOME is an empty directory: a `~/.bashrc` prompt hook would break the SDK's terminal."""
    home = tempfile.mkdtemp(prefix="bench-home-")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "HOME": home, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command} was not ready within 90 s")


def memory_kib(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure: VmRSS (now) or VmHWM (the peak so far), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def each_server(base: Path, reference_python: Path) -> Iterator[tuple[str, str, int, Path]]:
    """Ours, then the reference if installed: each started in its own folder under `base`,
    yielded as (name, url, pid, folder) while it runs, stopped after."""
    servers = [("ours", ours_command(free_port()), {})]
    if reference_python.exists():
        servers.append(
            ("reference", reference_command(reference_python, free_port()), REFERENCE_ENV)
        )
    else:
        print(f"reference: skipped (no {reference_python})")
    for name, command, env in servers:
        work = base / name
        work.mkdir(exist_ok=True)
        env = env or {"OPENHANDS_CONVERSATIONS_DIR": str(work / "conversations")}
        port = int(command[command.index("--port") + 1])
        with _running(command, work, env, port) as process:
            yield name, f"http://127.0.0.1:{port}", process.pid, work


@contextmanager
def _running(
    command: list[str], work: Path, env: dict[str, str], port: int
) -> Iterator[subprocess.Popen[bytes]]:
    process = start(command, work, env, port)
    try:
        yield process
    finally:
        stop(process)
