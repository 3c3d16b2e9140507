"""Where the supervisor keeps conversations: one interface, two stores.

`FilesStore` is the embedded default (files under the conversations directory: each
conversation's `meta.json` and the SDK's own files through a `GroupCommitFileStore`; the
event log lives in memory and is rebuilt from the SDK's files at load). `PostgresStore`
(stores/postgres/conversation_store.py, chosen by `database_url`) keeps the same in a shared
PostgreSQL database, for several instances: there a conversation is loaded only by the
instance holding its lease, whose writes are all fenced by it.

The supervisor talks to `ConversationStore` only, so it holds no `if postgres:` of its own:
it claims a conversation before loading it (`claim`), opens its SDK files (`open_files`),
saves its record (`save_record`), hands each logged event over (`EventSink`), and releases
or removes it when it is unloaded or deleted.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import trio

from trio_openhands.core.errors import ApiError
from trio_openhands.stores import file_store, trajectory

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from trio_openhands.core.conversation_record import ConversationRecord
    from trio_openhands.core.event_log import LoggedEvent
    from trio_openhands.settings import Settings
    from trio_openhands.stores.group_commit import GroupCommitFileStore

log = logging.getLogger(__name__)


class OwnedElsewhere(ApiError):
    """Another live instance holds the conversation's lease: its commands go there (a 409
    where they cannot be forwarded)."""

    def __init__(self, conversation_id: uuid.UUID, address: str | None) -> None:
        super().__init__(
            409, f"Conversation {conversation_id} is loaded by another instance ({address})"
        )
        self.conversation_id = conversation_id
        self.address = address  # None: the owner is not registered (yet, or any more)


class EventSink(Protocol):
    """Where a conversation's logged events go beside its in-memory log (Trio thread)."""

    def add(self, event: LoggedEvent) -> None:
        """Take an event the log just appended (never waits)."""
        ...

    async def flush(self) -> None:
        """Return once every event added so far is stored."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Store what is added as it comes, until cancelled (the conversation's nursery)."""
        ...


@dataclass
class OpenedFiles:
    """A conversation's SDK files: the store the SDK writes to, and, when its writes need a
    `sync()` to be durable (the group-commit file store), that same store as `durable`."""

    sdk_file_store: Any
    durable: GroupCommitFileStore | None
    events: EventSink | None  # None: the SDK's files are the only event log kept


class ConversationStore(Protocol):
    """What the supervisor needs of a store. Every method runs on the Trio thread."""

    shared: bool  # whether other instances see the same conversations

    async def read_records(self) -> list[dict[str, Any]]:
        """Every conversation's record (meta), as saved."""
        ...

    async def read_record(self, conversation_id: uuid.UUID) -> dict[str, Any] | None:
        """One record, None when there is none (another instance may have created it)."""
        ...

    async def logged_status(self, conversation_id: uuid.UUID) -> str | None:
        """The last execution status the conversation's stored log says (None: none, or
        the log is not stored apart from the SDK's files)."""
        ...

    async def secret_key(self) -> str:
        """The server secret that encrypts keys at rest."""
        ...

    async def claim(self, conversation_id: uuid.UUID) -> None:
        """Make this instance the conversation's owner before it is loaded here; raises
        `OwnedElsewhere` while another live instance holds it."""
        ...

    async def open_files(self, record: ConversationRecord) -> OpenedFiles:
        """The SDK's files of a claimed conversation."""
        ...

    async def save_record(self, record: ConversationRecord) -> None:
        """Write the record of a claimed conversation (fenced, in the shared store)."""
        ...

    async def adopt_folder(self, conversation_id: uuid.UUID, folder: Path) -> None:
        """Make the SDK files in `folder` the claimed conversation's, before it is opened:
        a fork's, which the SDK writes to disk whatever store its source uses."""
        ...

    async def release(self, conversation_id: uuid.UUID) -> None:
        """Give the conversation up (it is unloaded here); a no-op when not held."""
        ...

    async def remove(self, conversation_id: uuid.UUID) -> None:
        """Delete everything of a claimed conversation."""
        ...

    async def write_trajectory(self, conversation_id: uuid.UUID, out: IO[bytes]) -> bool:
        """The conversation's stored files as a ZIP into `out` (stores/trajectory.py), from
        any instance; False, nothing written, for an unknown conversation."""
        ...

    def holds(self, conversation_id: uuid.UUID) -> bool:
        """Whether this instance still owns the conversation (its lease not lost)."""
        ...


class FilesStore:
    """The conversations directory (the default): one instance owns all of it."""

    shared = False

    def __init__(self, settings: Settings) -> None:
        self.conversations_dir = settings.conversations_dir
        self._configured_secret = settings.secret_key

    async def read_records(self) -> list[dict[str, Any]]:
        return await trio.to_thread.run_sync(file_store.read_all_meta, self.conversations_dir)

    async def read_record(self, conversation_id: uuid.UUID) -> dict[str, Any] | None:
        return None  # every record was read at start; this instance writes them all

    async def logged_status(self, conversation_id: uuid.UUID) -> str | None:
        return None

    async def secret_key(self) -> str:
        return await trio.to_thread.run_sync(
            file_store.load_or_create_secret, self.conversations_dir, self._configured_secret
        )

    async def claim(self, conversation_id: uuid.UUID) -> None:
        return None

    async def open_files(self, record: ConversationRecord) -> OpenedFiles:
        from trio_openhands.stores.group_commit import GroupCommitFileStore  # imports the SDK

        files = GroupCommitFileStore(
            str(file_store.conversation_dir(self.conversations_dir, record.id.hex)),
            # as the SDK sizes its own store's cache
            cache_limit_size=int(record.request.get("max_iterations", 500)),
        )
        return OpenedFiles(sdk_file_store=files, durable=files, events=None)

    async def save_record(self, record: ConversationRecord) -> None:
        await file_store.write_meta(self.conversations_dir, record.id.hex, record.to_json())

    async def adopt_folder(self, conversation_id: uuid.UUID, folder: Path) -> None:
        # The SDK wrote them where this store keeps them.
        assert folder == file_store.conversation_dir(self.conversations_dir, conversation_id.hex)

    async def release(self, conversation_id: uuid.UUID) -> None:
        return None

    async def remove(self, conversation_id: uuid.UUID) -> None:
        folder = file_store.conversation_dir(self.conversations_dir, conversation_id.hex)
        await trio.to_thread.run_sync(file_store.remove_tree, folder)

    async def write_trajectory(self, conversation_id: uuid.UUID, out: IO[bytes]) -> bool:
        folder = file_store.conversation_dir(self.conversations_dir, conversation_id.hex)
        return await trio.to_thread.run_sync(trajectory.write_folder_zip, folder, out)

    def holds(self, conversation_id: uuid.UUID) -> bool:
        return True


@asynccontextmanager
async def open_conversation_store(
    settings: Settings,
    *,
    on_lost: Callable[[uuid.UUID], object],
    on_deleted: Callable[[uuid.UUID], object],
    on_expired: Callable[[uuid.UUID], Awaitable[object]],
) -> AsyncIterator[ConversationStore]:
    """The store `settings` choose, open for the block (its tasks running meanwhile).

    With a database: `on_lost(id)` is called when this instance's lease on a conversation
    was taken over (stop it here at once, writing nothing), `on_deleted(id)` when another
    instance deleted one, and `on_expired(id)` for a conversation whose owner died (its
    lease expired): the supervisor claims and restores it."""
    if settings.database_url is None:
        yield FilesStore(settings)
        return
    from trio_openhands.stores.postgres.conversation_store import open_postgres_store

    async with open_postgres_store(
        settings, on_lost=on_lost, on_deleted=on_deleted, on_expired=on_expired
    ) as store:
        yield store
