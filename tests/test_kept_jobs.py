"""The sessions an idle unload kept, killed when their conversation ends for good."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import trio

from trio_openhands.core.kept_jobs import KeptJobs
from trio_openhands.core.process_table import is_running, session_members

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


@pytest.fixture
def led() -> Iterator[subprocess.Popen[bytes]]:
    """A shell leading a session of its own, with a background job."""
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        yield leader
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)  # the job too, whatever failed
        leader.wait()


async def test_a_kept_session_is_killed_only_while_it_has_no_leader(
    led: subprocess.Popen[bytes],
) -> None:
    """A leader alive means the number was given anew (the unloaded shell was reaped):
    that session is someone else's."""
    for _ in range(1000):  # the shell starts its job in another process: poll, bounded
        if session_members(led.pid):
            break
    ((job, _),) = session_members(led.pid)
    kept = KeptJobs()
    conversation = uuid.uuid4()
    kept.keep(conversation, [led.pid])
    await kept.end(conversation)
    assert is_running(led.pid), "left alone"
    assert is_running(job), "left alone"

    os.kill(led.pid, signal.SIGKILL)  # now leaderless, as after an unload
    await trio.to_thread.run_sync(led.wait)
    assert is_running(job)
    kept.keep(conversation, [led.pid])
    await kept.end_all()
    assert not is_running(job)
