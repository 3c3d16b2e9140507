"""`PostgresStore`: the supervisor's `ConversationStore` over the shared database.

One instance of the server, among several over one database, is a registered instance
(its id, new at each start, and the address the others forward commands to). It loads a
conversation only once it holds its lease (`claim`); every write it makes for it (the
record, the SDK's files, the events) is fenced by that lease. Its tasks, in the store's
nursery for the store's lifetime (the supervisor's):

- the heartbeat: renews every held lease and the instance's row each third of the lease
  time, and reports a lease lost (taken over while this instance was stopped or cut off):
  `on_lost` stops that conversation here, writing nothing;
- the listener: LISTEN/NOTIFY wake-ups for every socket following a conversation from the
  store (`wakeups`), and deletions made by other instances (`on_deleted`); restarted when
  its connection drops, every follower then re-reading the store;
- the sweeper: conversations whose owner let the lease expire (a dead instance), handed to
  `on_expired`, which claims and restores them as after a crash.

On a clean stop every lease is released and the instance's row removed, so the other
instances claim at once instead of waiting for the expiry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from contextlib import asynccontextmanager
from typing import IO, TYPE_CHECKING, Any

import psycopg
import trio

from trio_openhands.core.errors import ApiError
from trio_openhands.stores import file_store, trajectory
from trio_openhands.stores.conversation_store import OpenedFiles, OwnedElsewhere
from trio_openhands.stores.postgres import sdk_files
from trio_openhands.stores.postgres.catalog import Catalog
from trio_openhands.stores.postgres.database import DatabaseUnavailable, open_database
from trio_openhands.stores.postgres.event_writer import EventWriter
from trio_openhands.stores.postgres.events import EventStore
from trio_openhands.stores.postgres.fencing import LeaseLost
from trio_openhands.stores.postgres.follow import Wakeups
from trio_openhands.stores.postgres.heartbeat import heartbeat
from trio_openhands.stores.postgres.instances import InstanceRegistry, new_instance_id
from trio_openhands.stores.postgres.leases import LeaseStore
from trio_openhands.stores.postgres.notify import listen

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from trio_openhands.core.conversation_record import ConversationRecord
    from trio_openhands.settings import Settings
    from trio_openhands.stores.postgres.database import Database
    from trio_openhands.stores.postgres.fencing import Fence
    from trio_openhands.stores.postgres.leases import Lease
    from trio_openhands.stores.postgres.notify import Notification

log = logging.getLogger(__name__)

# Seconds between two looks for expired leases (at most: a third of the lease time if less).
SWEEP_INTERVAL = 1.0
# Seconds before a dropped listener connection is opened again.
LISTEN_RETRY = 0.5


# The value of the conversation's last `execution_status` update: the status REST shows.
_LOGGED_STATUS = """
SELECT body::jsonb ->> 'value' FROM events
WHERE conversation_id = %s AND kind = 'ConversationStateUpdateEvent'
    AND body::jsonb ->> 'key' = 'execution_status'
ORDER BY seq DESC LIMIT 1
"""


class StoreStartFailed(RuntimeError):
    """The database cannot be used: unreachable, too new a schema, no shared secret."""


class PostgresStore:
    """The conversations of every instance sharing one database; this instance's leases."""

    shared = True

    def __init__(self, database: Database, settings: Settings, instance_id: str) -> None:
        assert settings.secret_key is not None
        self.database = database
        self.instance_id = instance_id
        self.address = settings.internal_address or _bound_address(settings)
        self.leases = LeaseStore(database, instance_id, ttl=settings.lease_seconds)
        self.registry = InstanceRegistry(
            database, instance_id, self.address, ttl=settings.lease_seconds
        )
        self.catalog = Catalog(database)
        self.events = EventStore(database)
        self.wakeups = Wakeups()
        self.held: dict[uuid.UUID, Lease] = {}
        self._secret = settings.secret_key
        # Set by `open_postgres_store`: the supervisor's way to stop a conversation here.
        self.on_lost: Callable[[uuid.UUID], object] = lambda conversation_id: None

    # -- ConversationStore ----------------------------------------------------------------

    async def read_records(self) -> list[dict[str, Any]]:
        return await self.catalog.all()

    async def read_record(self, conversation_id: uuid.UUID) -> dict[str, Any] | None:
        return await self.catalog.get(conversation_id)

    async def logged_status(self, conversation_id: uuid.UUID) -> str | None:
        def logged_status(connection: psycopg.Connection) -> str | None:
            row = connection.execute(_LOGGED_STATUS, (conversation_id,)).fetchone()
            return None if row is None else str(row[0])

        return await self.database.run(logged_status)

    async def secret_key(self) -> str:
        return self._secret

    async def claim(self, conversation_id: uuid.UUID) -> None:
        if conversation_id in self.held:
            return
        lease = await self.leases.claim(conversation_id)
        if lease is None:
            raise OwnedElsewhere(conversation_id, await self.owner_address(conversation_id))
        if conversation_id in self.held:  # claimed twice at once here: keep the first
            return
        self.held[conversation_id] = lease
        log.info("conversation %s: claimed (lease %d)", conversation_id.hex, lease.token)

    async def owner_address(self, conversation_id: uuid.UUID) -> str | None:
        """Where the conversation's live owner serves; None when no live instance holds it."""
        lease = await self.leases.holder(conversation_id)
        if lease is None or lease.owner == self.instance_id:
            return None
        return await self.registry.address_of(lease.owner)

    async def open_files(self, record: ConversationRecord) -> OpenedFiles:
        from trio_openhands.stores.postgres.sdk_file_store import PostgresFileStore  # the SDK

        fence = self._lease(record.id).fence
        stored = await self.events.last_seq(record.id)
        return OpenedFiles(
            sdk_file_store=PostgresFileStore(self.database, fence),
            durable=None,  # each write is committed as it is made
            events=FencedEvents(
                EventWriter(self.events, fence, start_after=stored), self._found_lost
            ),
        )

    async def save_record(self, record: ConversationRecord) -> None:
        fence = self._lease(record.id).fence
        try:
            await self.catalog.put(
                fence, record.to_json(), created_at=record.created_at, updated_at=record.updated_at
            )
        except LeaseLost:  # taken over before the heartbeat said so: nothing was written
            self._found_lost(fence)

    async def adopt_folder(self, conversation_id: uuid.UUID, folder: Path) -> None:
        """Copy the folder's files into the conversation's SDK files, in one fenced
        transaction, then remove the folder: no instance's disk keeps any of it."""
        fence = self._lease(conversation_id).fence

        def files() -> list[tuple[str, bytes]]:
            return [
                (path.relative_to(folder).as_posix(), path.read_bytes())
                for path in sorted(folder.rglob("*"))
                if path.is_file() and path.suffix != ".lock"  # LocalFileStore's lock files
            ]

        found = await trio.to_thread.run_sync(files)
        try:
            await trio.to_thread.run_sync(sdk_files.blocking_write_all, self.database, fence, found)
        except LeaseLost:
            self._found_lost(fence)
            raise ApiError(
                503, f"Conversation {conversation_id} moved to another instance"
            ) from None
        await trio.to_thread.run_sync(file_store.remove_tree, folder)
        log.info("conversation %s: %d SDK files stored", conversation_id.hex, len(found))

    async def release(self, conversation_id: uuid.UUID) -> None:
        lease = self.held.pop(conversation_id, None)
        if lease is not None and await self.leases.release(lease):
            log.info("conversation %s: released (lease %d)", conversation_id.hex, lease.token)

    async def remove(self, conversation_id: uuid.UUID) -> None:
        lease = self._lease(conversation_id)
        await self.catalog.delete(lease.fence)  # releases the lease too
        self.held.pop(conversation_id, None)

    async def write_trajectory(self, conversation_id: uuid.UUID, out: IO[bytes]) -> bool:
        record = await self.catalog.get(conversation_id)
        if record is None:
            return False
        meta = ("meta.json", json.dumps(record).encode())

        def write() -> None:
            with contextlib.closing(
                sdk_files.blocking_each_file(self.database, conversation_id)
            ) as files:
                trajectory.write_entries_zip(
                    conversation_id.hex, itertools.chain(files, [meta]), out
                )

        await trio.to_thread.run_sync(write)
        return True

    def holds(self, conversation_id: uuid.UUID) -> bool:
        return conversation_id in self.held

    def _lease(self, conversation_id: uuid.UUID) -> Lease:
        lease = self.held.get(conversation_id)
        if lease is None:
            raise ApiError(503, f"Conversation {conversation_id} moved to another instance")
        return lease

    def statistics(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "leases_held": len(self.held)}

    # -- the store's tasks ------------------------------------------------------------------

    def _found_lost(self, fence: Fence) -> None:
        """A write was refused, or the heartbeat found the lease gone: stop it here."""
        held = self.held.get(fence.conversation_id)
        if held is not None and held.token == fence.token:
            del self.held[fence.conversation_id]
            log.warning(
                "conversation %s: taken over by another instance (lease %d lost): stopping here",
                fence.conversation_id.hex,
                fence.token,
            )
            self.on_lost(fence.conversation_id)

    async def _listen(
        self,
        url: str,
        on_deleted: Callable[[uuid.UUID], object],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        def on_notification(notification: Notification) -> None:
            self.wakeups.deliver(notification)
            if notification.deleted:
                on_deleted(notification.conversation_id)

        first = True
        while True:
            try:
                if first:
                    await listen(url, on_notification, task_status=task_status)
                else:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(listen, url, on_notification)
                        self.wakeups.wake_all()  # notifications may have been lost meanwhile
                return
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if first:
                    raise
                log.warning("listener: connection lost (%s); listening again", error)
            first = False
            await trio.sleep(LISTEN_RETRY)

    async def _sweep(self, on_expired: Callable[[uuid.UUID], Awaitable[object]]) -> None:
        interval = min(SWEEP_INTERVAL, self.leases.ttl / 3)
        while True:
            await trio.sleep(interval)
            try:
                expired = await self.leases.expired()
            except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable) as e:
                log.warning("sweeper: the database did not answer (%s)", e)
                continue
            for conversation_id in expired:
                if conversation_id not in self.held:
                    await on_expired(conversation_id)


class FencedEvents:
    """The conversation's `EventWriter` as an `EventSink`: a flush after a takeover answers
    503 (the conversation moved) instead of failing the request."""

    def __init__(self, writer: EventWriter, on_lost: Callable[[Fence], object]) -> None:
        self.writer = writer
        self._on_lost = on_lost

    def add(self, event: Any) -> None:
        self.writer.add(event)

    async def flush(self) -> None:
        try:
            await self.writer.flush()
        except LeaseLost:
            self._on_lost(self.writer.fence)
            raise ApiError(
                503, f"Conversation {self.writer.fence.conversation_id} moved to another instance"
            ) from None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.writer.run(task_status=task_status)
        if self.writer.failed is not None:  # the lease was lost
            self._on_lost(self.writer.fence)


def _bound_address(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


@asynccontextmanager
async def open_postgres_store(
    settings: Settings,
    *,
    on_lost: Callable[[uuid.UUID], object],
    on_deleted: Callable[[uuid.UUID], object],
    on_expired: Callable[[uuid.UUID], Awaitable[object]],
) -> AsyncIterator[PostgresStore]:
    """Open the database (migrated), register this instance, run the store's tasks for the
    block; then release every lease and deregister. `StoreStartFailed` with the reason
    when the database cannot be used."""
    from trio_openhands.stores.postgres.schema import SchemaTooNew

    url = settings.database_url
    assert url is not None
    if not settings.secret_key:
        raise StoreStartFailed(
            "a shared database needs OH_SECRET_KEY, the same on every instance: "
            "the keys the conversations keep are encrypted with it"
        )
    instance_id = new_instance_id()
    try:
        database_context = open_database(url, application_name=f"trio-openhands {instance_id[:8]}")
        database = await database_context.__aenter__()
    except (DatabaseUnavailable, SchemaTooNew, psycopg.Error) as error:
        raise StoreStartFailed(f"cannot use the database: {error}") from None
    try:
        store = PostgresStore(database, settings, instance_id)
        store.on_lost = on_lost
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda *, task_status: heartbeat(
                    store.leases,
                    lambda: list(store.held.values()),
                    lambda lease: store._found_lost(lease.fence),
                    registry=store.registry,
                    task_status=task_status,
                )
            )
            await nursery.start(store._listen, url, on_deleted)
            nursery.start_soon(store._sweep, on_expired)
            log.info("instance %s: serving at %s, sharing the database", instance_id, store.address)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    for conversation_id in list(store.held):
                        try:
                            await store.release(conversation_id)
                        except (psycopg.Error, DatabaseUnavailable) as error:
                            log.warning("releasing %s failed: %s", conversation_id.hex, error)
                    try:
                        await store.registry.deregister()
                    except (psycopg.Error, DatabaseUnavailable) as error:
                        log.warning("deregistering failed: %s", error)
    finally:
        await database_context.__aexit__(None, None, None)
