"""Fixtures: the scripted LLM and the real server on free loopback ports."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from trio_openhands.core.sdk_loader import quiet_sdk_environment
from trio_openhands.server import serve
from trio_openhands.settings import Settings
from trio_openhands.testing.fake_llm import FakeLLM

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence
    from pathlib import Path

quiet_sdk_environment()
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("LITELLM_API_KEY", None)


# The suite runs with an empty home directory, so the developer's dotfiles play no part.
# The SDK's terminal is `bash -i`, which reads `~/.bashrc`; a prompt hook there (pyenv's
# `virtualenv-init` puts one in PROMPT_COMMAND) hides the prompt marker the SDK waits for,
# and every command the agent runs then ends in its 30 s no-output timeout. It is set here,
# before any test module imports the SDK: the SDK takes its plugin cache and persistence
# directories from HOME at import (a plugin fetched in a test wrote to the real home else).
_EMPTY_HOME = pathlib.Path(tempfile.mkdtemp(prefix="trio-openhands-home-"))
_SAVED_HOME = os.environ.get("HOME")
os.environ["HOME"] = str(_EMPTY_HOME)


@pytest.fixture(autouse=True, scope="session")
def empty_home() -> Iterator[Path]:
    yield _EMPTY_HOME
    if _SAVED_HOME is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = _SAVED_HOME
    shutil.rmtree(_EMPTY_HOME, ignore_errors=True)


@dataclass
class LiveServer:
    url: str
    settings: Settings
    client: httpx.AsyncClient
    stop: trio.Event
    stopped: trio.Event

    async def aclose(self) -> None:
        """Shut the server down as a signal would, and wait until it has stopped."""
        await self.client.aclose()
        self.stop.set()
        await self.stopped.wait()

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path

    @classmethod
    def of_process(cls, port: int, settings: Settings) -> LiveServer:
        """A client for a server in another process (`start_cli_server`); signal it to stop."""
        url = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=url, timeout=30)
        return cls(
            url=url, settings=settings, client=client, stop=trio.Event(), stopped=trio.Event()
        )


async def wait_for_event(
    server: LiveServer, conversation_id: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Follow the conversation's socket (history included) until an event matches."""
    url = server.ws_url(f"/conversations/{conversation_id}/events/socket?resend_all=true")
    with trio.fail_after(30):
        async with open_websocket_url(url) as socket:
            while True:
                event = json.loads(await socket.get_message())
                if predicate(event):
                    return event


async def wait_status(server: LiveServer, conversation_id: str, *statuses: str) -> dict[str, Any]:
    """Wait until GET shows one of `statuses`, re-reading on every status-change frame."""
    url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
    with trio.fail_after(30):
        async with open_websocket_url(url) as socket:
            while True:
                info = (await server.client.get(f"/conversations/{conversation_id}")).json()
                if info["status"] in statuses:
                    return info
                await socket.get_message()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own (`HOME`), without the SDK's persistence directory and public
    skills settings: the user's skills, plugins and agents are the ones the test writes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OH_PERSISTENCE_DIR", raising=False)
    monkeypatch.delenv("EXTENSIONS_PATH", raising=False)
    return home


@pytest.fixture
async def fake_llm(nursery: trio.Nursery) -> FakeLLM:
    llm = FakeLLM()
    await nursery.start(llm.serve)
    return llm


def llm_settings(fake_llm: FakeLLM, **extra: Any) -> dict[str, Any]:
    """The request's `llm` for the scripted LLM, through the real litellm path."""
    return {
        "model": "openai/fake",
        "base_url": fake_llm.base_url,
        "api_key": "test-key",
        "num_retries": 0,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
        **extra,
    }


async def start_server(nursery: trio.Nursery, settings: Settings) -> LiveServer:
    stop, stopped = trio.Event(), trio.Event()

    async def serve_until_stopped(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(settings, shutdown_trigger=stop, task_status=task_status)
        finally:
            stopped.set()

    binds: list[str] = await nursery.start(serve_until_stopped)
    url = binds[0]
    client = httpx.AsyncClient(base_url=url, timeout=30)
    return LiveServer(url=url, settings=settings, client=client, stop=stop, stopped=stopped)


def test_settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        conversations_dir=tmp_path / "conversations",
        workspace_dir=tmp_path / "project",
        secret_key="test-secret",
    ).with_changes(**changes)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_stores() -> list[str]:
    """The stores the `server` fixture runs over: `OPENHANDS_TEST_STORES` (comma-separated),
    by default both; `make test-postgres` sets `postgres` alone."""
    chosen = os.environ.get("OPENHANDS_TEST_STORES", "files,postgres")
    stores = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = set(stores) - {"files", "postgres"}
    if unknown or not stores:
        raise pytest.UsageError(f"OPENHANDS_TEST_STORES: unknown store(s) {sorted(unknown)}")
    return stores


test_stores.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


# A test of what never reaches the store (request parsing, HTTP, CORS, the workspace's own
# files and processes) runs over the first store alone: twice would only spend the budget.
STORE_INDEPENDENT = pytest.mark.store_independent


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using `server` runs once per store (see `test_stores`), unless it chooses
    its own stores (`parametrize("server_settings", ...)`) or is `STORE_INDEPENDENT`."""
    if "server_settings" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        if "server_settings" in str(marker.args[0]).replace(" ", "").split(","):
            return
    stores = test_stores()
    if metafunc.definition.get_closest_marker("store_independent") is not None:
        stores = stores[:1]
    metafunc.parametrize("server_settings", stores, indirect=True)


@pytest.fixture
def server_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The `server` fixture's settings: the files store, or a shared database of the test's
    own ("postgres")."""
    if getattr(request, "param", "files") == "postgres":
        url = request.getfixturevalue("postgres_url")
        return test_settings(tmp_path, database_url=url, lease_seconds=3.0)
    return test_settings(tmp_path)


@pytest.fixture
async def server(nursery: trio.Nursery, server_settings: Settings) -> AsyncIterator[LiveServer]:
    live = await start_server(nursery, server_settings)
    try:
        yield live
    finally:
        await live.aclose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class CliServer:
    """An `openhands-server` process (`start_cli_server`), the port it bound and its log."""

    process: trio.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


RUNNING_ON = re.compile(rb"Running on http://\S+:(\d+) ")


async def start_cli_server(
    tmp_path: Path, *, wait_for: str = "/alive", args: Sequence[str] = (), **env: str
) -> CliServer:
    """`openhands-server` as a separate process on a port of its choosing (`--port 0`: a port
    probed here could be taken by another process before the server binds it), answering
    `wait_for` with a 200. Its output goes to a log file in `tmp_path`, where the port is read
    from Hypercorn's "Running on" line; the process is killed if it never gets there."""
    environment = {
        **os.environ,
        "OPENHANDS_CONVERSATIONS_DIR": str(tmp_path / "conversations"),
        **env,
    }
    command = [sys.executable, "-m", "trio_openhands.cli", "--port", "0"]
    command += ["--log-level", "INFO", *args]
    descriptor, log_name = tempfile.mkstemp(prefix="server-", suffix=".log", dir=tmp_path)
    log = trio.Path(log_name)
    with os.fdopen(descriptor, "wb") as output:
        process = await trio.lowlevel.open_process(
            command, env=environment, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        # A fresh process imports the SDK before `/ready` says 200: ~10 s on this 2-core
        # machine alone, three times that with the rest of the suite running beside it.
        with trio.fail_after(90):
            while (bound := RUNNING_ON.search(await log.read_bytes())) is None:
                if process.returncode is not None:
                    raise RuntimeError(f"the server exited: {(await log.read_text())[-2000:]}")
                await trio.sleep(0.05)  # another process writes the log: poll it, bounded
            server = CliServer(process, int(bound.group(1)), pathlib.Path(log_name))
            async with httpx.AsyncClient(base_url=server.url) as client:
                while True:
                    if (await client.get(wait_for)).status_code == 200:
                        return server
                    await trio.sleep(0.05)  # another process: poll it, bounded
    except BaseException:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        raise
