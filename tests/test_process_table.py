"""Reading a session's processes from /proc, one scan shared by concurrent callers."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from trio_openhands.core import process_table
from trio_openhands.core.process_table import Member, SharedScans, is_running, session_members

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


@pytest.fixture
def session() -> Iterator[subprocess.Popen[bytes]]:
    """A shell leading a session of its own, with two background jobs, one a subshell."""
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 30 & (sleep 30; true) & wait"], start_new_session=True
    )
    try:
        yield leader
    finally:
        os.killpg(leader.pid, 9)
        leader.wait()


def test_a_sessions_members_are_its_processes_but_its_leader(
    session: subprocess.Popen[bytes],
) -> None:
    members: list[Member] = []
    for _ in range(1000):  # the shell starts them in other processes: poll, bounded
        members = session_members(session.pid)
        if len(members) == 3:  # the two jobs, and the subshell's sleep
            break
        time.sleep(0.005)
    assert len(members) == 3
    assert all(group == session.pid for _, group in members)  # no job control in `sh -c`
    assert session.pid not in [pid for pid, _ in members]
    assert all(is_running(pid) for pid, _ in members)
    os.killpg(session.pid, 9)
    session.wait()
    assert not is_running(session.pid)  # reaped: gone from /proc


def test_callers_share_the_next_scan_to_begin_after_their_call() -> None:
    """A's scan lists the processes before P starts; B and C, calling after, must see P,
    and wait for one more scan, which they share."""
    scans: list[dict[int, list[Member]]] = []
    first_listed, release = threading.Event(), threading.Event()

    def scan() -> dict[int, list[Member]]:
        scans.append(result := process_table.scan())
        if len(scans) == 1:
            first_listed.set()
            assert release.wait(10)
        return result

    shared = SharedScans(scan)
    results: dict[str, dict[int, list[Member]]] = {}
    callers = {
        name: threading.Thread(target=lambda n=name: results.update({n: shared.latest()}))
        for name in "abc"
    }
    callers["a"].start()
    assert first_listed.wait(10)
    late = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        callers["b"].start()
        callers["c"].start()
        for _ in range(2000):  # until both wait: poll, bounded
            if shared.waiting == 2:
                break
            time.sleep(0.005)
        assert shared.waiting == 2
        release.set()
        for caller in callers.values():
            caller.join(10)
        assert len(scans) == 2
        assert late.pid not in results["a"]
        assert results["b"] is results["c"] is scans[1]
        assert results["b"][late.pid] == [(late.pid, late.pid)]
    finally:
        late.kill()
        late.wait()
