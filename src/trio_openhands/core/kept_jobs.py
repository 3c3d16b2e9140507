"""The background jobs an idle unload left running, until their conversation ends for good.

An unload ends a conversation's shells but keeps what they run in the background (a dev
server the agent counts on: terminal_close.py), and the conversation's next load starts
new shells in new sessions. The old sessions are remembered here, by conversation, so
that deleting the conversation (here or, with a database, on another instance) or its move
to another instance kills them, and the server's shutdown kills them all. Only in memory:
after a restart they are no one's, as a job left by a shell that exited on its own is.

A session is named by its leader's pid, which stays reserved while any process is in the
session. A session found with its leader alive is not the one remembered (the leader,
the unloaded shell, was reaped, so the number was given anew) and is left alone.
"""

from __future__ import annotations

import logging
import uuid

import trio

from trio_openhands.core.process_table import is_running
from trio_openhands.core.terminal_close import kill_session

log = logging.getLogger(__name__)


class KeptJobs:
    def __init__(self) -> None:
        self._sessions: dict[uuid.UUID, list[int]] = {}

    def keep(self, conversation_id: uuid.UUID, sessions: list[int]) -> None:
        if sessions:
            self._sessions.setdefault(conversation_id, []).extend(sessions)

    def holds(self, conversation_id: uuid.UUID) -> bool:
        return conversation_id in self._sessions

    async def end(self, conversation_id: uuid.UUID) -> None:
        """Kill what the conversation's unloaded shells left running."""
        sessions = self._sessions.pop(conversation_id, [])
        if sessions:
            log.info("conversation %s: ending the jobs kept at its unload", conversation_id)
            await trio.to_thread.run_sync(_kill_sessions, sessions)

    async def end_all(self) -> None:
        sessions = [session for kept in self._sessions.values() for session in kept]
        self._sessions.clear()
        if sessions:
            await trio.to_thread.run_sync(_kill_sessions, sessions)


def _kill_sessions(sessions: list[int]) -> None:
    for session in sessions:
        if not is_running(session):  # a live leader: the number names another session now
            kill_session(session)
