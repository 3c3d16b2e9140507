"""A conversation's SDK calls, made durable: what an answer acknowledges is stored.

Every call syncs what it wrote before it returns (the files store's group commit,
stores/group_commit.py) and flushes the events it logged (the shared store's `events`
table). `Conversation` (conversation.py), whose base this is, makes its SDK calls so.
A long one (an LLM call) is owned by the conversation's nursery (`run_owned`), so that a
delete or a shutdown does not wait for it.
"""

from __future__ import annotations

import contextvars
from contextlib import nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

import outcome
import trio

from trio_openhands.core.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from openhands.sdk import LocalConversation, Message

    from trio_openhands.core.conversation_record import ConversationRecord
    from trio_openhands.stores.conversation_store import EventSink
    from trio_openhands.stores.group_commit import GroupCommitFileStore


class DurableSdkCalls:
    """The SDK conversation, where its writes go, and the calls that wait for them."""

    # The conversation's (set by `Conversation`): `run_owned` starts its calls in the nursery.
    record: ConversationRecord
    nursery: trio.Nursery | None

    def __init__(self) -> None:
        self.sdk: LocalConversation | None = None
        # The SDK's files, made durable by `sync()` (set by the supervisor before it opens
        # the SDK conversation): every SDK call below syncs before it returns.
        self.files: GroupCommitFileStore | None = None
        # Where the logged events are stored beside the log (the shared store's `events`
        # table; None in the files store, whose SDK files are the log): every command
        # flushes it before it returns, as it syncs the files.
        self.events: EventSink | None = None
        # Another instance took the conversation over (the shared store): it stops here at
        # once and writes nothing more (its writes would be refused anyway).
        self.lost = False

    async def _call_durably[T](self, fn: Callable[..., T], *args: Any) -> T:
        """`_durably(fn, *args)` in a worker thread, then the events it logged stored."""
        result = await trio.to_thread.run_sync(self._durably, fn, *args)
        await self.flush_events()
        return result

    async def run_owned[T](self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking SDK call (an LLM call, say) in a worker thread, owned by the
        conversation's scope: a delete or shutdown does not wait for it (the thread is
        abandoned, its result dropped) and the caller gets a 404."""
        assert self.nursery is not None
        done = trio.Event()
        result: list[outcome.Outcome[T]] = []

        async def owned() -> None:
            try:
                value = await trio.to_thread.run_sync(
                    partial(self._durably, fn, *args), abandon_on_cancel=True
                )
                result.append(outcome.Value(value))
            except Exception as error:
                result.append(outcome.Error(error))
            finally:
                done.set()

        contextvars.Context().run(self.nursery.start_soon, owned)
        await done.wait()
        if not result:
            raise NotFound(f"Conversation not found: {self.record.id}")
        value = result[0].unwrap()
        await self.flush_events()
        return value

    async def set_confirmation_policy(self, policy: Any) -> None:
        assert self.sdk is not None
        await self._call_durably(self.sdk.set_confirmation_policy, policy)

    async def set_security_analyzer(self, analyzer: Any) -> None:
        assert self.sdk is not None
        await self._call_durably(self.sdk.set_security_analyzer, analyzer)

    async def update_secrets(self, secrets: dict[str, Any]) -> None:
        assert self.sdk is not None
        await self._call_durably(self.sdk.update_secrets, secrets)

    async def flush_events(self) -> None:
        """Return once every event logged so far is stored (the shared store's table). The
        events an SDK call emitted are in the log once the call has returned to Trio: the
        hand-over (`run_sync_soon`) precedes the thread's result in Trio's queue."""
        if self.events is not None and not self.lost:
            await self.events.flush()

    async def make_durable(self) -> None:
        """Every write so far synced (the files store), every event stored (the shared one)."""
        if self.files is not None:
            await trio.to_thread.run_sync(self.files.sync)
        await self.flush_events()

    def _durably[T](self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking SDK call, then a sync of what it wrote (worker thread)."""
        try:
            return fn(*args)
        finally:
            if self.files is not None:
                self.files.sync()

    def send_batch_durably(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """The SDK's `send_message` for each message in order, under one hold of its state
        lock (so `base_state.json` is written once), synced once the lock is released:
        concurrent writers' fsyncs then overlap and share a sync (worker thread). The
        outcome of each: None, or what sending it raised."""
        sdk = self.sdk
        assert sdk is not None
        outcomes: list[BaseException | None] = []
        with self.files.deferred() if self.files is not None else nullcontext(), sdk.state:
            for message in messages:
                try:
                    sdk.send_message(message)
                except Exception as error:
                    outcomes.append(error)
                else:
                    outcomes.append(None)
        if self.files is not None:
            self.files.sync()
        return outcomes
