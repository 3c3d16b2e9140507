"""Shell commands run for clients (the workspace API's bash routes), one Trio task each.

The commands nursery belongs to the supervisor: a server shutdown cancels it. Each command
is a task with its own cancel scope around its process, which starts in a session (and so
a process group) of its own. Whatever ends a command (stop, its timeout, the deletion of
the conversation it belongs to, a shutdown) ends the whole group: SIGTERM, then SIGKILL
after STOP_GRACE_SECONDS, or SIGKILL at once on cancellation. When the shell itself exits,
what it left running in its group is killed too, so a command never outlives its
`BashOutput` with the exit code; a process meant to stay must leave the group (`setsid`).

Output is read as it comes and published in chunks (one `BashOutput` per read, up to
READ_CHUNK bytes, stdout and stderr apart), each with the next `order`; the last one carries
the exit code (-1 after a timeout or when the process could not start). A command keeps at
most `max_output_bytes` of output: beyond that the pipes are still drained (so the process
never blocks on a full pipe) but the bytes are dropped, and the last event says how many.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from trio_openhands.services.command_log import CommandLog

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
STOP_GRACE_SECONDS = 1.0
# After the shell exits, how long its output may take to drain (a process that left the
# group may hold the pipe open forever).
DRAIN_SECONDS = 1.0
DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
# Our own secrets stay out of the commands' environment.
_SECRET_ENV_PREFIXES = ("SESSION_API_KEY", "OH_SESSION_API_KEYS_", "OH_SECRET_KEY")

type ScopeKey = uuid.UUID | None  # a conversation's commands, or the host workspace's (None)


def command_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SECRET_ENV_PREFIXES)
    }


@dataclass
class RunningCommand:
    id: uuid.UUID
    scope: ScopeKey
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    finished: trio.Event = field(default_factory=trio.Event)
    spawned: trio.Event = field(default_factory=trio.Event)  # its process exists (or failed to)
    stop_requested: trio.Event = field(default_factory=trio.Event)


class CommandService:
    def __init__(
        self, *, subscriber_buffer: int, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    ) -> None:
        self._logs: dict[ScopeKey, CommandLog] = {}
        self._running: dict[uuid.UUID, RunningCommand] = {}
        self._subscriber_buffer = subscriber_buffer
        self._max_output_bytes = max_output_bytes
        self._nursery: trio.Nursery | None = None
        self.closed = False

    async def run(self, *, task_status: trio.TaskStatus[CommandService]) -> None:
        """The commands nursery: open until cancelled (the supervisor's shutdown)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.closed = True
            for command_log in self._logs.values():
                command_log.close()

    def log_of(self, scope: ScopeKey) -> CommandLog:
        if (found := self._logs.get(scope)) is None:
            found = self._logs[scope] = CommandLog(subscriber_buffer=self._subscriber_buffer)
        return found

    def running(self, command_id: uuid.UUID) -> RunningCommand | None:
        return self._running.get(command_id)

    def start(self, scope: ScopeKey, command: str, cwd: Path, timeout: int) -> RunningCommand:
        """Log the `BashCommand` and start its task; returns at once."""
        if self._nursery is None or self.closed:
            raise RuntimeError("the commands service is not running")
        running = RunningCommand(id=uuid.uuid4(), scope=scope)
        self.log_of(scope).append(
            "BashCommand",
            {"command": command, "cwd": str(cwd), "timeout": timeout},
            event_id=running.id,
        )
        self._running[running.id] = running
        self._nursery.start_soon(self._run_command, running, command, cwd, timeout)
        return running

    async def stop(self, command_id: uuid.UUID) -> bool:
        """Stop a running command and wait until it has ended; False if not running."""
        running = self._running.get(command_id)
        if running is None:
            return False
        running.stop_requested.set()
        await running.finished.wait()
        return True

    async def stop_scope(self, scope: ScopeKey) -> None:
        """End every command of `scope` at once (its conversation is being deleted)."""
        doomed = [r for r in self._running.values() if r.scope == scope]
        for running in doomed:
            running.cancel_scope.cancel()
        for running in doomed:
            await running.finished.wait()
        if (command_log := self._logs.pop(scope, None)) is not None:
            command_log.close()

    async def _run_command(
        self, running: RunningCommand, command: str, cwd: Path, time_limit: float
    ) -> None:
        output = _Output(self.log_of(running.scope), running.id, self._max_output_bytes)
        exit_code = -1
        try:
            with running.cancel_scope:
                exit_code = await self._supervise(running, output, command, cwd, time_limit)
        except OSError as error:  # bash missing, cwd vanished, out of processes
            output.note(f"Error executing command: {error}")
        finally:
            output.finish(exit_code)
            del self._running[running.id]
            running.spawned.set()  # if it never got that far
            running.finished.set()
            log.info("bash command %s ended with %d", running.id, exit_code)

    async def _supervise(
        self,
        running: RunningCommand,
        output: _Output,
        command: str,
        cwd: Path,
        time_limit: float,
    ) -> int:
        process = await trio.lowlevel.open_process(
            ["/bin/bash", "-c", command],
            cwd=cwd,
            env=command_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        running.spawned.set()
        group = process.pid  # the session leader's pid is the group's id
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                assert process.stderr is not None
                nursery.start_soon(output.read, process.stdout, "stdout")
                nursery.start_soon(output.read, process.stderr, "stderr")
                ended = await _wait_or_stop(process, running, time_limit)
                if ended == "timeout":
                    output.note(f"Command timed out after {time_limit:g} seconds")
                await _end_group(group, process, gentle=ended != "exited")
                with trio.move_on_after(DRAIN_SECONDS):
                    await output.drained.wait()
                nursery.cancel_scope.cancel()
            return -1 if ended == "timeout" else _exit_status(process)
        finally:
            with trio.CancelScope(shield=True):  # cancelled (delete, shutdown): kill now
                if process.returncode is None or _group_alive(group):
                    _signal_group(group, signal.SIGKILL)
                    with trio.move_on_after(STOP_GRACE_SECONDS):
                        await process.wait()
                        await _group_gone(group)
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        await stream.aclose()


async def _wait_or_stop(process: trio.Process, running: RunningCommand, time_limit: float) -> str:
    """'exited', 'stopped' or 'timeout': whichever happens first."""
    outcome = "timeout"
    with trio.move_on_after(time_limit):
        async with trio.open_nursery() as nursery:

            async def exited() -> None:
                nonlocal outcome
                await process.wait()
                outcome = "exited"
                nursery.cancel_scope.cancel()

            async def stopped() -> None:
                nonlocal outcome
                await running.stop_requested.wait()
                outcome = "stopped"
                nursery.cancel_scope.cancel()

            nursery.start_soon(exited)
            nursery.start_soon(stopped)
    return outcome


async def _end_group(group: int, process: trio.Process, *, gentle: bool) -> None:
    """The group's remaining processes end: SIGTERM first when asked, SIGKILL after."""
    if gentle:
        _signal_group(group, signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_SECONDS):
            await process.wait()
    _signal_group(group, signal.SIGKILL)
    await process.wait()
    with trio.move_on_after(STOP_GRACE_SECONDS):
        await _group_gone(group)


async def _group_gone(group: int) -> None:
    """Return once no process is left in the group. SIGKILL takes effect asynchronously,
    and what the shell left behind is not our child (there is nothing to wait on): without
    this, a delete or a shutdown could return while such a process is still dying. The
    caller bounds it (a zombie whose new parent never reaps it stays a member)."""
    while _group_alive(group):  # noqa: ASYNC110 (the kernel has no event for a group)
        await trio.sleep(0.005)


def _signal_group(group: int, signum: signal.Signals) -> None:
    # The group may be gone (or its id taken by another user's group).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _exit_status(process: trio.Process) -> int:
    """The shell's status; -N when a signal N ended it (as the reference reports it)."""
    code = process.returncode
    assert code is not None
    return code


class _Output:
    """One command's output: decoded incrementally, numbered, capped."""

    def __init__(self, command_log: CommandLog, command_id: uuid.UUID, cap: int) -> None:
        self._log = command_log
        self._command_id = command_id
        self._cap = cap
        self._kept = 0
        self._dropped = 0
        self._order = 0
        self._notes: list[str] = []
        self._open_streams = 2
        self.drained = trio.Event()

    async def read(self, stream: trio.abc.ReceiveStream, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while chunk := await stream.receive_some(READ_CHUNK):
                room = max(0, self._cap - self._kept)
                self._dropped += max(0, len(chunk) - room)
                kept = chunk[:room]
                self._kept += len(kept)
                if text := decoder.decode(kept):
                    self._publish({name: text})
            if tail := decoder.decode(b"", final=True):
                self._publish({name: tail})
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self._open_streams -= 1
            if self._open_streams == 0:
                self.drained.set()

    def note(self, text: str) -> None:
        self._notes.append(text)

    def _publish(self, fields: dict[str, object]) -> None:
        self._log.append(
            "BashOutput",
            {
                "command_id": self._command_id,
                "order": self._order,
                "exit_code": None,
                "stdout": None,
                "stderr": None,
                **fields,
            },
        )
        self._order += 1

    def finish(self, exit_code: int) -> None:
        notes = list(self._notes)
        if self._dropped:
            notes.append(
                f"[output cut: this command kept its first {self._cap} bytes; "
                f"{self._dropped} more were dropped]"
            )
        self._publish({"exit_code": exit_code, "stderr": "\n".join(notes) or None})
