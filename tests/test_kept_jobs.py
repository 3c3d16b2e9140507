"""The sessions an idle unload kept, killed when their conversation ends for good."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

import pytest

from trio_openhands.core.kept_jobs import KeptJobs
from trio_openhands.core.process_table import is_running, session_members

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


async def test_a_kept_session_is_killed_only_while_it_has_no_leader() -> None:
    """A leader alive means the number was given anew (the unloaded shell was reaped):
    that session is someone else's."""
    led = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        for _ in range(1000):  # the shell starts its job in another process: poll, bounded
            if session_members(led.pid):
                break
        (job, _), = session_members(led.pid)
        kept = KeptJobs()
        conversation = uuid.uuid4()
        kept.keep(conversation, [led.pid])
        await kept.end(conversation)
        assert is_running(led.pid) and is_running(job), "left alone"

        os.kill(led.pid, 9)  # now leaderless, as after an unload
        led.wait()
        assert is_running(job)
        kept.keep(conversation, [led.pid])
        await kept.end_all()
        assert not is_running(job)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(led.pid, 9)  # the job too, whatever failed
        led.wait()
