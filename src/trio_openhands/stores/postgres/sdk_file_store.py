"""The SDK's `FileStore` over the database: one conversation's base_state.json and events/
in PostgreSQL instead of `<conversations_dir>/<id hex>/`.

Give it to `LocalConversation(..., file_store=...)`. The SDK calls it from its own threads
(the run's, the caller's of `send_message`...), so every method is blocking and runs on a
connection of the database's pool; never call it from the Trio thread. The operations are
`sdk_files`'; this class only fits them to the SDK's interface.

Writes and deletes are fenced: each checks, in its own statement, that the lease it was
made with is still current, and raises `LeaseLost` (writing nothing) once another instance
took the conversation over. The SDK swallows errors of a few bookkeeping writes (its length
marker) and not of others (an event file, base_state.json); either way nothing reaches the
database after the takeover.

`lock(path)` excludes every other holder of the same path of the same conversation, in this
process or any other (`locks`: an advisory lock on a connection of the lock pool, held for
the lock's duration), waiting at most `timeout` seconds, then `TimeoutError` as the SDK
expects. Not re-entrant: the SDK never nests a lock of one path.

Listing a directory keeps the contents of its small files for one read each (the SDK lists
events/ and then reads every event when it loads a conversation: one query instead of one
per event). A write or delete through this store drops what it changes from them, so this
store never reads back older content than it wrote. Another writer's change between a
listing and the read is not seen: only the lease holder writes, and a store whose fence is
stale is discarded.

This module imports the SDK (`openhands.sdk.io`): import it only once the SDK is loaded.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from openhands.sdk.io.base import FileStore

from trio_openhands.stores.postgres import locks, sdk_files

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio_openhands.stores.postgres.database import Database
    from trio_openhands.stores.postgres.fencing import Fence


class PostgresFileStore(FileStore):
    """One conversation's SDK files, written only while `fence` holds."""

    def __init__(self, database: Database, fence: Fence) -> None:
        self.database = database
        self.fence = fence
        self.conversation_id = fence.conversation_id
        # Contents a listing fetched, by key, each for one read; `_changes` counts this
        # store's writes so that a listing racing with one keeps nothing.
        self._prefetched: dict[str, bytes] = {}
        self._changes = 0
        self._prefetch_lock = threading.Lock()

    def write(self, path: str, contents: str | bytes) -> None:
        content = contents.encode() if isinstance(contents, str) else contents
        try:
            sdk_files.blocking_write(self.database, self.fence, path, content)
        finally:
            self._forget(sdk_files.normalize(path))

    def read(self, path: str) -> str:
        key = sdk_files.normalize(path)
        with self._prefetch_lock:
            content = self._prefetched.pop(key, None)
        if content is None:
            content = sdk_files.blocking_read(self.database, self.conversation_id, key)
        if content is None:
            raise FileNotFoundError(path)
        return content.decode()

    def list(self, path: str) -> list[str]:
        with self._prefetch_lock:
            changes = self._changes
        entries, contents = sdk_files.blocking_list(self.database, self.conversation_id, path)
        with self._prefetch_lock:
            if changes == self._changes:
                self._prefetched.update(contents)
        return entries

    def delete(self, path: str) -> None:
        key = sdk_files.normalize(path)
        try:
            sdk_files.blocking_delete(self.database, self.fence, key)
        finally:
            self._forget(key, with_children=True)

    def exists(self, path: str) -> bool:
        return sdk_files.blocking_exists(self.database, self.conversation_id, path)

    def _forget(self, key: str, *, with_children: bool = False) -> None:
        with self._prefetch_lock:
            self._changes += 1
            self._prefetched.pop(key, None)
            if with_children:
                under = f"{key}/" if key else ""
                for stale in [k for k in self._prefetched if k.startswith(under)]:
                    del self._prefetched[stale]

    def get_absolute_path(self, path: str) -> str:
        """A name for logs: there is no file on a disk."""
        return f"postgresql:sdk_files/{self.conversation_id.hex}/{sdk_files.normalize(path)}"

    @contextmanager
    def lock(self, path: str, timeout: float = 30.0) -> Iterator[None]:
        key = sdk_files.lock_key(self.conversation_id, path)
        try:
            with locks.blocking_hold(self.database, key, timeout):
                yield
        except TimeoutError:
            raise TimeoutError(f"lock not acquired within {timeout:g} s: {path}") from None
