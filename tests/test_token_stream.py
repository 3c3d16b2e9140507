"""A streaming LLM's deltas: queued on the SDK's thread, sent to live subscribers as few
frames as the Trio thread gets to them, always before the event they precede, never
logged. (The official client's view of it: test_sdk_client.py.)"""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

from tests.test_event_log import add
from trio_openhands.core.event_log import EventLog, LoggedEvent, Transient
from trio_openhands.core.token_stream import TokenStream


def chunk(content: str | None, reasoning: str | None = None) -> ModelResponseStream:
    delta = Delta(content=content, reasoning_content=reasoning)
    return ModelResponseStream(choices=[StreamingChoices(index=0, delta=delta)])


def delta_of(frame: object) -> dict[str, object]:
    assert isinstance(frame, Transient)
    delta = json.loads(frame.json)
    assert delta["kind"] == "StreamingDeltaEvent"
    return delta


async def test_deltas_queued_before_a_flush_go_out_as_one_frame_before_the_next_event() -> None:
    log = EventLog(subscriber_buffer=10)
    stream = TokenStream(log)
    token = trio.lowlevel.current_trio_token()
    with log.subscribe(None) as subscription:
        # As the SDK's thread would: nothing here lets the Trio thread run a flush.
        for piece in ("Hel", "lo", ""):
            stream.on_token(chunk(piece))
        stream.on_token(chunk(None, reasoning="thinking"))
        token.run_sync_soon(add, log, 0, "the message")  # the event the tokens made
        first = delta_of(await subscription.live.receive())
        assert (first["content"], first["reasoning_content"]) == ("Hello", "thinking")
        logged = await subscription.live.receive()
        assert isinstance(logged, LoggedEvent)
        assert logged.id == "e0"

        stream.on_token("more")  # the SDK also hands over plain text
        second = delta_of(await subscription.live.receive())
        assert (second["content"], second.get("reasoning_content")) == ("more", None)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.WouldBlock):  # those two frames, and no other
            subscription.live.receive_nowait()
    assert [event.id for event in log.events] == ["e0"]  # the deltas are not in the log


async def test_a_chunk_without_text_sends_nothing() -> None:
    log = EventLog(subscriber_buffer=10)
    stream = TokenStream(log)
    with log.subscribe(None) as subscription:
        stream.on_token(chunk(None))  # e.g. the usage chunk that ends a stream
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.WouldBlock):
            subscription.live.receive_nowait()
