"""The event log in the database: each conversation's events with their sequence numbers.

The owner appends (fenced), in order, each event with the seq the in-memory log gave it;
`(conversation, seq)` is unique, so an append can neither reorder nor duplicate. Every
append notifies `notify.EVENTS_CHANNEL` in the same transaction, so a listener on any
instance is woken only once the events are there to read. A reader (a socket on another
instance) replays with `after(conversation, seq)` and follows the notifications, reading
again after the last seq it has: replay and live by sequence, no gap, no duplicate.

`json` is the SDK's serialization as the log made it, kept byte for byte (the column is
`json`, not `jsonb`), so a replayed frame is the frame a live socket got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trio_openhands.stores.postgres import fencing, notify

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_INSERT = """
INSERT INTO events (conversation_id, seq, event_id, kind, source, timestamp, body)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
_COLUMNS = "seq, event_id, kind, source, timestamp, body::text"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the store keeps it (the fields of the in-memory log's `LoggedEvent`)."""

    seq: int
    id: str
    kind: str
    source: str | None
    timestamp: datetime  # the SDK's own: naive, the writer's local time
    json: str


def _event(row: tuple[int, str, str, str | None, datetime, str]) -> StoredEvent:
    return StoredEvent(int(row[0]), row[1], row[2], row[3], row[4], row[5])


class EventStore:
    """The `events` table. Every method is async (a worker thread)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def append(self, fence: fencing.Fence, events: Sequence[StoredEvent]) -> None:
        """Add `events` (ascending seqs) in one transaction and notify their last seq.

        Raises `LeaseLost` (nothing added) once not the owner, and psycopg's
        `UniqueViolation` (nothing added) for a seq or event id already stored."""
        if not events:
            return
        conversation_id = fence.conversation_id
        rows = [
            (conversation_id, e.seq, e.id, e.kind, e.source, e.timestamp, e.json) for e in events
        ]

        def append(connection: psycopg.Connection) -> None:
            with connection.transaction():
                fencing.blocking_check(connection, fence)
                with connection.cursor() as cursor:
                    cursor.executemany(_INSERT, rows)
                notify.blocking_notify(connection, conversation_id, events[-1].seq)

        await self.database.run(append)

    async def after(
        self, conversation_id: uuid.UUID, seq: int = -1, limit: int | None = None
    ) -> list[StoredEvent]:
        """The events with a seq above `seq` (all for -1), ascending, at most `limit`."""

        def after(connection: psycopg.Connection) -> list[StoredEvent]:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM events WHERE conversation_id = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (conversation_id, seq, limit),
            ).fetchall()
            return [_event(row) for row in rows]

        return await self.database.run(after)

    async def get(self, conversation_id: uuid.UUID, event_id: str) -> StoredEvent | None:
        def get(connection: psycopg.Connection) -> StoredEvent | None:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM events WHERE conversation_id = %s AND event_id = %s",
                (conversation_id, event_id),
            ).fetchone()
            return None if row is None else _event(row)

        return await self.database.run(get)

    async def last_seq(self, conversation_id: uuid.UUID) -> int:
        """The highest seq stored for the conversation, -1 when it has no event."""

        def last_seq(connection: psycopg.Connection) -> int:
            row = connection.execute(
                "SELECT coalesce(max(seq), -1) FROM events WHERE conversation_id = %s",
                (conversation_id,),
            ).fetchone()
            return int(row[0]) if row is not None else -1

        return await self.database.run(last_seq)
