"""A closing conversation's subprocess terminals: what runs in them ended, then the shells
and their reader threads, before the SDK closes their PTYs.

The SDK's `SubprocessTerminal.close()` closes the PTY's master descriptor and only then
joins the thread that reads it. A reader still in `select()` on that descriptor logs
"PTY reader thread error: [Errno 9] Bad file descriptor" at ERROR (the soak saw it at
shutdown); worse, once the number is reused by another file (a socket this server just
accepted), that thread may read from it. The reader ends by itself once it sees the shell
gone, so before the SDK's close we end the shell and wait for the reader: the SDK's close
then finds nothing left to race with. Blocking; run it in a worker thread.

A command still running in the shell (the agent's `sleep 30`, a build) is killed first, its
whole process group: the shell reads the `exit` only once its foreground job has ended,
and the SDK's own close escalates to signals for the shell's group alone, which a job
started with job control is not in. That job then died only of the hang-up the kernel sends
once the terminal goes, after the close had returned, so "nothing left running" after a
delete was a race (lost when the machine was busy), and the shell took 2 s to give up on.

Background jobs (`npm run dev &`) are in the shell's session too, and survive its exit:
bash does not hang them up, and the kernel's hang-up goes to the foreground alone. When the
conversation ends for good (deleted, the server shutting down, moved to another instance)
the shell is stopped (so it starts nothing more, not even a command waiting in its input),
every other process of its session is killed, and then the shell. An idle unload keeps the
background jobs (`keep_background_jobs`): the conversation is loaded again on its next use,
and the agent may expect its dev server to be up (kept_jobs.py ends them with the
conversation). A process that left the session (`setsid`, a daemon's double fork) is out
of reach, as it is of a terminal's hang-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from trio_openhands.core.process_table import is_running, session_members

log = logging.getLogger(__name__)

SHELL_EXIT_SECONDS = 2.0  # what the SDK's own close gives the shell before a signal
READER_EXIT_SECONDS = 1.0  # the reader looks every 0.1 s
FOREGROUND_CHECK_SECONDS = 0.05  # how often a shell slow to exit is checked for a command


def settle_terminals(sdk_conversation: Any, *, keep_background_jobs: bool = False) -> list[int]:
    """End the shell of every started subprocess terminal (and, unless told to keep them,
    whatever else runs in its session) and wait for its reader. The sessions whose jobs
    were kept running, by their (ended) shells' pids."""
    kept: list[int] = []
    for terminal in subprocess_terminals(sdk_conversation):
        process = terminal.process
        if process is None or terminal.closed:
            continue
        if process.poll() is not None:
            ended = True
            if not keep_background_jobs:
                kill_session(process.pid)  # the shell exited, its jobs may not have
        elif keep_background_jobs:
            ended = end_shell(terminal)
            if ended and session_members(process.pid):
                kept.append(process.pid)
        else:
            ended = end_session(process)
        if not ended:
            continue  # left to the SDK's close, which signals the process group
        reader = terminal.reader_thread
        if reader is not None:
            reader.join(timeout=READER_EXIT_SECONDS)
            if reader.is_alive():
                log.warning(
                    "a terminal's reader thread outlived its shell by %.1f s", READER_EXIT_SECONDS
                )
    return kept


def end_shell(terminal: Any) -> bool:
    """Ask the shell to exit, killing whatever command runs in its foreground: one that was
    waiting in its input (sent as the run was cancelled) may start before the shell reads
    the `exit`. Whether the shell ended within SHELL_EXIT_SECONDS."""
    process = terminal.process
    kill_foreground_job(terminal)
    with contextlib.suppress(OSError, RuntimeError):
        terminal._write_pty(b"exit\n")
    deadline = time.monotonic() + SHELL_EXIT_SECONDS
    while True:
        try:
            process.wait(timeout=FOREGROUND_CHECK_SECONDS)
            return True
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                return False
            kill_foreground_job(terminal)


def kill_foreground_job(terminal: Any) -> None:
    """SIGKILL the process group in the terminal's foreground unless it is the shell's own
    (then no command is running), and wait until it is gone (the shell reaps it)."""
    descriptor = terminal._pty_master_fd
    if descriptor is None:
        return
    try:
        foreground = os.tcgetpgrp(descriptor)
        if foreground in (os.getpgid(terminal.process.pid), os.getpgrp()):
            return
        os.killpg(foreground, signal.SIGKILL)
    except OSError:  # no such group (it ended), or the shell is gone: nothing runs there
        return
    deadline = time.monotonic() + SHELL_EXIT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(foreground, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)  # another process's exit: poll, bounded
    log.warning("a terminal's command outlived SIGKILL by %.1f s", SHELL_EXIT_SECONDS)


def end_session(shell: Any) -> bool:
    """Stop the shell, kill every other process of its session, then kill the shell.
    Whether the shell ended within SHELL_EXIT_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(shell.pid, signal.SIGSTOP)
    kill_session(shell.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(shell.pid, signal.SIGKILL)
    try:
        shell.wait(timeout=SHELL_EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return True


def kill_session(leader: int) -> None:
    """SIGKILL every process in the session `leader` leads, the leader apart (process groups
    whole, so a job's children go with it), and wait (bounded) until each has died. The
    session's id stays reserved while any process is in it, so it names no other."""
    members = session_members(leader)
    if members:
        log.info("killing %d processes left running in a terminal's session", len(members))
    for pid, group in members:
        with contextlib.suppress(OSError):  # it ended meanwhile
            if group == leader:
                os.kill(pid, signal.SIGKILL)  # in the shell's own group: a subshell
            else:
                os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + SHELL_EXIT_SECONDS
    while alive := [pid for pid, _ in members if is_running(pid)]:
        if time.monotonic() >= deadline:
            log.warning("%d processes of a terminal outlived SIGKILL", len(alive))
            return
        time.sleep(0.01)  # their exits: poll, bounded


def subprocess_terminals(sdk_conversation: Any) -> Iterator[Any]:
    """The SDK's `SubprocessTerminal`s behind the conversation's terminal executors."""
    from openhands.tools.terminal.terminal.subprocess_terminal import SubprocessTerminal

    try:
        tools_map = getattr(getattr(sdk_conversation, "agent", None), "tools_map", None) or {}
    except RuntimeError:  # the agent was never initialized (never ran): no terminal started
        return
    for tool in list(tools_map.values()):
        executor = getattr(tool, "executor", None)
        sessions = [getattr(executor, "_session", None)]
        sessions += list((getattr(executor, "_sessions", None) or {}).values())
        for session in sessions:
            terminal = getattr(session, "terminal", None)
            if isinstance(terminal, SubprocessTerminal):
                yield terminal
