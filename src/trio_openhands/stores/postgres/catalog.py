"""The conversations catalog: every conversation's meta record, readable by any instance.

The record is what `meta.json` holds in the file store (a JSON object), kept as JSONB with
the conversation's id and its `created_at`/`updated_at` as columns, which searches sort on
(the record's own times when the writer gives them, so the order is the one REST shows;
else the database's clock). Writes are the
owner's and fenced (`fencing`); reads are anyone's. Deleting a conversation removes its
catalog row, its SDK files and its events in one fenced transaction: after it commits,
nothing of the conversation is left but its released lease (whose token keeps growing, so a
stale writer stays fenced off should the id ever be used again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from trio_openhands.stores.postgres import fencing, notify

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_PUT = """
INSERT INTO conversations (id, meta, created_at, updated_at)
VALUES (%(fence_conversation)s, %(meta)s, coalesce(%(created_at)s, now()),
        coalesce(%(updated_at)s, now()))
ON CONFLICT (id) DO UPDATE SET meta = excluded.meta,
    created_at = coalesce(%(created_at)s, conversations.created_at),
    updated_at = excluded.updated_at
"""

# The search orders: the column sorted on, and whether newest first. Ties go by id.
SORT_ORDERS: dict[str, tuple[str, bool]] = {
    "CREATED_AT": ("created_at", False),
    "CREATED_AT_DESC": ("created_at", True),
    "UPDATED_AT": ("updated_at", False),
    "UPDATED_AT_DESC": ("updated_at", True),
}


class UnknownPage(LookupError):
    """A `page_id` that names no conversation (of the search's kind)."""


class Catalog:
    """The `conversations` table. Every method is async (a worker thread)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def put(
        self,
        fence: fencing.Fence,
        meta: dict[str, Any],
        *,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """Create or replace the conversation's record; `LeaseLost` once not the owner.

        `created_at` (kept from the first write when not given) and `updated_at` (now when
        not given) are what searches sort on: pass the record's own (timezone-aware)."""
        params = {
            **fence.params(),
            "meta": Jsonb(meta),
            "created_at": created_at,
            "updated_at": updated_at,
        }

        def put(connection: psycopg.Connection) -> None:
            with connection.transaction():
                fencing.blocking_check(connection, fence)
                connection.execute(_PUT, params)

        await self.database.run(put)

    async def get(self, conversation_id: uuid.UUID) -> dict[str, Any] | None:
        def get(connection: psycopg.Connection) -> dict[str, Any] | None:
            row = connection.execute(
                "SELECT meta FROM conversations WHERE id = %s", (conversation_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self.database.run(get)

    async def get_many(self, ids: Sequence[uuid.UUID]) -> list[dict[str, Any] | None]:
        """The records of `ids`, in their order, None for an unknown id."""

        def get_many(connection: psycopg.Connection) -> list[dict[str, Any] | None]:
            rows = connection.execute(
                "SELECT id, meta FROM conversations WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
            found = dict(rows)
            return [found.get(conversation_id) for conversation_id in ids]

        return await self.database.run(get_many)

    async def all(self) -> list[dict[str, Any]]:
        """Every record, oldest first (what the supervisor reads at start)."""

        def read_all(connection: psycopg.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(
                "SELECT meta FROM conversations ORDER BY created_at, id"
            ).fetchall()
            return [row[0] for row in rows]

        return await self.database.run(read_all)

    async def count(self, status: str | None = None) -> int:
        """How many records there are (whose `status` in the record is `status`)."""

        def count(connection: psycopg.Connection) -> int:
            row = connection.execute(
                "SELECT count(*) FROM conversations"
                " WHERE %(status)s::text IS NULL OR meta->>'status' = %(status)s",
                {"status": status},
            ).fetchone()
            return int(row[0]) if row is not None else 0

        return await self.database.run(count)

    async def page(
        self,
        *,
        sort_order: str = "CREATED_AT_DESC",
        status: str | None = None,
        page_id: uuid.UUID | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
        """One page of records in `sort_order` (a key of SORT_ORDERS), optionally only those
        whose record says `status`: the page and the next page's id (None on the last).

        `page_id` is the id of the page's first record (the reference server's paging), and
        pages are keyset ranges, so they never skip or repeat while records are added;
        `UnknownPage` for an id that is not in the search."""
        column, descending = SORT_ORDERS[sort_order]
        direction = sql.SQL("DESC" if descending else "ASC")
        comparison = sql.SQL("<=" if descending else ">=")
        time_column = sql.Identifier(column)
        keep = sql.SQL("(%(status)s::text IS NULL OR meta->>'status' = %(status)s)")
        query = sql.SQL(
            "SELECT id, meta FROM conversations WHERE {keep} {start}"
            " ORDER BY {time} {direction}, id {direction} LIMIT %(limit)s"
        )
        start = sql.SQL(
            "AND ({time}, id) {comparison} (SELECT {time}, id FROM conversations"
            " WHERE id = %(page_id)s)"
        ).format(time=time_column, comparison=comparison)
        params = {"status": status, "page_id": page_id, "limit": limit + 1}

        def page(connection: psycopg.Connection) -> list[tuple[uuid.UUID, dict[str, Any]]]:
            with connection.transaction():  # the page and the check of its start agree
                if page_id is not None:
                    found = connection.execute(
                        sql.SQL(
                            "SELECT 1 FROM conversations WHERE id = %(page_id)s AND {keep}"
                        ).format(keep=keep),
                        params,
                    ).fetchone()
                    if found is None:
                        raise UnknownPage(page_id)
                statement = query.format(
                    keep=keep,
                    start=start if page_id is not None else sql.SQL(""),
                    time=time_column,
                    direction=direction,
                )
                return connection.execute(statement, params).fetchall()

        rows = await self.database.run(page)
        following = rows[limit] if len(rows) > limit else None
        return [meta for _, meta in rows[:limit]], None if following is None else following[0]

    async def delete(self, fence: fencing.Fence) -> None:
        """Remove the conversation (record, SDK files, events) and release its lease, in one
        transaction that also notifies the deletion (followers on every instance end);
        `LeaseLost` (and nothing removed) once not the owner."""

        def delete(connection: psycopg.Connection) -> None:
            with connection.transaction():
                fencing.blocking_check(connection, fence)
                key = (fence.conversation_id,)
                # The lease first: its row lock waits for every fenced write in flight (each
                # holds the row FOR SHARE until it commits), and refuses any that follows;
                # the deletes then see all that was written. Released last, a write that
                # committed meanwhile would outlive the delete.
                connection.execute(
                    "UPDATE leases SET owner = NULL, expires_at = now() WHERE conversation_id = %s",
                    key,
                )
                connection.execute("DELETE FROM events WHERE conversation_id = %s", key)
                connection.execute("DELETE FROM sdk_files WHERE conversation_id = %s", key)
                connection.execute("DELETE FROM conversations WHERE id = %s", key)
                notify.blocking_notify(connection, fence.conversation_id, notify.DELETED)

        await self.database.run(delete)
