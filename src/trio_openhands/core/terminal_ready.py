"""A new subprocess terminal is ready once its shell has run the SDK's set-up, not after 1 s.

The SDK's `SubprocessTerminal.initialize` writes its set-up command (the prompt that marks
each command's end, history expansion off), then sleeps 1 s blindly. Every conversation's
first terminal command waited that second; on a busy machine the second may also be too
short. Here that one sleep waits instead for the shell to answer: a `printf` sent after the
set-up, whose output (`ready-<token>`, which its echoed input does not contain) can appear
only once the shell has run everything before it, followed by the SDK's prompt. After
READY_TIMEOUT_SECONDS without it the SDK goes on as it would have. The SDK then drops what
the terminal printed up to its last prompt, the `printf` included; the command begins with
a space, which keeps it out of the history where `HISTCONTROL` ignores such commands.

Only the sleep of 1 s inside `initialize` on the thread running it is changed: the
module's other sleeps, and every other thread's, are the `time.sleep` they were.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from typing import Any

from trio_openhands.core.terminal_spawn import module_with

log = logging.getLogger(__name__)

SDK_SETTLE_SECONDS = 1.0  # the SDK's blind wait after its set-up command
READY_TIMEOUT_SECONDS = 5.0


class _Initializing(threading.local):
    terminal: Any = None  # the terminal whose `initialize` runs on this thread


_initializing = _Initializing()


def wait_until_ready(terminal: Any) -> bool:
    """Send the `printf` and wait for its output and the prompt after it."""
    from openhands.tools.terminal.constants import CMD_OUTPUT_PS1_END

    token = secrets.token_hex(6)
    answered = re.compile(
        re.escape(f"ready-{token}") + r"\r?\n[\s\S]*" + re.escape(CMD_OUTPUT_PS1_END.rstrip())
    )
    terminal._write_pty(f" printf '%s%s\\n' ready- {token}\n".encode())
    return bool(terminal._wait_for_output(answered, timeout=READY_TIMEOUT_SECONDS))


def _sleep(seconds: float) -> None:
    terminal = _initializing.terminal
    if terminal is None or seconds != SDK_SETTLE_SECONDS:
        time.sleep(seconds)
        return
    _initializing.terminal = None  # the first such sleep only
    began = time.monotonic()
    if wait_until_ready(terminal):
        log.debug("a terminal's shell was ready after %.3f s", time.monotonic() - began)
    else:
        log.warning("a terminal's shell did not answer in %.0f s", READY_TIMEOUT_SECONDS)


def install() -> None:
    """Make the SDK's `SubprocessTerminal.initialize` wait for its shell. Idempotent."""
    from openhands.tools.terminal.terminal import subprocess_terminal

    terminal_class = subprocess_terminal.SubprocessTerminal
    original = terminal_class.initialize
    if getattr(original, "waits_for_the_shell", False):
        return

    def initialize(self: Any) -> None:
        _initializing.terminal = self
        try:
            original(self)
        finally:
            _initializing.terminal = None

    initialize.waits_for_the_shell = True  # type: ignore[attr-defined]
    terminal_class.initialize = initialize
    subprocess_terminal.__dict__["time"] = module_with(time, sleep=_sleep)
