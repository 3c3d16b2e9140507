"""One conversation's SDK files (base_state.json, events/...) in the `sdk_files` table.

The operations behind `sdk_file_store.PostgresFileStore` (the SDK's FileStore), without the
SDK: so that code that never loads the SDK (a trajectory download, another process holding
a conversation's lock, a test) reads, lists and locks the same rows under the same keys.
All of it is blocking: call it from worker threads.

Paths are the SDK's, relative to the conversation's folder; `normalize` makes the key.
Writes and deletes are fenced in their own single statement (`fencing.HELD` in a WITH
clause): one round trip, and `LeaseLost` with nothing changed once the fence is stale.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from trio_openhands.stores.postgres import fencing, locks

if TYPE_CHECKING:
    import uuid
    from collections.abc import Generator, Iterable

    from trio_openhands.stores.postgres.database import Database

_WRITE = f"""
WITH held AS ({fencing.HELD})
INSERT INTO sdk_files (conversation_id, path, content)
SELECT %(fence_conversation)s, %(path)s, %(content)s FROM held
ON CONFLICT (conversation_id, path)
    DO UPDATE SET content = excluded.content, updated_at = now()
"""

_DELETE = f"""
WITH held AS ({fencing.HELD}),
gone AS (
    DELETE FROM sdk_files WHERE conversation_id = %(fence_conversation)s
        AND (path = %(path)s OR path LIKE %(under)s) AND EXISTS (SELECT 1 FROM held)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM held), (SELECT count(*) FROM gone)
"""


def normalize(path: str) -> str:
    """The key of `path` in the table: relative, POSIX, normalized; "" is the root.

    Refuses a path that leaves the conversation's root, as LocalFileStore does."""
    relative = path.replace("\\", "/").lstrip("/")
    cleaned = posixpath.normpath(relative) if relative else ""
    if cleaned == ".":
        return ""
    if cleaned == ".." or cleaned.startswith("../"):
        raise ValueError(f"path escapes the file store's root: {path}")
    return cleaned


def _like_under(directory: str) -> str:
    """A LIKE pattern matching every path under `directory` ("" = the root)."""
    escaped = directory.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}/%" if escaped else "%"


def lock_key(conversation_id: uuid.UUID, path: str) -> int:
    """The advisory lock key of one path of one conversation (any process computes it)."""
    return locks.lock_key("sdk_files", conversation_id.hex, normalize(path))


def blocking_write(database: Database, fence: fencing.Fence, path: str, content: bytes) -> None:
    params = {**fence.params(), "path": normalize(path), "content": content}
    with database.connection() as connection:
        if connection.execute(_WRITE, params).rowcount != 1:
            raise fencing.LeaseLost(fence)


def blocking_write_all(
    database: Database, fence: fencing.Fence, files: Iterable[tuple[str, bytes]]
) -> None:
    """Write every (path, content) in one transaction: all of them, or none once the fence
    is stale (`LeaseLost`)."""
    rows = [
        {**fence.params(), "path": normalize(path), "content": content} for path, content in files
    ]
    with database.connection() as connection, connection.transaction():
        fencing.blocking_check(connection, fence)
        with connection.cursor() as cursor:
            cursor.executemany(_WRITE, rows)


def blocking_delete(database: Database, fence: fencing.Fence, path: str) -> int:
    """Remove the file, or everything under the directory: how many files went (0 is no
    error)."""
    key = normalize(path)
    params = {**fence.params(), "path": key, "under": _like_under(key)}
    with database.connection() as connection:
        row = connection.execute(_DELETE, params).fetchone()
    if row is None or not row[0]:
        raise fencing.LeaseLost(fence)
    return int(row[1])


def blocking_read(database: Database, conversation_id: uuid.UUID, path: str) -> bytes | None:
    """The file's bytes, None if there is no such file."""
    with database.connection() as connection:
        row = connection.execute(
            "SELECT content FROM sdk_files WHERE conversation_id = %s AND path = %s",
            (conversation_id, normalize(path)),
        ).fetchone()
    return None if row is None else bytes(row[0])


def blocking_paths(database: Database, conversation_id: uuid.UUID, path: str = "") -> list[str]:
    """The keys of the file `path` and of every file under it, sorted."""
    key = normalize(path)
    with database.connection() as connection:
        rows = connection.execute(
            "SELECT path FROM sdk_files WHERE conversation_id = %s"
            " AND (path = %s OR path LIKE %s) ORDER BY path",
            (conversation_id, key, _like_under(key)),
        ).fetchall()
    return [row[0] for row in rows]


# `blocking_list` also returns the contents of the small files right under the directory:
# the SDK lists events/ and then reads every event file, one query each, when it loads a
# conversation; with them it reads none (1,000 events: one query instead of 1,001).
PREFETCH_MAX_FILE_BYTES = 64 * 1024

_LIST = """
SELECT path, CASE WHEN strpos(substr(path, %(skip)s), '/') = 0
                   AND octet_length(content) <= %(max)s THEN content END
FROM sdk_files WHERE conversation_id = %(conversation)s
    AND (path = %(path)s OR path LIKE %(under)s)
ORDER BY path
"""


def blocking_list(
    database: Database, conversation_id: uuid.UUID, path: str
) -> tuple[list[str], dict[str, bytes]]:
    """What is right under `path`, each as `path/name` (a directory with a trailing `/`),
    as the SDK's LocalFileStore lists; `[path]` for a file; `[]` for nothing. With it, by
    key, the contents of the small files right under `path` (see PREFETCH_MAX_FILE_BYTES)."""
    key = normalize(path)
    params = {
        "conversation": conversation_id,
        "path": key,
        "under": _like_under(key),
        "skip": len(key) + 2 if key else 1,  # 1-based, past "key/"
        "max": PREFETCH_MAX_FILE_BYTES,
    }
    with database.connection() as connection:
        rows = connection.execute(_LIST, params).fetchall()
    found: list[str] = []
    seen: set[str] = set()
    contents: dict[str, bytes] = {}
    for stored, content in rows:
        if stored == key:
            return [path], {}
        name, slash, _ = (stored[len(key) + 1 :] if key else stored).partition("/")
        entry = posixpath.join(path, name) + slash
        if entry not in seen:
            seen.add(entry)
            found.append(entry)
        if content is not None:
            contents[stored] = bytes(content)
    return found, contents


def blocking_each_file(
    database: Database, conversation_id: uuid.UUID
) -> Generator[tuple[str, bytes]]:
    """Every file of the conversation with its bytes, in path order, streamed from the
    database one row at a time (close the iterator when leaving it early)."""
    with database.connection() as connection:
        rows = connection.cursor().stream(
            "SELECT path, content FROM sdk_files WHERE conversation_id = %s ORDER BY path",
            (conversation_id,),
        )
        for path, content in rows:
            yield path, bytes(content)


def blocking_exists(database: Database, conversation_id: uuid.UUID, path: str) -> bool:
    """Whether `path` is a file, or a directory with a file under it."""
    key = normalize(path)
    with database.connection() as connection:
        row = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM sdk_files WHERE conversation_id = %s"
            " AND (path = %s OR path LIKE %s))",
            (conversation_id, key, _like_under(key)),
        ).fetchone()
    return bool(row and row[0])
