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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg import sql

from trio_openhands.stores.postgres import fencing, notify

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_INSERT = """
INSERT INTO events (conversation_id, seq, event_id, kind, source, timestamp, body, search_text)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
_COLUMNS = "seq, event_id, kind, source, timestamp, body::text"

# A search page stops before the event that would take it past this many bytes of JSON (but
# always holds one), as the in-memory log's pages do.
MAX_PAGE_BYTES = 4 * 1024 * 1024


class UnknownEvent(LookupError):
    """A `page_id` that names no event of the conversation."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the store keeps it (the fields of the in-memory log's `LoggedEvent`)."""

    seq: int
    id: str
    kind: str
    source: str | None
    timestamp: datetime  # the SDK's own: naive, the writer's local time
    json: str
    # What `body` searches: a message's text, lower-cased ("" for other events). Written,
    # never read back (reads return ""): replays need only the JSON.
    search_text: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Search filters, as the events search routes take them (all optional)."""

    kind: str | None = None  # the class name (`MessageEvent`)
    source: str | None = None
    body: str | None = None  # lower-cased: found in a message's text
    since: datetime | None = None  # timestamp >= since (naive, as the SDK's timestamps)
    until: datetime | None = None  # timestamp < until

    def where(self) -> sql.Composable:
        """The condition on the `events` row (parameters: `params()`)."""
        conditions = [sql.SQL("conversation_id = %(conversation)s")]
        if self.kind is not None:
            conditions.append(sql.SQL("kind = %(kind)s"))
        if self.source is not None:
            conditions.append(sql.SQL("source = %(source)s"))
        if self.body is not None:
            conditions.append(sql.SQL("strpos(search_text, %(body)s) > 0"))
        if self.since is not None:
            conditions.append(sql.SQL("timestamp >= %(since)s"))
        if self.until is not None:
            conditions.append(sql.SQL("timestamp < %(until)s"))
        return sql.SQL(" AND ").join(conditions)

    def params(self, conversation_id: uuid.UUID) -> dict[str, object]:
        return {
            "conversation": conversation_id,
            "kind": self.kind,
            "source": self.source,
            "body": self.body,
            "since": self.since,
            "until": self.until,
        }


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
            (conversation_id, e.seq, e.id, e.kind, e.source, e.timestamp, e.json, e.search_text)
            for e in events
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

    async def search(
        self,
        conversation_id: uuid.UUID,
        query: EventQuery | None = None,
        *,
        descending: bool = False,
        page_id: str | None = None,
        limit: int = 100,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> tuple[list[StoredEvent], str | None]:
        """One page of the matching events by seq (newest first if `descending`), and the
        next page's first event id (None on the last page).

        `page_id` is the id of the page's first event, so paging neither skips nor repeats
        while events are appended; `UnknownEvent` for an id the conversation does not have.
        A page holds at most `limit` events and `max_bytes` of JSON (at least one event)."""
        query = query or EventQuery()
        params = {**query.params(conversation_id), "page_id": page_id, "limit": limit + 1}
        order = sql.SQL("DESC" if descending else "ASC")
        start = sql.SQL("")
        if page_id is not None:
            first_seq = sql.SQL(
                "(SELECT seq FROM events"
                " WHERE conversation_id = %(conversation)s AND event_id = %(page_id)s)"
            )
            comparison = sql.SQL("<=" if descending else ">=")
            start = sql.SQL(" AND seq {} {}").format(comparison, first_seq)
        statement = sql.SQL(
            "SELECT {columns} FROM events WHERE {where}{start} ORDER BY seq {order} LIMIT %(limit)s"
        ).format(columns=sql.SQL(_COLUMNS), where=query.where(), start=start, order=order)

        def search(connection: psycopg.Connection) -> list[StoredEvent]:
            with connection.transaction():  # the page and the check of its start agree
                if (
                    page_id is not None
                    and not connection.execute(
                        "SELECT 1 FROM events WHERE conversation_id = %s AND event_id = %s",
                        (conversation_id, page_id),
                    ).fetchone()
                ):
                    raise UnknownEvent(page_id)
                return [_event(row) for row in connection.execute(statement, params)]

        found = await self.database.run(search)
        page: list[StoredEvent] = []
        size = 0
        for event in found:
            event_size = len(event.json.encode())
            if len(page) == limit or (page and size + event_size > max_bytes):
                return page, event.id
            page.append(event)
            size += event_size
        return page, None

    async def count(self, conversation_id: uuid.UUID, query: EventQuery | None = None) -> int:
        """How many of the conversation's events match."""
        query = query or EventQuery()
        statement = sql.SQL("SELECT count(*) FROM events WHERE {}").format(query.where())
        params = query.params(conversation_id)

        def count(connection: psycopg.Connection) -> int:
            row = connection.execute(statement, params).fetchone()
            return int(row[0]) if row is not None else 0

        return await self.database.run(count)
