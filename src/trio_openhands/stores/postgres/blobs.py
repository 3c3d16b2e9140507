"""Named opaque documents every instance shares: settings, secrets, profiles.

What `settings.json` and the profile files hold in the file store, as bytes under a name
(`settings.json`, `profiles/llm/<name>.json`...). The content is the caller's: the settings
store keeps every secret inside it encrypted with the server secret, as on disk, so the
database never sees a secret in plain text. Not fenced: these belong to no conversation.

`update` is a read-modify-write serialized across instances (a transaction-scoped advisory
lock on the name, so it also serializes the creation of a missing document): two concurrent
PATCHes on two instances each see the other's result, neither is lost. `update_all` is the
same over every document under a prefix (a directory of them, as the profiles are).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_UPSERT = """
INSERT INTO blobs (name, content) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET content = excluded.content, updated_at = now()
"""


def _name_lock_key(name: str, scope: str = "blob") -> int:
    digest = hashlib.blake2b(f"{scope}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _blocking_read(connection: psycopg.Connection, name: str) -> bytes | None:
    row = connection.execute("SELECT content FROM blobs WHERE name = %s", (name,)).fetchone()
    return None if row is None else bytes(row[0])


class BlobStore:
    """The `blobs` table. Every method is async (a worker thread)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def read(self, name: str) -> bytes | None:
        """The document's bytes, None when there is none."""
        return await self.database.run(lambda connection: _blocking_read(connection, name))

    async def write(self, name: str, content: bytes) -> None:
        await self.database.run(lambda connection: connection.execute(_UPSERT, (name, content)))

    async def update[T](self, name: str, change: Callable[[bytes | None], tuple[bytes, T]]) -> T:
        """Read, `change`, write, with every other `update` of `name` kept out meanwhile.

        `change` (blocking, run in the worker thread) gets the current bytes (None if
        missing) and returns the new bytes and a result for the caller; returning the same
        object it was given writes nothing. Raising leaves the document as it was."""

        def read_change_write(connection: psycopg.Connection) -> T:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_name_lock_key(name),))
                current = _blocking_read(connection, name)
                new, result = change(current)
                if new is not current:
                    connection.execute(_UPSERT, (name, new))
                return result

        return await self.database.run(read_change_write)

    async def update_all[T](
        self, prefix: str, change: Callable[[dict[str, bytes]], tuple[dict[str, bytes], T]]
    ) -> T:
        """Read every document under `prefix`, `change` them, write back what differs, with
        every other `update_all` of `prefix` kept out meanwhile; one transaction.

        `change` (blocking, run in the worker thread) gets {name: bytes} and returns the
        documents there should be and a result: the changed ones are written, the missing
        ones deleted. Raising leaves every document as it was."""

        def read_change_write(connection: psycopg.Connection) -> T:
            with connection.transaction():
                lock_key = _name_lock_key(prefix, scope="blobs-under")
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
                rows = connection.execute(
                    "SELECT name, content FROM blobs WHERE starts_with(name, %s)", (prefix,)
                ).fetchall()
                current = {name: bytes(content) for name, content in rows}
                new, result = change(dict(current))
                if stray := [name for name in new if not name.startswith(prefix)]:
                    raise ValueError(f"documents outside {prefix!r}: {stray}")
                for name, content in new.items():
                    if current.get(name) != content:
                        connection.execute(_UPSERT, (name, content))
                if gone := sorted(current.keys() - new.keys()):
                    connection.execute("DELETE FROM blobs WHERE name = ANY(%s)", (gone,))
                return result

        return await self.database.run(read_change_write)

    async def delete(self, name: str) -> bool:
        """Remove the document: whether there was one."""

        def delete(connection: psycopg.Connection) -> bool:
            return connection.execute("DELETE FROM blobs WHERE name = %s", (name,)).rowcount > 0

        return await self.database.run(delete)

    async def names(self, prefix: str = "") -> list[str]:
        """The documents' names starting with `prefix`, sorted."""

        def names(connection: psycopg.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT name FROM blobs WHERE starts_with(name, %s) ORDER BY name", (prefix,)
            ).fetchall()
            return [row[0] for row in rows]

        return await self.database.run(names)
