"""Following a conversation's events from the store, on any instance: replay, then live.

One `listen` task per instance feeds a `Wakeups` (its `deliver` is the listener's
handler); every reader (a socket) follows its conversation through an `EventFollower`:
each `next_batch()` returns the events after the last it returned, reading the store, and
waits for a wake-up only when the store has nothing newer. The follower registers with
`Wakeups` *before* its first read, so a notification sent between a read and the wait that
follows it is never missed: replay and live meet by sequence, with no gap and no duplicate.

A notification is only a hint that the store has more (the events are read from the store
by seq), so when the listener was restarted (notifications lost meanwhile) `wake_all` makes
every follower read again. A deletion (notified by `Catalog.delete`) ends each follower of
that conversation with `ConversationDeleted` once it has returned every event before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import uuid
    from types import TracebackType

    from trio_openhands.stores.postgres.events import EventStore, StoredEvent
    from trio_openhands.stores.postgres.notify import Notification


class ConversationDeleted(Exception):
    """The followed conversation was deleted (on whichever instance)."""


class _Watch:
    """What one follower has been told since it registered."""

    __slots__ = ("changed", "deleted", "latest", "reread")

    def __init__(self) -> None:
        self.latest = -1  # the highest seq notified
        self.deleted = False
        self.reread = False  # notifications may have been lost: read the store again
        self.changed = trio.Event()  # set at each of the above; replaced once seen

    def news_after(self, seq: int) -> bool:
        return self.latest > seq or self.deleted or self.reread


class Wakeups:
    """Notifications fanned out to the followers of each conversation (Trio thread only)."""

    def __init__(self) -> None:
        self._watches: dict[uuid.UUID, set[_Watch]] = {}

    def deliver(self, notification: Notification) -> None:
        """The listener's handler: wake every follower of the notified conversation."""
        for watch in self._watches.get(notification.conversation_id, ()):
            if notification.deleted:
                watch.deleted = True
            else:
                watch.latest = max(watch.latest, notification.seq)
            watch.changed.set()

    def wake_all(self) -> None:
        """Make every follower read the store again (after the listener was restarted)."""
        for watches in self._watches.values():
            for watch in watches:
                watch.reread = True
                watch.changed.set()

    def _add(self, conversation_id: uuid.UUID) -> _Watch:
        watch = _Watch()
        self._watches.setdefault(conversation_id, set()).add(watch)
        return watch

    def _remove(self, conversation_id: uuid.UUID, watch: _Watch) -> None:
        watches = self._watches.get(conversation_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[conversation_id]

    def statistics(self) -> dict[str, int]:
        return {
            "conversations": len(self._watches),
            "followers": sum(len(watches) for watches in self._watches.values()),
        }


class EventFollower:
    """One reader's position in one conversation's events. Use it as a (sync) context
    manager: entering registers it for wake-ups, which must precede its first read."""

    def __init__(
        self,
        store: EventStore,
        wakeups: Wakeups,
        conversation_id: uuid.UUID,
        *,
        after_seq: int = -1,
        batch_limit: int = 1000,
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.last_seq = after_seq  # the last seq returned
        self._wakeups = wakeups
        self._batch_limit = batch_limit
        self._watch: _Watch | None = None
        self.waiting = False  # whether it waits for news (the store had nothing newer)

    def __enter__(self) -> EventFollower:
        self._watch = self._wakeups._add(self.conversation_id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watch is not None:
            self._wakeups._remove(self.conversation_id, self._watch)
            self._watch = None

    async def next_batch(self) -> list[StoredEvent]:
        """The events after the last ones returned, in order (at least one; at most
        `batch_limit`), waiting for them if the store has none yet. Raises
        `ConversationDeleted` once the conversation is deleted and nothing is left."""
        watch = self._watch
        if watch is None:
            raise RuntimeError("enter the follower (`with follower:`) before reading")
        while True:
            watch.reread = False
            batch = await self.store.after(self.conversation_id, self.last_seq, self._batch_limit)
            if batch:
                self.last_seq = batch[-1].seq
                return batch
            if watch.deleted:
                raise ConversationDeleted(self.conversation_id)
            # Nothing newer in the store: wait for news of events past the last one read.
            # (A notification of events already read, sent before the read, is no news.)
            self.waiting = True
            try:
                while not watch.news_after(self.last_seq):
                    watch.changed = trio.Event()
                    await watch.changed.wait()
            finally:
                self.waiting = False
