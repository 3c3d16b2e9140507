"""Messages posted to one conversation at once reach the SDK in batches
(core/message_batches.py), each acknowledged only once it is logged and on disk."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import trio
import trio.testing

from tests.conftest import test_settings
from tests.stored import conversation_bytes
from trio_openhands.core.models import StartConversationRequest, TextPart
from trio_openhands.core.sdk_bridge import to_message
from trio_openhands.core.sdk_loader import SdkLoader
from trio_openhands.core.seed_create import create_seed_conversation
from trio_openhands.core.supervisor import Supervisor

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.core.conversation import Conversation


async def open_conversation(nursery: trio.Nursery, tmp_path: Path) -> Conversation:
    settings = test_settings(tmp_path)
    supervisor: Supervisor = await nursery.start(Supervisor(settings, SdkLoader()).run)
    request = StartConversationRequest.model_validate({"llm": {"model": "openai/fake"}})
    return await create_seed_conversation(supervisor, request)


def texts_logged(conversation: Conversation) -> list[str]:
    return [
        part["text"]
        for event in conversation.log.events
        if event.kind == "MessageEvent"
        for part in json.loads(event.json)["llm_message"]["content"]
    ]


async def test_messages_posted_together_are_sent_in_one_batch_each_acknowledged_when_logged(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    conversation = await open_conversation(nursery, tmp_path)
    await conversation.send_message(to_message([TextPart(text="first alone")]), run=False)
    assert conversation.messages.batches == 1
    posted = [f"together {index}" for index in range(8)]
    answered: list[str] = []

    async def post(text: str) -> None:
        await conversation.send_message(to_message([TextPart(text=text)]), run=False)
        assert text in texts_logged(conversation)  # logged before the answer
        answered.append(text)

    async with trio.open_nursery() as posters:
        for text in posted:
            posters.start_soon(post, text)
    # The first poster's message went alone (nobody else was waiting yet); the seven that
    # waited for it went together.
    assert conversation.messages.batches == 3
    assert sorted(answered) == posted
    logged = texts_logged(conversation)
    assert logged[0] == "first alone"
    assert sorted(logged[1:]) == posted
    # One state update per message, as when they are sent one by one, all on disk.
    stored = conversation_bytes(test_settings(tmp_path), conversation.id)
    assert sum(b'"kind":"MessageEvent"' in content for content in stored) == 9
    updates = [c for c in stored if b'"key":"last_user_message_id"' in c]
    assert len(updates) == 9


async def test_a_poster_cancelled_while_its_message_waits_sends_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    conversation = await open_conversation(nursery, tmp_path)
    assert conversation.sdk is not None
    state = conversation.sdk.state
    held, release = threading.Event(), threading.Event()

    def hold_the_state_lock() -> None:  # as a run's step holds it
        with state:
            held.set()
            release.wait()

    async with trio.open_nursery() as inner:
        inner.start_soon(trio.to_thread.run_sync, hold_the_state_lock)
        await trio.to_thread.run_sync(held.wait)
        inner.start_soon(conversation.send_message, to_message([TextPart(text="sent")]), False)
        await trio.testing.wait_all_tasks_blocked()  # its batch waits for the lock
        with trio.CancelScope() as waiting:
            waiting.cancel()  # cancelled while queued behind the batch in flight
            await conversation.send_message(to_message([TextPart(text="withdrawn")]), False)
        release.set()
    assert texts_logged(conversation) == ["sent"]
    await conversation.send_message(to_message([TextPart(text="later")]), run=False)
    assert texts_logged(conversation) == ["sent", "later"]
    assert conversation.messages.batches == 2
