"""The owner's side of the `events` table: each logged event stored, in groups.

The conversation's in-memory log gives every event its seq on the Trio thread; `add` queues
it (never waiting) and a flush writes everything queued so far in one fenced transaction,
which also notifies the other instances' followers. Flushes are group commits: a caller
that comes while one is being written waits for it, then writes what is left, so a burst of
events costs a few transactions, not one each. The writer task flushes as soon as anything
is queued; a command flushes before its answer (`flush`), so a 2xx means that what it
logged is in the table, readable from every instance.

The table is an index of the SDK's own event files (which are written, fenced, before the
SDK hands an event over): a new owner appends whatever its predecessor logged but had not
stored yet when it loads the conversation (`start_after` is the table's last seq), so a
crash between the two loses nothing, and the seqs agree with the SDK's event order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from trio_openhands.stores.postgres.events import StoredEvent
from trio_openhands.stores.postgres.fencing import LeaseLost

if TYPE_CHECKING:
    from trio_openhands.core.event_log import LoggedEvent
    from trio_openhands.stores.postgres.events import EventStore
    from trio_openhands.stores.postgres.fencing import Fence

log = logging.getLogger(__name__)

# Seconds between two attempts to store events the database did not take.
RETRY_SECONDS = 1.0


def _stored(event: LoggedEvent) -> StoredEvent:
    text = event.search_text
    search = text if isinstance(text, str) else " ".join(text).lower()
    return StoredEvent(
        seq=event.seq,
        id=event.id,
        kind=event.kind,
        source=event.source,
        timestamp=event.timestamp,
        json=event.json,
        search_text=search,
    )


class EventWriter:
    """One conversation's events on their way to the table (an `EventSink`)."""

    def __init__(self, store: EventStore, fence: Fence, *, start_after: int) -> None:
        self.store = store
        self.fence = fence
        self.stored_seq = start_after  # the last seq known to be in the table
        self._next_seq = start_after + 1  # the next seq to queue
        self._queued: list[StoredEvent] = []
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self.failed: LeaseLost | None = None

    def add(self, event: LoggedEvent) -> None:
        if event.seq < self._next_seq:  # already stored (a reload), or re-emitted
            return
        if event.seq != self._next_seq:
            log.error(
                "conversation %s: event seq %d after %d: not stored",
                self.fence.conversation_id.hex,
                event.seq,
                self._next_seq - 1,
            )
            return
        self._next_seq += 1
        self._queued.append(_stored(event))
        self._wake.set()

    async def flush(self) -> None:
        """Return once every event queued before the call is in the table. Raises the
        write's error (`LeaseLost` once another instance took over)."""
        target = self._next_seq - 1
        async with self._lock:
            if self.stored_seq >= target:
                return
            if self.failed is not None:
                raise self.failed
            batch, self._queued = self._queued, []
            try:
                await self.store.append(self.fence, batch)
            except BaseException as error:
                if isinstance(error, LeaseLost):  # for good: nothing more is ours to write
                    self.failed = error
                self._queued = batch + self._queued  # else the next flush tries again
                raise
            self.stored_seq = batch[-1].seq

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush whenever something is queued, until cancelled (the conversation's task) or
        the lease is lost. A database that does not answer is retried every second."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.flush()
            except LeaseLost:
                return
            except Exception as error:
                log.warning(
                    "conversation %s: storing its events failed (%s); retrying",
                    self.fence.conversation_id.hex,
                    error,
                )
                self._wake.set()
                await trio.sleep(RETRY_SECONDS)
