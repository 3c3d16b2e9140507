"""Cross-instance wake-ups: LISTEN/NOTIFY, handed to Trio without ever waiting.

Writers notify `(conversation, seq)` on `EVENTS_CHANNEL` (`EventStore.append` does it in the
appending transaction, so the notification is delivered only once the events are
committed; `Catalog.delete` notifies a deletion the same way). A notification is a hint,
not the data: a reader woken by it reads the store after the last seq it has, so a
notification lost or coalesced costs latency, never an event. (PostgreSQL does fold
identical payloads of one transaction into one.)

`listen` owns one dedicated connection and one thread: the thread waits on the connection's
socket (and on a wake-up socket, so it can be told to stop at once) and hands each
notification to the Trio thread with `TrioToken.run_sync_soon`, which never blocks, in the
order PostgreSQL delivered them. `listen`'s lifetime is its Trio task's: run it in a nursery
(the supervisor's); cancelling that task stops the thread and closes the connection before
`listen` returns. A lost connection ends `listen` with the error: notifications sent
meanwhile are lost, so the owner must restart it and have every reader re-read the store.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import trio
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_openhands.stores.postgres.database import Database

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "trio_openhands_events"


# The `seq` of a notification that the conversation was deleted.
DELETED = -1


@dataclass(frozen=True, slots=True)
class Notification:
    """A conversation has events up to `seq` in the store, or (`deleted`) is gone."""

    conversation_id: uuid.UUID
    seq: int

    @property
    def deleted(self) -> bool:
        return self.seq == DELETED


def _payload(conversation_id: uuid.UUID, seq: int) -> str:
    return f"{conversation_id.hex}:{'deleted' if seq == DELETED else seq}"


def parse(payload: str) -> Notification | None:
    """The notification a payload carries; None for one that is not ours."""
    conversation_hex, _, seq = payload.partition(":")
    try:
        conversation_id = uuid.UUID(hex=conversation_hex)
        number = DELETED if seq == "deleted" else int(seq)
    except ValueError:
        return None
    return Notification(conversation_id, number) if number >= DELETED else None


def blocking_notify(connection: psycopg.Connection, conversation_id: uuid.UUID, seq: int) -> None:
    """Notify in the connection's current transaction (delivered when it commits); `seq`
    DELETED says the conversation was deleted."""
    connection.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, _payload(conversation_id, seq)))


async def notify(database: Database, conversation_id: uuid.UUID, seq: int) -> None:
    """Tell every listener that the conversation has events up to `seq` in the store (or,
    with DELETED, that it is gone)."""
    await database.run(lambda connection: blocking_notify(connection, conversation_id, seq))


def _deliver_all(
    connection: psycopg.Connection,
    deliver: Callable[[Notification], object],
) -> None:
    """Hand over whatever notifications have arrived, without waiting for more."""
    for received in connection.notifies(timeout=0):
        notification = parse(received.payload)
        if notification is None:
            log.warning("ignored a notification not of ours: %r", received.payload)
        else:
            deliver(notification)


def _listen_thread(
    connection: psycopg.Connection,
    wake: socket.socket,
    deliver: Callable[[Notification], object],
) -> None:
    _deliver_all(connection, deliver)  # any that arrived while LISTEN was answered
    while True:
        readable, _, _ = select.select([connection.fileno(), wake], [], [])
        if wake in readable:
            return
        _deliver_all(connection, deliver)


async def listen(
    url: str,
    on_notification: Callable[[Notification], object],
    *,
    channel: str = EVENTS_CHANNEL,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """LISTEN on `channel` until cancelled, calling `on_notification` for each notification.

    `on_notification` runs on the Trio thread, in delivery order; it must not block (send
    on a memory channel with `send_nowait`, set a `trio.Event`...). `task_status.started()`
    is called once LISTEN is in effect: a notification sent after that is never missed
    (while the connection lives). Raises the connection's error if it is lost."""
    token = trio.lowlevel.current_trio_token()

    def connect() -> psycopg.Connection:
        connection = psycopg.connect(url, autocommit=True, application_name="trio-openhands")
        try:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            connection.close()
            raise
        return connection

    connection = await trio.to_thread.run_sync(connect)
    wake_receive, wake_send = socket.socketpair()
    ended = trio.Event()
    failure: list[BaseException] = []

    def hand_over(notification: Notification) -> None:  # on the Trio thread
        if failure:
            return
        try:
            on_notification(notification)
        except BaseException as error:  # raised by `listen`, not into Trio's run loop
            failure.append(error)
            stop()

    def deliver(notification: Notification) -> None:  # on the listener thread
        token.run_sync_soon(hand_over, notification)

    def stop() -> None:
        with contextlib.suppress(OSError):
            wake_send.send(b"x")

    def run() -> None:
        try:
            _listen_thread(connection, wake_receive, deliver)
        except BaseException as error:  # handed to the Trio task, which raises it
            failure.append(error)
        finally:
            connection.close()
            token.run_sync_soon(ended.set)

    thread = threading.Thread(target=run, name=f"listen {channel}", daemon=True)
    thread.start()
    try:
        task_status.started()
        await ended.wait()
        if failure:
            raise failure[0]
    finally:
        stop()
        with trio.CancelScope(shield=True):
            await ended.wait()  # the thread sees the wake-up at once
        thread.join()  # it has set `ended` as its last act: this returns at once
        wake_send.close()
        wake_receive.close()
