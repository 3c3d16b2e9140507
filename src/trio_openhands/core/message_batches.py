"""User messages posted to one conversation at once reach the SDK together.

Why: each `send_message` takes the SDK's state lock, writes the message's event, its state
update and `base_state.json`, and is synced before it is acknowledged. Posters that arrive
while one is being sent used to queue on that lock, one worker thread each. Here they wait
on the Trio thread instead, and the next of them sends every message waiting, in arrival
order, in one worker-thread call under one hold of the lock: `base_state.json` is written
and the files synced once per batch (measured with the SDK alone, 2.2 -> 1.45 ms of CPU a
message in batches of 8). Every message still has its own outcome, and its poster is
answered only once it is synced.

A poster cancelled while its message waits takes it out of the queue (it was never sent,
and never acknowledged); once its batch is in the worker thread, it is sent, as a blocking
call that has begun is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from openhands.sdk import Message

# Sends messages in a worker thread; the outcome of each, in order: None or its error.
type SendBatch = Callable[[Sequence[Message]], list[BaseException | None]]


class _Posted:
    __slots__ = ("message", "outcome", "sent")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.sent = False
        self.outcome: BaseException | None = None


class MessageBatches:
    """One conversation's waiting messages, sent a batch at a time (see the module)."""

    def __init__(self, send_batch: SendBatch) -> None:
        self._send_batch = send_batch
        self._waiting: list[_Posted] = []
        self._sending = False
        self._batch_sent = trio.Event()  # set when the batch in flight has been sent
        self.batches = 0  # how many batches, for tests and statistics

    async def send(self, message: Message) -> None:
        """Return once `message` is sent and synced; raise what sending it raised."""
        posted = _Posted(message)
        self._waiting.append(posted)
        while not posted.sent:
            if not self._sending:
                await self._send_waiting()
                continue
            batch_sent = self._batch_sent
            try:
                await batch_sent.wait()
            except trio.Cancelled:
                if posted in self._waiting:  # not sent: leave nothing behind
                    self._waiting.remove(posted)
                raise
        if posted.outcome is not None:
            raise posted.outcome

    async def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        self._sending = True
        batch_sent = self._batch_sent
        messages = [posted.message for posted in batch]
        try:
            outcomes = await trio.to_thread.run_sync(self._send_batch, messages)
        except BaseException as error:  # the batch itself failed: each message with it
            self._settle(batch, [error] * len(batch), batch_sent)
            raise
        self._settle(batch, outcomes, batch_sent)

    def _settle(
        self,
        batch: list[_Posted],
        outcomes: list[BaseException | None],
        batch_sent: trio.Event,
    ) -> None:
        for posted, outcome in zip(batch, outcomes, strict=True):
            posted.sent, posted.outcome = True, outcome
        self.batches += 1
        self._sending = False
        self._batch_sent = trio.Event()
        batch_sent.set()
