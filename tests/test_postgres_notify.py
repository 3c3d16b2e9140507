"""LISTEN/NOTIFY into Trio: wake-ups reach a listener in order, after the commit, and the
listener's thread and connection end with its task; followers replay then go live."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
import pytest
import trio
import trio.testing

from trio_openhands.stores.postgres import follow, notify
from trio_openhands.stores.postgres.catalog import Catalog
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.events import EventStore, StoredEvent
from trio_openhands.stores.postgres.leases import LeaseStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_openhands.stores.postgres.database import Database


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    async with open_database(postgres_url) as database:
        yield database


def listener_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("listen ")]


async def test_notifications_reach_a_trio_listener_in_order(
    database: Database, postgres_url: str
) -> None:
    send_channel, receive_channel = trio.open_memory_channel[notify.Notification](100)
    conversation = uuid.uuid4()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(notify.listen, postgres_url, send_channel.send_nowait)
            assert len(listener_threads()) == 1
            for seq in range(5):
                await notify.notify(database, conversation, seq)
            received = [await receive_channel.receive() for _ in range(5)]
            nursery.cancel_scope.cancel()
    assert received == [notify.Notification(conversation, seq) for seq in range(5)]
    assert listener_threads() == []  # the thread ended with the task


async def test_an_append_notifies_once_committed(database: Database, postgres_url: str) -> None:
    """A woken reader finds the events: the notification is sent by the appending
    transaction, so it arrives after they are committed, never before."""
    lease = await LeaseStore(database, "instance-a").claim(uuid.uuid4())
    assert lease is not None
    store = EventStore(database)
    woken = trio.Event()
    seen: list[tuple[notify.Notification, list[int]]] = []

    async def read_when_woken(notification: notify.Notification) -> None:
        events = await store.after(notification.conversation_id)
        seen.append((notification, [stored.seq for stored in events]))
        woken.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            def on_notification(notification: notify.Notification) -> None:
                nursery.start_soon(read_when_woken, notification)

            await nursery.start(notify.listen, postgres_url, on_notification)
            events = [
                StoredEvent(seq, f"e{seq}", "MessageEvent", "user", datetime(2026, 1, 1), "{}")
                for seq in range(3)
            ]
            await store.append(lease.fence, events)
            await woken.wait()
            nursery.cancel_scope.cancel()
    assert seen == [(notify.Notification(lease.conversation_id, 2), [0, 1, 2])]


async def test_foreign_payloads_are_skipped(database: Database, postgres_url: str) -> None:
    send_channel, receive_channel = trio.open_memory_channel[notify.Notification](10)
    conversation = uuid.uuid4()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(notify.listen, postgres_url, send_channel.send_nowait)
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                connection.execute("SELECT pg_notify(%s, 'not ours')", (notify.EVENTS_CHANNEL,))
            await notify.notify(database, conversation, 7)
            assert await receive_channel.receive() == notify.Notification(conversation, 7)
            nursery.cancel_scope.cancel()
    assert notify.parse("zz:1") is None
    assert notify.parse(f"{conversation.hex}:x") is None


async def test_a_failing_handler_ends_the_listener_with_its_error(
    database: Database, postgres_url: str
) -> None:
    def refuse(notification: notify.Notification) -> None:
        raise RuntimeError(f"refused {notification.seq}")

    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="refused 3")):
        async with trio.open_nursery() as nursery:
            await nursery.start(notify.listen, postgres_url, refuse)
            await notify.notify(database, uuid.uuid4(), 3)
    assert listener_threads() == []


async def test_a_lost_connection_ends_the_listener_with_the_error(
    database: Database, postgres_url: str
) -> None:
    """The owner learns of it (to restart the listener and have readers re-read)."""
    with (
        trio.fail_after(10),
        pytest.RaisesGroup(pytest.RaisesExc(psycopg.OperationalError)),
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(notify.listen, postgres_url, lambda notification: None)
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
                )
    assert listener_threads() == []


def make_events(seqs: range) -> list[StoredEvent]:
    return [
        StoredEvent(seq, f"e{seq}", "MessageEvent", "agent", datetime(2026, 1, 1), f'{{"n":{seq}}}')
        for seq in seqs
    ]


async def test_a_follower_on_another_instance_replays_then_goes_live(
    database: Database, postgres_url: str
) -> None:
    """The socket's path on any instance: the events already stored, then each new one as
    the owner (another instance) appends it, each exactly once, in order; then the
    deletion."""
    owner = await LeaseStore(database, "instance-a").claim(uuid.uuid4())
    assert owner is not None
    owner_events = EventStore(database)
    await owner_events.append(owner.fence, make_events(range(3)))
    wakeups = follow.Wakeups()
    seen: list[int] = []
    all_seen = trio.Event()

    with trio.fail_after(10):
        async with (
            open_database(postgres_url, application_name="instance-b") as reader,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(notify.listen, postgres_url, wakeups.deliver)
            with follow.EventFollower(EventStore(reader), wakeups, owner.conversation_id) as f:
                assert [e.seq for e in await f.next_batch()] == [0, 1, 2]  # the replay

                async def read_live() -> None:
                    while len(seen) < 7:
                        seen.extend(event.seq for event in await f.next_batch())
                    all_seen.set()

                nursery.start_soon(read_live)
                for seq in range(3, 6):
                    await owner_events.append(owner.fence, make_events(range(seq, seq + 1)))
                await owner_events.append(owner.fence, make_events(range(6, 10)))
                await all_seen.wait()
                assert wakeups.statistics() == {"conversations": 1, "followers": 1}

                await Catalog(database).delete(owner.fence)
                with pytest.raises(follow.ConversationDeleted):
                    await f.next_batch()
            assert wakeups.statistics() == {"conversations": 0, "followers": 0}
            nursery.cancel_scope.cancel()
    assert seen == list(range(3, 10))


async def test_wake_all_makes_followers_read_the_store_again(database: Database) -> None:
    """After the listener was restarted (notifications lost): nothing was notified here,
    yet the follower finds what was appended meanwhile."""
    owner = await LeaseStore(database, "instance-a").claim(uuid.uuid4())
    assert owner is not None
    store = EventStore(database)
    wakeups = follow.Wakeups()
    got: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with follow.EventFollower(store, wakeups, owner.conversation_id) as follower:

                async def read_one_batch() -> None:
                    got.extend(event.seq for event in await follower.next_batch())

                nursery.start_soon(read_one_batch)
                while not follower.waiting:  # its read (a worker thread) found nothing
                    await trio.testing.wait_all_tasks_blocked()
                await store.append(owner.fence, make_events(range(2)))  # no listener: no news
                wakeups.wake_all()
    assert got == [0, 1]
