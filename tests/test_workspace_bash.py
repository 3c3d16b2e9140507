"""The workspace API's commands, driven by the official `RemoteWorkspace` (as a user would,
in worker threads: its calls block) and by httpx and a raw socket for the rest, against the
real server. Processes are real; the tests count them to prove nothing is left running."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
from openhands.sdk import Workspace
from openhands.sdk.workspace import RemoteWorkspace
from trio_websocket import open_websocket_url

from tests.conftest import LiveServer, llm_settings, start_server, test_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from trio_websocket import WebSocketConnection

    from trio_openhands.testing.fake_llm import FakeLLM

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


async def call[T](function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


def workspace_of(server: LiveServer, **extra: Any) -> Any:
    return Workspace(host=server.url, working_dir=str(server.settings.workspace_dir), **extra)


def processes_matching(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@asynccontextmanager
async def signalled_ready(fifo: Path) -> AsyncIterator[str]:
    """A shell snippet that says "ready" through a FIFO; leaving the block waits for it
    (the reading blocks in a worker thread until the command writes)."""
    await trio.to_thread.run_sync(os.mkfifo, fifo)
    yield f"echo ready > {fifo}"
    with trio.fail_after(10):
        said = await trio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True)
    assert said == "ready\n"


async def next_bash_event(socket: WebSocketConnection, **match: Any) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            event = json.loads(await socket.get_message())
            if all(event.get(key) == value for key, value in match.items()):
                return event


async def test_execute_command_as_the_sdk_client_does(server: LiveServer) -> None:
    workspace = workspace_of(server)
    result = await call(workspace.execute_command, "pwd")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(server.settings.workspace_dir.absolute())
    failing = await call(workspace.execute_command, "echo out; echo err >&2; exit 3")
    assert (failing.exit_code, failing.stdout, failing.stderr) == (3, "out\n", "err\n")
    in_dir = await call(workspace.execute_command, "pwd", cwd="/tmp")
    assert in_dir.stdout.strip() == "/tmp"


async def test_a_timeout_kills_the_whole_process_tree(server: LiveServer) -> None:
    marker = f"sleep {300 + uuid.uuid4().int % 1000}.25"
    workspace = workspace_of(server)
    result = await call(workspace.execute_command, f"{marker} & {marker}; echo never", timeout=1)
    assert result.exit_code == -1
    assert "never" not in result.stdout
    # The client gives up after its own 1 s, as the server kills at its 1 s: wait for the
    # server's last event, which says why, and is published once the tree is gone.
    with trio.fail_after(20):
        while True:
            page = await server.client.get(
                "/api/bash/bash_events/search",
                params={"kind__eq": "BashOutput", "sort_order": "TIMESTAMP_DESC"},
            )
            last = page.json()["items"][:1]
            if last and last[0]["exit_code"] is not None:
                break
            await trio.sleep(0.05)  # polling the server, not waiting for one of our tasks
    assert "timed out after 1 seconds" in last[0]["stderr"]
    assert processes_matching(marker) == []


async def test_output_streams_while_a_command_runs_and_stop_ends_it(server: LiveServer) -> None:
    workspace = workspace_of(server)
    async with open_websocket_url(server.ws_url("/sockets/bash-events")) as socket:
        command_id = await call(
            workspace.start_command, "echo started; exec sleep 300", timeout=600
        )
        first = await next_bash_event(socket, kind="BashOutput", command_id=command_id)
        assert (first["stdout"], first["exit_code"], first["order"]) == ("started\n", None, 0)
        await call(workspace.stop_command, command_id)  # returns once the command ended
        last = await call(workspace.get_command_output, command_id)
        assert last is not None
        assert last["exit_code"] == -15  # SIGTERM, reported as the reference does
        live_last = await next_bash_event(socket, kind="BashOutput", exit_code=-15)
        assert live_last["id"] == last["id"]
    await call(workspace.stop_command, command_id)  # ended already: still a success
    unknown = await server.client.post(f"/api/bash/bash_commands/{uuid.uuid4()}/stop")
    assert unknown.status_code == 404


async def test_a_command_started_once_connected_has_all_its_output_on_the_socket(
    server: LiveServer,
) -> None:
    """The socket subscribes before its handshake is answered: an output that comes at once
    (before the server has had a chance to catch up) is not lost."""
    for attempt in range(20):
        async with open_websocket_url(server.ws_url("/sockets/bash-events")) as socket:
            started = await server.client.post(
                "/api/bash/start_bash_command", json={"command": f"echo at-once-{attempt}"}
            )
            assert started.status_code == 200
            command_id = started.json()["id"]
            event = await next_bash_event(socket, command_id=command_id, kind="BashOutput")
            assert event["stdout"] == f"at-once-{attempt}\n"


async def test_the_socket_replays_then_goes_live_with_no_gap(server: LiveServer) -> None:
    done = await server.client.post(
        "/api/bash/execute_bash_command", json={"command": "printf 'a\\nb\\n'"}
    )
    assert done.status_code == 200
    assert (done.json()["stdout"], done.json()["exit_code"]) == ("a\nb\n", 0)
    url = server.ws_url("/sockets/bash-events?resend_mode=all")
    async with open_websocket_url(url) as socket:
        seen: list[dict[str, Any]] = []
        await socket.send_message(json.dumps({"command": "echo live"}))
        with trio.fail_after(20):
            while (
                not any(e.get("stdout") == "live\n" for e in seen) or seen[-1]["exit_code"] is None
            ):
                seen.append(json.loads(await socket.get_message()))
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids))  # no duplicate
    kinds = [e["kind"] for e in seen]
    assert kinds[0] == "BashCommand"  # the replay starts at the first event kept
    assert kinds.count("BashCommand") == 2
    searched = await server.client.get("/api/bash/bash_events/search")
    assert [e["id"] for e in searched.json()["items"]] == ids  # what the socket saw, in order


async def test_bad_requests_are_4xx(server: LiveServer) -> None:
    for body, loc in (
        ({}, ["body", "command"]),
        ({"command": "true", "timeout": 0}, ["body", "timeout"]),
        ({"command": "true", "cwd": "/no/such/dir"}, ["body", "cwd"]),
        ({"command": "true", "cwd": "a\x00b"}, ["body", "cwd"]),
    ):
        response = await server.client.post("/api/bash/start_bash_command", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    assert (await server.client.get(f"/api/bash/bash_events/{uuid.uuid4()}")).status_code == 404
    assert (await server.client.get("/api/bash/bash_events/not-an-id")).status_code == 404
    bad_page = await server.client.get("/api/bash/bash_events/search", params={"page_id": "x"})
    assert bad_page.status_code == 400
    bad_time = await server.client.get(
        "/api/bash/bash_events/search", params={"timestamp__gte": "0001-01-01T00:00:00+14:00"}
    )
    assert bad_time.status_code == 422
    started = await server.client.post("/api/bash/start_bash_command", json={"command": "true"})
    batch = await server.client.get(
        "/api/bash/bash_events/", params={"event_ids": [started.json()["id"], str(uuid.uuid4())]}
    )
    assert batch.json()[0]["kind"] == "BashCommand"
    assert batch.json()[1] is None
    cleared = await server.client.delete("/api/bash/bash_events")
    assert cleared.json()["cleared_count"] >= 1


async def test_output_beyond_the_limit_is_drained_and_said(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, command_output_limit=1000))
    try:
        response = await server.client.post(
            "/api/bash/execute_bash_command",
            json={"command": "head -c 300000 /dev/zero | tr '\\0' a; echo; echo done >&2"},
        )
        result = response.json()
        assert result["exit_code"] == 0
        assert len(result["stdout"]) == 1000
        assert "299006 more were dropped" in result["stderr"]  # 300,006 bytes in all
    finally:
        await server.aclose()


async def test_conversation_scoped_commands_and_delete(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    working_dir = server.settings.workspace_dir / "scoped"
    created = await server.client.post(
        "/api/conversations",
        json={
            "agent": {"kind": "Agent", "llm": llm_settings(fake_llm)},
            "workspace": {"working_dir": str(working_dir), "kind": "LocalWorkspace"},
        },
    )
    conversation_id = created.json()["id"]
    workspace = RemoteWorkspace(
        host=server.url,
        working_dir=str(working_dir),
        runtime_conversation_id=uuid.UUID(conversation_id),
    )
    result = await call(workspace.execute_command, "pwd")
    assert result.stdout.strip() == str(working_dir)
    prefix = f"/api/conversations/{conversation_id}/bash"
    outside = await server.client.post(
        f"{prefix}/start_bash_command", json={"command": "true", "cwd": "/tmp"}
    )
    assert outside.status_code == 422
    global_page = await server.client.get("/api/bash/bash_events/search")
    assert result.stdout not in json.dumps(global_page.json())  # scopes are apart
    marker = f"sleep {400 + uuid.uuid4().int % 1000}.5"
    async with signalled_ready(working_dir / "ready") as ready_command:
        command = f"{ready_command}; {marker}"
        started = await server.client.post(
            f"{prefix}/start_bash_command", json={"command": command}
        )
        assert started.status_code == 200
    assert processes_matching(marker)
    assert (await server.client.delete(f"/api/conversations/{conversation_id}")).status_code == 200
    assert processes_matching(marker) == []
    gone = await server.client.get(f"{prefix}/bash_events/search")
    assert gone.status_code == 404


async def test_a_shutdown_leaves_no_command_behind(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, test_settings(tmp_path))
    marker = f"sleep {500 + uuid.uuid4().int % 1000}.75"
    async with open_websocket_url(server.ws_url("/sockets/bash-events")) as socket:
        command = f"echo ready; {marker} & {marker}"
        started = await server.client.post(
            "/api/bash/start_bash_command", json={"command": command}
        )
        await next_bash_event(socket, command_id=started.json()["id"], stdout="ready\n")
    assert processes_matching(marker)  # the two sleeps (and their shell)
    await server.aclose()
    assert processes_matching(marker) == []
