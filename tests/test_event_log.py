"""Unit tests of EventLog and Subscription, without a server or the SDK.

Interleavings are forced with trio events and `wait_all_tasks_blocked`, never with sleeps,
so each test sees the same schedule on every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trio_openhands.core.event_log import (
    CLOSE_CONVERSATION_DELETED,
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN_LATER,
    EventLog,
    LoggedEvent,
    Transient,
)

if TYPE_CHECKING:
    from trio_openhands.core.event_log import Frame, Subscription

T0 = datetime(2026, 1, 1, 12, 0, 0)


@dataclass
class Text:
    text: str


@dataclass
class Message:
    content: list[Text]


@dataclass
class FakeEvent:
    """What EventLog reads of an SDK event: id, source, timestamp, optional llm_message."""

    id: str
    source: str = "agent"
    timestamp: str = field(default_factory=T0.isoformat)
    llm_message: Message | None = None


class MessageEvent(FakeEvent):
    """Named like the SDK class: the log takes `kind` from the class name."""


def add(log: EventLog, index: int, text: str | None = None) -> LoggedEvent:
    if text is None:
        event: FakeEvent = FakeEvent(
            f"e{index}", timestamp=(T0 + timedelta(seconds=index)).isoformat()
        )
    else:
        event = MessageEvent(f"e{index}", source="user", llm_message=Message([Text(text)]))
    return log.append(event, json.dumps({"id": event.id}))


def ids(frames: list[Frame]) -> list[str]:
    return [frame.id for frame in frames if isinstance(frame, LoggedEvent)]


async def collect(subscription: Subscription, into: list[Frame]) -> None:
    async for frame in subscription.frames():
        into.append(frame)


def test_append_assigns_dense_sequence_numbers_and_indexes_ids() -> None:
    log = EventLog(subscriber_buffer=4)
    for index in range(3):
        assert add(log, index).seq == index
    assert len(log) == 3
    assert log.seq_of("e1") == 1
    assert log.seq_of("nope") is None
    assert log.get("e2") is log.events[2]
    assert log.get("nope") is None
    assert [e.id for e in log.iter_from(1, descending=False)] == ["e1", "e2"]
    assert [e.id for e in log.iter_from(1, descending=True)] == ["e1", "e0"]
    assert list(log.iter_from(-1, descending=True)) == []


def test_fields_filters_need_are_extracted_once() -> None:
    log = EventLog(subscriber_buffer=4)
    plain = add(log, 0)
    message = add(log, 1, "Hello World")
    assert (plain.kind, plain.source, plain.search_text) == ("FakeEvent", "agent", "")
    assert plain.timestamp == T0
    assert (message.kind, message.source, message.search_text) == (
        "MessageEvent",
        "user",
        "hello world",
    )
    assert message.json == '{"id": "e1"}'


def test_an_event_the_sdk_emits_twice_is_logged_once() -> None:
    log = EventLog(subscriber_buffer=4)
    first = add(log, 0)
    with log.subscribe(after_seq=None) as subscription:
        again = add(log, 0)
        assert again is first
        assert len(log) == 1
        with pytest.raises(trio.WouldBlock):
            subscription.live.receive_nowait()  # nothing was published the second time


async def test_history_then_live_has_no_gap_and_no_duplicate_during_a_slowed_replay() -> None:
    """The reader stops after each history event while the producer appends: every
    event arrives exactly once, in sequence order, transient frames in publish order."""
    log = EventLog(subscriber_buffer=100)
    for index in range(5):
        add(log, index)
    received: list[Frame] = []
    step = trio.Semaphore(0)

    async def slow_reader(subscription: Subscription) -> None:
        async for frame in subscription.frames():
            received.append(frame)
            await step.acquire()  # the test lets it go one frame at a time

    with log.subscribe(after_seq=-1) as subscription:
        assert (subscription.history_start, subscription.history_end) == (0, 5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_reader, subscription)
            next_index = 5
            for _ in range(3):  # appends land while the history is still being replayed
                await trio.testing.wait_all_tasks_blocked()
                add(log, next_index)
                next_index += 1
                step.release()
            log.publish(Transient('{"kind": "ConversationStateUpdateEvent"}'))
            add(log, next_index)
            for _ in range(20):
                step.release()
            await trio.testing.wait_all_tasks_blocked()
            log.close(CLOSE_GOING_AWAY, "bye")
            for _ in range(20):
                step.release()
    assert ids(received) == [f"e{index}" for index in range(9)]
    transient_at = next(i for i, f in enumerate(received) if isinstance(f, Transient))
    assert ids(received[:transient_at]) == [f"e{index}" for index in range(8)]
    assert subscription.close_code == CLOSE_GOING_AWAY


async def test_after_seq_replays_only_what_came_after() -> None:
    log = EventLog(subscriber_buffer=10)
    for index in range(4):
        add(log, index)
    received: list[Frame] = []
    with log.subscribe(after_seq=1) as subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, subscription, received)
            add(log, 4)
            await trio.testing.wait_all_tasks_blocked()
            log.close(CLOSE_CONVERSATION_DELETED, "deleted")
    assert ids(received) == ["e2", "e3", "e4"]


async def test_default_subscription_gets_only_new_events() -> None:
    log = EventLog(subscriber_buffer=10)
    add(log, 0)
    received: list[Frame] = []
    with log.subscribe(after_seq=None) as subscription:
        assert list(subscription.history()) == []
        add(log, 1)
        log.close(CLOSE_CONVERSATION_DELETED, "deleted")
        await collect(subscription, received)
    assert ids(received) == ["e1"]


async def test_a_full_buffer_closes_that_subscriber_with_1013_and_nobody_waits() -> None:
    log = EventLog(subscriber_buffer=3)
    stalled = log.subscribe(after_seq=None)
    healthy = log.subscribe(after_seq=None)
    received: list[Frame] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, healthy, received)
        for index in range(10):
            add(log, index)  # synchronous: the producer can never be made to wait
            await trio.testing.wait_all_tasks_blocked()  # the healthy reader keeps up
        assert stalled.close_code == CLOSE_TRY_AGAIN_LATER
        assert "after_event_id" in stalled.close_reason
        assert log.statistics() == {"events": 10, "subscribers": 1}
        # Its backlog was dropped at once: a stalled client holds no frames.
        assert stalled.live.statistics().current_buffer_used == 0
        log.close(CLOSE_GOING_AWAY, "bye")
    assert ids(received) == [f"e{index}" for index in range(10)]
    assert healthy.close_code == CLOSE_GOING_AWAY
    late: list[Frame] = []
    await collect(stalled, late)
    assert late == []


async def test_closed_during_the_history_stops_there_without_live_frames() -> None:
    """A partial history followed by live frames would be a gap: the reader stops."""
    log = EventLog(subscriber_buffer=10)
    for index in range(5):
        add(log, index)
    received: list[Frame] = []
    with log.subscribe(after_seq=-1) as subscription:
        add(log, 5)  # queued for live
        frames = subscription.frames()
        received.append(await anext(frames))
        received.append(await anext(frames))
        log.close(CLOSE_CONVERSATION_DELETED, "deleted")
        received.extend([frame async for frame in frames])
    assert ids(received) == ["e0", "e1"]
    assert subscription.close_code == CLOSE_CONVERSATION_DELETED


async def test_batches_bring_what_is_there_at_once_and_stop_after_a_closed_history() -> None:
    log = EventLog(subscriber_buffer=10)
    for index in range(5):
        add(log, index)
    with log.subscribe(after_seq=-1) as subscription:
        add(log, 5)
        add(log, 6)
        batches = subscription.batches()
        assert ids(await anext(batches)) == ["e0", "e1", "e2", "e3", "e4"]  # the history
        assert ids(await anext(batches)) == ["e5", "e6"]  # what was queued, together
        add(log, 7)
        assert ids(await anext(batches)) == ["e7"]
    with log.subscribe(after_seq=-1) as subscription:
        batches = subscription.batches(max_chars=1)  # a frame per batch
        assert ids(await anext(batches)) == ["e0"]
        add(log, 8)  # queued for live
        log.close(CLOSE_CONVERSATION_DELETED, "deleted")
        assert [batch async for batch in batches] == []  # no live frame after a gap


async def test_closing_delivers_queued_frames_then_ends() -> None:
    log = EventLog(subscriber_buffer=10)
    received: list[Frame] = []
    with log.subscribe(after_seq=None) as subscription:
        add(log, 0)
        add(log, 1)
        log.close(CLOSE_CONVERSATION_DELETED, "conversation deleted")
        add(log, 2)  # after close: logged, but no longer streamed
        await collect(subscription, received)
    assert ids(received) == ["e0", "e1"]
    assert (subscription.close_code, subscription.close_reason) == (
        CLOSE_CONVERSATION_DELETED,
        "conversation deleted",
    )


async def test_subscribing_to_a_closed_log_ends_at_once_with_its_code() -> None:
    log = EventLog(subscriber_buffer=10)
    add(log, 0)
    log.close(CLOSE_GOING_AWAY, "server shutting down")
    received: list[Frame] = []
    with log.subscribe(after_seq=-1) as subscription:
        await collect(subscription, received)
    assert received == []
    assert subscription.close_code == CLOSE_GOING_AWAY
    assert log.statistics()["subscribers"] == 0


async def test_leaving_the_subscription_unsubscribes() -> None:
    log = EventLog(subscriber_buffer=1)
    with log.subscribe(after_seq=None):
        assert log.statistics()["subscribers"] == 1
    assert log.statistics()["subscribers"] == 0
    for index in range(5):
        add(log, index)  # nobody to offer to: no error, nothing kept


async def test_one_serialization_is_shared_by_every_subscriber() -> None:
    log = EventLog(subscriber_buffer=4)
    first = log.subscribe(after_seq=None)
    second = log.subscribe(after_seq=None)
    logged = add(log, 0)
    assert first.live.receive_nowait() is logged
    assert second.live.receive_nowait() is logged
    replay = log.subscribe(after_seq=-1)
    assert next(replay.history()) is logged
