"""A new subprocess terminal waits for its shell to answer, not a blind second."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trio_openhands.core import terminal_ready
from trio_openhands.core.sdk_loader import import_sdk


@pytest.fixture
def sessions() -> Iterator[list[Any]]:
    """The SDK's TerminalSessions made in the test, closed after it."""
    import_sdk()  # installs terminal_ready, as the server's SDK import does
    made: list[Any] = []
    yield made
    for session in made:
        session.close()


def terminal_session(work_dir: Path, sessions: list[Any], **options: Any) -> Any:
    from openhands.tools.terminal.terminal.subprocess_terminal import SubprocessTerminal
    from openhands.tools.terminal.terminal.terminal_session import TerminalSession

    session = TerminalSession(SubprocessTerminal(str(work_dir), **options))
    sessions.append(session)
    return session


def test_a_terminal_is_ready_as_soon_as_its_shell_has_run_the_set_up(
    tmp_path: Path, sessions: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from openhands.tools.terminal.definition import TerminalAction

    session = terminal_session(tmp_path, sessions)
    began = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger=terminal_ready.__name__):
        session.initialize()
    took = time.monotonic() - began
    # However busy the machine, no blind second follows the shell's answer.
    answers = [r for r in caplog.records if r.getMessage().startswith("a terminal's shell was")]
    assert len(answers) == 1
    ready_after = float(answers[0].args[0])  # type: ignore[index]
    assert took - ready_after < terminal_ready.SDK_SETTLE_SECONDS / 2
    # The set-up took effect (no history expansion: `!x` stays as typed), and nothing of
    # the readiness check is in the first command's output.
    observation = session.execute(TerminalAction(command="echo first; echo 'a!x'"))
    assert observation.metadata.exit_code == 0
    assert observation.text.replace("\x1b[?2004l", "").replace("\x1b[?2004h", "").split() == [
        "first",
        "a!x",
    ]
    assert "ready-" not in observation.text


def test_a_shell_that_never_answers_is_given_up_on_after_the_timeout(
    tmp_path: Path,
    sessions: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK then goes on as it would have after its own second."""
    mute = tmp_path / "mute-shell"
    mute.write_text("#!/bin/sh\nexec sleep 30\n")  # reads nothing, prints nothing
    mute.chmod(0o755)
    monkeypatch.setattr(terminal_ready, "READY_TIMEOUT_SECONDS", 0.3)
    session = terminal_session(tmp_path, sessions, shell_path=str(mute))
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=terminal_ready.__name__):
        session.initialize()
    assert 0.3 <= time.monotonic() - began < 2.0
    assert "did not answer" in caplog.text
    os.killpg(session.terminal.process.pid, signal.SIGKILL)  # its close would wait 2 s
