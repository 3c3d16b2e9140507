"""The standalone executable `dist/openhands-server` (build.sh), run with no Python beside it:
it serves, and a conversation with a `terminal` tool call runs to finished against the
scripted LLM, so the SDK, the tools and litellm found their modules and data in the bundle.

Skipped when SKIP_BINARY=1 (`make test` sets it: the build takes minutes); `make
check-binary` builds the executable and runs this. Run directly, it builds a missing one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.conftest import llm_settings
from tests.server_process import server_process
from trio_openhands.testing.fake_llm import FakeLLM, finish, tool_call

if TYPE_CHECKING:
    from tests.server_process import ServerProcess

pytestmark = [
    pytest.mark.binary,
    pytest.mark.skipif(os.environ.get("SKIP_BINARY") == "1", reason="SKIP_BINARY=1"),
]

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "dist" / "openhands-server"
BUILD_TIMEOUT = 15 * 60
# The executable unpacks itself first (about 1 s); the SDK import then takes about 8 s.
START_TIMEOUT = 60


@pytest.fixture(scope="session")
def binary() -> Path:
    if not BINARY.exists():  # built here, not skipped: whoever runs this wants it checked
        subprocess.run([str(ROOT / "build.sh")], cwd=ROOT, check=True, timeout=BUILD_TIMEOUT)
    return BINARY


def bare_env(tmp_path: Path) -> dict[str, str]:
    """No virtualenv, no PYTHONPATH, no Python on PATH: only what any machine has."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "OPENHANDS_CONVERSATIONS_DIR": str(tmp_path / "conversations"),
        "OPENHANDS_WORKSPACE_DIR": str(tmp_path / "project"),
        "OH_SECRET_KEY": "binary-test-secret",
    }


async def wait_status(
    server: ServerProcess, client: httpx.AsyncClient, id_: str, status: str
) -> None:
    """Re-read the conversation on every frame of its socket until it has `status`."""
    with trio.fail_after(START_TIMEOUT):
        async with open_websocket_url(server.ws_url(f"/conversations/{id_}/events/socket")) as ws:
            while (await client.get(f"/conversations/{id_}")).json()["status"] != status:
                await ws.get_message()


async def test_binary_serves_and_runs_a_terminal_tool(
    binary: Path, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    tag = fake_llm.script(
        "binary",
        [tool_call("terminal", {"command": "echo frozen-$((6 * 7))"}), finish("done")],
    )
    command = [str(binary), "--host", "127.0.0.1", "--port", "0"]
    env = bare_env(tmp_path)
    async with (
        server_process(command, env=env, cwd=tmp_path, start_timeout=START_TIMEOUT) as server,
        httpx.AsyncClient(base_url=server.url, timeout=START_TIMEOUT) as client,
    ):
        alive = await client.get("/alive")
        assert alive.json() == {"status": "ok"}
        info = (await client.get("/server_info")).json()
        # Versions come from package metadata: bundled too.
        assert info["server_version"] == version("trio-openhands")
        assert info["sdk_version"] == version("openhands-sdk")

        body: dict[str, Any] = {
            "llm": llm_settings(fake_llm),
            "tools": [{"name": "terminal"}],
            "initial_message": {"role": "user", "content": [{"type": "text", "text": tag}]},
        }
        created = await client.post("/conversations", json=body)  # waits for the SDK import
        assert created.status_code == 201, f"{created.text}\n{server.transcript()}"
        conversation_id = created.json()["id"]
        await wait_status(server, client, conversation_id, "finished")

        events = await client.get(f"/conversations/{conversation_id}/events/search")
        observations = [e for e in events.json()["items"] if e["kind"] == "ObservationEvent"]
        assert any("frozen-42" in json.dumps(o) for o in observations), server.transcript()

        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await server.process.wait() == 0, server.transcript()
