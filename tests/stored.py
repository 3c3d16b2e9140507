"""What a test server's store holds at rest, read the way an operator would look: the
files under the conversations directory, or the rows of the shared PostgreSQL database.

Tests that check what is (or is not) stored use these, so that they say the same thing of
either store instead of passing vacuously over the database (no folder, nothing to find).
Blocking: call through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from trio_openhands.stores import event_pack

if TYPE_CHECKING:
    from trio_openhands.settings import Settings

# Tables that hold a conversation: its record, the SDK's files, the event log. (Its row in
# `leases` outlives a delete on purpose: released, it keeps the last fencing token, so that
# an id created again is claimed with a higher one than any stale owner still holds.)
_CONVERSATION_TABLES = {
    "conversations": "id",
    "sdk_files": "conversation_id",
    "events": "conversation_id",
}


def _hex(conversation_id: str | uuid.UUID) -> str:
    return uuid.UUID(str(conversation_id)).hex


def conversation_file(settings: Settings, conversation_id: str | uuid.UUID, path: str) -> bytes:
    """One of the conversation's SDK files (`base_state.json`, `events/...`)."""
    if settings.database_url is None:
        return (settings.conversations_dir / _hex(conversation_id) / path).read_bytes()
    with psycopg.connect(settings.database_url) as connection:
        row = connection.execute(
            "SELECT content FROM sdk_files WHERE conversation_id = %s AND path = %s",
            (uuid.UUID(str(conversation_id)), path),
        ).fetchone()
    if row is None:
        raise FileNotFoundError(path)
    return bytes(row[0])


def conversation_bytes(settings: Settings, conversation_id: str | uuid.UUID) -> list[bytes]:
    """Everything stored for the conversation, one item per file or row; [] when nothing."""
    if settings.database_url is None:
        folder = settings.conversations_dir / _hex(conversation_id)
        found: list[bytes] = []
        for path in sorted(folder.rglob("*")):
            if path.name == event_pack.PACK_NAME:  # one item per event it holds
                found += [data for _, data in event_pack.records(str(path))]
            elif path.is_file():
                found.append(path.read_bytes())
        return found
    key = uuid.UUID(str(conversation_id))
    found: list[bytes] = []
    with psycopg.connect(settings.database_url) as connection:
        for table, column in _CONVERSATION_TABLES.items():
            query = sql.SQL("SELECT row_to_json(t)::text FROM {} t WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            rows = connection.execute(query, (key,)).fetchall()
            found += [row[0].encode() for row in rows]
        found += [
            bytes(row[0])
            for row in connection.execute(
                "SELECT content FROM sdk_files WHERE conversation_id = %s", (key,)
            ).fetchall()
        ]
    return found


def document(settings: Settings, name: str) -> str:
    """A server-wide document as stored (`settings.json`...): a file in the conversations
    directory, or the shared database's blob of that name."""
    if settings.database_url is None:
        return (settings.conversations_dir / name).read_text()
    with psycopg.connect(settings.database_url) as connection:
        row = connection.execute("SELECT content FROM blobs WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise FileNotFoundError(name)
    return bytes(row[0]).decode()


def everything(settings: Settings) -> str:
    """Every byte the server keeps, as one text (the files store's secret key file aside)."""
    if settings.database_url is None:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(settings.conversations_dir.rglob("*"))
            if path.is_file() and path.name != ".secret_key"
        )
    texts: list[str] = []
    with psycopg.connect(settings.database_url) as connection:
        for table in ("conversations", "events", "blobs", "sdk_files"):
            query = sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(table))
            rows = connection.execute(query).fetchall()
            texts += [row[0] for row in rows]
        for content_table in ("blobs", "sdk_files"):
            query = sql.SQL("SELECT content FROM {}").format(sql.Identifier(content_table))
            rows = connection.execute(query).fetchall()
            texts += [bytes(row[0]).decode(errors="replace") for row in rows]
    return "\n".join(texts)
