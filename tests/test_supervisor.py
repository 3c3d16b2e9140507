"""The supervisor and its cancel scopes, driven directly and through the server."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import start_server, test_settings, wait_status
from tests.test_conversations import events_of, start
from trio_openhands.core.asyncio_host import CANCEL_GRACE_SECONDS, AsyncioHost
from trio_openhands.core.conversation import Conversation
from trio_openhands.core.models import StartConversationRequest, TextPart
from trio_openhands.core.other_instances import OtherInstances
from trio_openhands.core.sdk_bridge import to_message
from trio_openhands.core.sdk_loader import SdkLoader
from trio_openhands.core.seed_create import create_seed_conversation
from trio_openhands.core.supervisor import Supervisor
from trio_openhands.core.terminal_close import (
    kill_session,
    settle_terminals,
    subprocess_terminals,
)
from trio_openhands.settings import Settings
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call


async def test_asyncio_host_returns_results_and_errors() -> None:
    host = AsyncioHost("test-host")
    try:

        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        async def fail() -> None:
            raise ValueError("from asyncio")

        assert await host.run(answer) == 42
        with pytest.raises(ValueError, match="from asyncio"):
            await host.run(fail)
    finally:
        await host.aclose()
    assert not any(t.name == "test-host" for t in threading.enumerate())


def this_threads_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
@pytest.mark.parametrize("niceness", [0, 5])
async def test_the_asyncio_hosts_threads_run_below_the_trio_threads_priority(
    niceness: int,
) -> None:
    host = AsyncioHost("test-host", niceness=niceness)
    server = this_threads_niceness()

    async def on_the_loop() -> tuple[int, int]:
        in_a_tool_thread = await asyncio.get_running_loop().run_in_executor(
            None, this_threads_niceness
        )
        return this_threads_niceness(), in_a_tool_thread

    try:
        expected = min(19, server + niceness)
        assert await host.run(on_the_loop) == (expected, expected)
        assert this_threads_niceness() == server  # the Trio thread keeps its own
    finally:
        await host.aclose()


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
async def test_a_servers_agents_run_at_its_agent_niceness(
    tmp_path: Path, nursery: trio.Nursery, fake_llm: FakeLLM
) -> None:
    assert Settings.from_env({"OPENHANDS_AGENT_NICENESS": "3"}).agent_niceness == 3
    assert Settings.from_env({}).agent_niceness == 10
    server = await start_server(nursery, test_settings(tmp_path, agent_niceness=3))
    try:
        tag = fake_llm.script("nice", [tool_call("terminal", {"command": "true"}), finish()])
        info = await start(server, fake_llm, f"nice {tag}", tools=[{"name": "BashTool"}])
        await wait_status(server, info["id"], "finished")
        agents = [t for t in threading.enumerate() if t.name.startswith("sdk-asyncio")]
        assert {t.name for t in agents} >= {"sdk-asyncio", "sdk-asyncio-tool_0"}
        niceness = {os.getpriority(os.PRIO_PROCESS, t.native_id or 0) for t in agents}
        assert niceness == {min(19, this_threads_niceness() + 3)}
    finally:
        await server.aclose()


async def test_trio_cancellation_cancels_the_asyncio_task_and_waits_for_its_cleanup() -> None:
    host = AsyncioHost("test-host")
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()
    cleaned_up: list[str] = []

    async def long_call() -> None:
        token.run_sync_soon(started.set)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # clean-up that itself awaits, as the SDK's does
            cleaned_up.append("done")
            raise

    try:
        with trio.CancelScope() as run_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(host.run, long_call)
                await started.wait()
                run_scope.cancel()
        assert run_scope.cancelled_caught
        assert cleaned_up == ["done"], "the caller sees the task's clean-up completed"
    finally:
        await host.aclose()


async def test_a_task_that_ignores_cancellation_is_abandoned_after_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = AsyncioHost("test-host")
    started, release = trio.Event(), threading.Event()
    token = trio.lowlevel.current_trio_token()

    async def stubborn() -> None:
        token.run_sync_soon(started.set)
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # swallows every cancellation

    before = trio.current_time()
    try:
        with trio.CancelScope() as run_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(host.run, stubborn)
                await started.wait()
                before = trio.current_time()
                run_scope.cancel()
        assert trio.current_time() - before == pytest.approx(CANCEL_GRACE_SECONDS)
    finally:
        release.set()
        await host.aclose()


async def test_runs_wait_for_a_slot_visibly(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, max_concurrent_runs=1))
    try:
        tag_a = fake_llm.script("slot-a", [text("a done", delay=30)])
        tag_b = fake_llm.script("slot-b", [text("b done")])
        first = await start(server, fake_llm, f"a {tag_a}")
        await fake_llm.wait_for_request(script="slot-a", step=0)
        second = await start(server, fake_llm, f"b {tag_b}")
        waiting = (await server.client.get(f"/conversations/{second['id']}")).json()
        assert waiting["waiting_for_run_slot"] is True
        assert waiting["status"] == "idle"
        stats = (await server.client.get("/server_info")).json()["statistics"]
        assert stats["runs_active"] == 1
        assert stats["runs_waiting_for_slot"] == 1
        await server.client.post(f"/conversations/{first['id']}/pause")
        await wait_status(server, second["id"], "finished")
        assert not any(r.script == "slot-b" and r.aborted for r in fake_llm.requests)
    finally:
        await server.aclose()


async def test_pause_while_waiting_for_a_slot(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, max_concurrent_runs=1))
    try:
        tag_a = fake_llm.script("hold", [text("a done", delay=30)])
        first = await start(server, fake_llm, f"a {tag_a}")
        await fake_llm.wait_for_request(script="hold", step=0)
        queued = await start(server, fake_llm, "b")
        paused = await server.client.post(f"/conversations/{queued['id']}/pause")
        assert paused.json()["status"] == "paused"
        assert any(e["kind"] == "PauseEvent" for e in await events_of(server, queued["id"]))
        deleted = await server.client.delete(f"/conversations/{first['id']}")
        assert deleted.status_code == 200
        # The freed slot is not taken by the paused conversation.
        info = (await server.client.get(f"/conversations/{queued['id']}")).json()
        assert info["status"] == "paused"
        assert info["waiting_for_run_slot"] is False
    finally:
        await server.aclose()


async def test_supervisor_create_and_delete_without_a_server(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    settings = test_settings(tmp_path)
    supervisor: Supervisor = await nursery.start(Supervisor(settings, SdkLoader()).run)
    request = StartConversationRequest.model_validate(
        {
            "llm": {"model": "openai/fake", "base_url": fake_llm.base_url, "api_key": "k"},
            "tools": [{"name": "terminal"}],
        }
    )
    conversation = await create_seed_conversation(supervisor, request)
    folder = settings.conversations_dir / conversation.id.hex
    assert (folder / "meta.json").is_file()
    assert supervisor.statistics()["loaded"] == 1
    # Two concurrent lookups of a loaded conversation get the same object.
    found: list[object] = []
    async with trio.open_nursery() as lookups:
        for _ in range(2):
            lookups.start_soon(lambda: _append_found(supervisor, conversation.id, found))
    assert found == [conversation, conversation]
    await supervisor.delete(conversation.id)
    assert conversation.closed.is_set()
    assert not folder.exists()
    assert supervisor.statistics() == {**supervisor.statistics(), "conversations": 0, "loaded": 0}


async def _append_found(
    supervisor: Supervisor, conversation_id: object, found: list[object]
) -> None:
    found.append(await supervisor.get(conversation_id))  # type: ignore[arg-type]


async def test_an_unused_conversation_is_unloaded_and_loads_again(
    nursery: trio.Nursery, tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """On a mock clock that only moves when told to (the SDK works in real threads)."""
    settings = test_settings(tmp_path, idle_unload_seconds=600)
    supervisor: Supervisor = await nursery.start(Supervisor(settings, SdkLoader()).run)
    request = StartConversationRequest.model_validate({"llm": {"model": "openai/fake"}})
    conversation = await create_seed_conversation(supervisor, request)
    await conversation.send_message(to_message([TextPart(text="remember me")]), run=False)
    events_before = [e.id for e in conversation.log.events]
    assert events_before

    async def idle_for(seconds: float) -> None:
        mock_clock.jump(seconds)
        await trio.testing.wait_all_tasks_blocked()

    # A socket keeps it loaded however long it stays quiet.
    with conversation.log.subscribe(None):
        await idle_for(3 * 600)
        assert supervisor.loaded[conversation.id] is conversation
    # Each use restarts the idle time.
    await idle_for(500)
    assert await supervisor.get(conversation.id) is conversation
    await idle_for(500)
    assert not conversation.unloading

    await idle_for(200)
    assert conversation.unloading
    await conversation.closed.wait()
    assert conversation.id not in supervisor.loaded
    assert supervisor.statistics()["conversations"] == 1
    again = await supervisor.get(conversation.id)
    assert again is not conversation
    assert [e.id for e in again.log.events] == events_before


async def run_one_terminal_command(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM, **settings_changes: Any
) -> tuple[Supervisor, Conversation, Any]:
    """A supervisor, and a conversation whose agent ran `echo up` in its one terminal."""
    settings = test_settings(tmp_path, **settings_changes)
    supervisor: Supervisor = await nursery.start(Supervisor(settings, SdkLoader()).run)
    tag = fake_llm.script("shell", [tool_call("terminal", {"command": "echo up"}), finish()])
    request = StartConversationRequest.model_validate(
        {
            "llm": {"model": "openai/fake", "base_url": fake_llm.base_url, "api_key": "k"},
            "tools": [{"name": "terminal"}],
        }
    )
    conversation = await create_seed_conversation(supervisor, request)
    await conversation.send_message(to_message([TextPart(text=f"{tag} go")]), run=True)
    await conversation.wait_run_finished()
    terminals = list(subprocess_terminals(conversation.sdk))
    assert len(terminals) == 1
    return supervisor, conversation, terminals[0]


async def test_a_terminal_shell_starts_in_its_own_session_without_a_fork_hook(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The SDK asks for `preexec_fn=os.setsid`, which makes CPython fork the whole server
    with the GIL held (and run the process's at-fork hooks); terminal_spawn makes it
    `start_new_session=True`: the same new session, with no fork of the server."""
    forks: list[int] = []
    forks_counted = threading.Event()
    forks_counted.set()
    os.register_at_fork(before=lambda: forks.append(1) if forks_counted.is_set() else None)
    try:
        supervisor, conversation, terminal = await run_one_terminal_command(
            nursery, tmp_path, fake_llm
        )
    finally:
        forks_counted.clear()  # the hook stays registered for the process: make it inert
    observations = [e for e in conversation.log.events if e.kind == "ObservationEvent"]
    assert observations, "the command ran"
    assert '"exit_code":0' in observations[0].json.replace(" ", "")
    assert os.getsid(terminal.process.pid) == terminal.process.pid, "a session of its own"
    assert forks == [], "and the server was not forked to start it"
    await supervisor.delete(conversation.id)


async def test_closing_a_conversation_ends_its_terminal_readers_before_the_pty_closes(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK closes a terminal's PTY under its reader thread (an ERROR line, and a reused
    descriptor read by a stray thread); `settle_terminals` ends shell and reader first."""
    supervisor, conversation, terminal = await run_one_terminal_command(nursery, tmp_path, fake_llm)
    terminals = [terminal]
    assert terminals[0].reader_thread.is_alive()

    await trio.to_thread.run_sync(settle_terminals, conversation.sdk)
    terminal = terminals[0]
    assert terminal.process.poll() is not None, "the shell has ended"
    assert not terminal.reader_thread.is_alive(), "and its reader with it"
    assert terminal._pty_master_fd is not None, "while the PTY is still open"

    await supervisor.delete(conversation.id)
    assert terminal.closed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("keep_background_jobs", [False, True])
async def test_settling_a_terminal_kills_the_commands_running_in_it(
    keep_background_jobs: bool, nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """A command in the shell's foreground is in a process group of its own (job control),
    which the SDK's close never signals; one that ignores the terminal's hang-up would
    outlive the conversation. `settle_terminals` kills it, and the next one the shell would
    start before it reads the `exit` (here, the list's second command): when the shell is
    to exit (an unload), that one is killed in turn; otherwise the shell is stopped first
    and never starts it."""
    supervisor, conversation, terminal = await run_one_terminal_command(nursery, tmp_path, fake_llm)
    shell_group = os.getpgid(terminal.process.pid)
    terminal._write_pty(b"trap '' HUP; sleep 30.2718; sleep 31.4159\n")
    with trio.fail_after(10):
        while True:  # the shell starts it in another process: poll, bounded
            job = os.tcgetpgrp(terminal._pty_master_fd)
            if job != shell_group:
                break
            await trio.sleep(0.01)

    began = trio.current_time()
    await trio.to_thread.run_sync(
        partial(settle_terminals, conversation.sdk, keep_background_jobs=keep_background_jobs)
    )
    assert trio.current_time() - began < 1.0  # not the 2 s the shell's `exit` waited for
    assert terminal.process.poll() is not None
    running = await running_commands()
    assert b"sleep 30.2718" not in running
    assert b"sleep 31.4159" not in running
    await supervisor.delete(conversation.id)


async def start_background_jobs(terminal: Any) -> list[bytes]:
    """Have the terminal's shell start two background jobs that ignore the hang-up (one a
    subshell with a child), as `nohup npm run dev &` would; return what `ps` shows of them."""
    durations = [30 + int.from_bytes(os.urandom(2)) / 100_000 for _ in range(2)]
    sleepers = [f"sleep {d:.5f}".encode() for d in durations]
    terminal._write_pty(b"trap '' HUP; %s & (%s; true) &\n" % tuple(sleepers))
    for _ in range(1000):  # the shell starts them in other processes: poll, bounded
        running = await running_commands()
        if all(sleeper in running for sleeper in sleepers):
            return sleepers
    raise AssertionError("the background jobs did not start")


async def running_commands() -> bytes:
    return (await trio.run_process(["ps", "-eo", "args"], capture_stdout=True)).stdout


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="a session's processes are read from /proc")
@pytest.mark.parametrize("end", ["delete", "shutdown"])
async def test_a_conversation_that_ends_kills_its_terminals_background_jobs(
    end: str, tmp_path: Path, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Bash does not hang up its background jobs when it exits, so a deleted conversation's
    `dev server &` ran on with nothing to manage it; now nothing of its session is left."""
    async with trio.open_nursery() as serving:
        supervisor, conversation, terminal = await run_one_terminal_command(
            serving, tmp_path, fake_llm
        )
        sleepers = await start_background_jobs(terminal)
        if end == "delete":
            await supervisor.delete(conversation.id)
            assert conversation.closed.is_set()
        serving.cancel_scope.cancel()  # the server shuts down (after the delete: nothing left)
    assert conversation.closed.is_set()
    left = await running_commands()
    assert [sleeper for sleeper in sleepers if sleeper in left] == []
    # The two jobs, and the subshell's sleep (a prompt being drawn may add a subshell).
    assert re.search(r"killing [3-9] processes left running in a terminal's session", caplog.text)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="a session's processes are read from /proc")
async def test_the_background_jobs_of_a_shell_that_exited_are_killed_too(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The agent ran `exit` (or the shell died): its session lives on in its jobs."""
    supervisor, conversation, terminal = await run_one_terminal_command(nursery, tmp_path, fake_llm)
    sleepers = await start_background_jobs(terminal)
    terminal._write_pty(b"exit\n")
    await trio.to_thread.run_sync(partial(terminal.process.wait, timeout=10))
    assert [sleeper for sleeper in sleepers if sleeper in await running_commands()] == sleepers
    await trio.to_thread.run_sync(settle_terminals, conversation.sdk)
    assert [sleeper for sleeper in sleepers if sleeper in await running_commands()] == []
    await supervisor.delete(conversation.id)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="a session's processes are read from /proc")
@pytest.mark.parametrize("end", ["delete", "deleted elsewhere", "shutdown"])
async def test_an_idle_unload_keeps_a_terminals_background_jobs_until_the_conversation_ends(
    end: str, tmp_path: Path, fake_llm: FakeLLM, mock_clock: trio.testing.MockClock
) -> None:
    """The conversation is loaded again on its next use, and its agent may count on the dev
    server it started: an unload ends the shell, not what runs in the background. Deleting
    the conversation later (here, or on another instance sharing the database), or stopping
    the server, ends those too."""
    shell = None
    try:
        async with trio.open_nursery() as serving:
            supervisor, conversation, terminal = await run_one_terminal_command(
                serving, tmp_path, fake_llm, idle_unload_seconds=600
            )
            shell = terminal.process
            sleepers = await start_background_jobs(terminal)
            mock_clock.jump(601)
            await conversation.closed.wait()
            assert shell.poll() is not None, "the shell has ended"
            left = await running_commands()
            assert [sleeper for sleeper in sleepers if sleeper in left] == sleepers
            if end == "delete":
                await supervisor.delete(conversation.id)  # loads it again, then deletes it
                left = await running_commands()
                assert [sleeper for sleeper in sleepers if sleeper in left] == []
            if end == "deleted elsewhere":  # what the shared store reports: it is not loaded
                OtherInstances(supervisor).deleted_elsewhere(conversation.id)
                assert conversation.id not in supervisor.records
                for _ in range(1000):  # killed in a task of its own: poll, bounded
                    left = await running_commands()
                    if not [sleeper for sleeper in sleepers if sleeper in left]:
                        break
                assert [sleeper for sleeper in sleepers if sleeper in left] == []
            serving.cancel_scope.cancel()
        left = await running_commands()
        assert [sleeper for sleeper in sleepers if sleeper in left] == []
    finally:
        if shell is not None:  # whatever failed, leave nothing behind
            await trio.to_thread.run_sync(kill_session, shell.pid)
