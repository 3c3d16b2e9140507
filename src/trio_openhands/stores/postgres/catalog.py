"""The conversations catalog: every conversation's meta record, readable by any instance.

The record is what `meta.json` holds in the file store (a JSON object), kept as JSONB with
the conversation's id, and `created_at`/`updated_at` stamped by the database. Writes are the
owner's and fenced (`fencing`); reads are anyone's. Deleting a conversation removes its
catalog row, its SDK files and its events in one fenced transaction: after it commits,
nothing of the conversation is left but its released lease (whose token keeps growing, so a
stale writer stays fenced off should the id ever be used again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from trio_openhands.stores.postgres import fencing

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_PUT = """
INSERT INTO conversations (id, meta) VALUES (%(fence_conversation)s, %(meta)s)
ON CONFLICT (id) DO UPDATE SET meta = excluded.meta, updated_at = now()
"""


class Catalog:
    """The `conversations` table. Every method is async (a worker thread)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def put(self, fence: fencing.Fence, meta: dict[str, Any]) -> None:
        """Create or replace the conversation's record; `LeaseLost` once not the owner."""
        params = {**fence.params(), "meta": Jsonb(meta)}

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

    async def count(self) -> int:
        def count(connection: psycopg.Connection) -> int:
            row = connection.execute("SELECT count(*) FROM conversations").fetchone()
            return int(row[0]) if row is not None else 0

        return await self.database.run(count)

    async def delete(self, fence: fencing.Fence) -> None:
        """Remove the conversation (record, SDK files, events) and release its lease, in one
        transaction; `LeaseLost` (and nothing removed) once not the owner."""

        def delete(connection: psycopg.Connection) -> None:
            with connection.transaction():
                fencing.blocking_check(connection, fence)
                key = (fence.conversation_id,)
                connection.execute("DELETE FROM events WHERE conversation_id = %s", key)
                connection.execute("DELETE FROM sdk_files WHERE conversation_id = %s", key)
                connection.execute("DELETE FROM conversations WHERE id = %s", key)
                connection.execute(
                    "UPDATE leases SET owner = NULL, expires_at = now() WHERE conversation_id = %s",
                    key,
                )

        await self.database.run(delete)
