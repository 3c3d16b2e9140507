"""Big messages on the live server: pages bounded in bytes, `body` search over texts that are
not kept lower-cased, and a deleted conversation's memory freed at once (issue 12, item 10).

Memory is checked on objects, not on RSS: the server runs in this process, so the test can
follow its objects with weakrefs and `gc.get_objects()`. "At once" means with the cyclic
collector off: what DELETE frees by reference counting alone (RSS figures: bench/memory.py).
"""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from quart.wrappers import Request

from tests.conftest import LiveServer, llm_settings, wait_status
from trio_openhands.core.conversation import Conversation
from trio_openhands.core.event_log import LoggedEvent
from trio_openhands.testing.fake_llm import FakeLLM, finish
from trio_openhands.web.seed.events import MAX_PAGE_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterator

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent

MB = 1_000_000


def big_text(marker: str, size: int, filler: str = "Lorem ipsum dolor sit amet. ") -> str:
    return marker + " " + filler * (size // len(filler))


def message(text_: str, run: bool = False) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text_}], "run": run}


async def create(server: LiveServer, fake_llm: FakeLLM, prefix: str = "") -> str:
    response = await server.client.post(
        prefix + "/conversations", json={"llm": llm_settings(fake_llm)}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def send(server: LiveServer, conversation_id: str, text_: str, run: bool = False) -> None:
    response = await server.client.post(
        f"/conversations/{conversation_id}/events", json=message(text_, run)
    )
    assert response.status_code == 200, response.text


async def pages(server: LiveServer, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a search, following `next_page_id` to the end."""
    found: list[list[dict[str, Any]]] = []
    page_id: str | None = None
    while True:
        query = {**params, **({"page_id": page_id} if page_id else {})}
        response = await server.client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found.append(page["items"])
        if page["next_page_id"] is None:
            return found
        assert page["next_page_id"] == "" or page["items"], "a page always holds an event"
        page_id = page["next_page_id"]


def texts(page: list[dict[str, Any]]) -> list[str]:
    """Each event's kind, or a message's first word (its marker); state updates (small,
    one after each message) left out."""
    return [
        e["llm_message"]["content"][0]["text"].split(" ", 1)[0]
        if e["kind"] == "MessageEvent"
        else e["kind"]
        for e in page
        if e["kind"] != "ConversationStateUpdateEvent"
    ]


async def test_pages_are_bounded_in_bytes_in_both_dialects(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    conversation_id = await create(server, fake_llm)
    size = int(MAX_PAGE_BYTES * 0.6)  # two do not fit in one page
    for marker in ("first", "second", "third"):
        await send(server, conversation_id, big_text(marker, size))
    small = [f"small{i}" for i in range(5)]
    for marker in small:
        await send(server, conversation_id, marker)
    for prefix in ("", "/api"):
        path = f"{prefix}/conversations/{conversation_id}/events/search"
        found = await pages(server, path, limit=100)
        assert [texts(page) for page in found] == [
            ["SystemPromptEvent", "first"],
            ["second"],
            ["third", *small],
        ]
        newest_first = await pages(server, path, limit=100, sort_order="TIMESTAMP_DESC")
        assert [texts(page) for page in newest_first] == [
            [*reversed(small), "third"],
            ["second"],
            ["first", "SystemPromptEvent"],
        ]
        limited = await pages(server, path, limit=2)
        assert [texts(page) for page in limited][:3] == [
            ["SystemPromptEvent", "first"],
            ["second"],  # each page of two: the update after a message, the next message
            ["third"],
        ]


async def test_one_event_bigger_than_a_page_is_a_page_of_its_own(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    conversation_id = await create(server, fake_llm)
    await send(server, conversation_id, "before")
    await send(server, conversation_id, big_text("huge", MAX_PAGE_BYTES + MB))
    await send(server, conversation_id, "after")
    path = f"/conversations/{conversation_id}/events/search"
    found = await pages(server, path, kind="MessageEvent")
    assert [texts(page) for page in found] == [["before"], ["huge"], ["after"]]


async def test_body_search_in_big_messages_ignores_case(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """Big texts are lower-cased only when searched, ASCII ones a 1 MiB chunk at a time:
    a word across a chunk boundary, a non-ASCII text and a small one are all found."""
    conversation_id = await create(server, fake_llm)
    boundary = big_text("boundary", 3 * MB)
    cut = (1 << 20) - 3  # "NeEdLe" straddles the first chunk boundary
    await send(server, conversation_id, boundary[:cut] + "NeEdLe" + boundary[cut:])
    await send(server, conversation_id, big_text("accents", 2 * MB, "Ça crée DÉJÀ ça. "))
    await send(server, conversation_id, big_text("plain", 2 * MB))
    await send(server, conversation_id, "small: a NEEDLE and déjà")
    path = f"/conversations/{conversation_id}/events/search"
    for body, expected in (
        ("needle", ["boundary", "small:"]),
        ("DÉJÀ", ["accents", "small:"]),
        ("déjà ça", ["accents"]),
        ("not there", []),
    ):
        found = await pages(server, path, body=body)
        assert [text for page in found for text in texts(page)] == expected, body
        count = await server.client.get(
            f"/api/conversations/{conversation_id}/events/count", params={"body": body}
        )
        assert count.json() == len(expected)


def loaded_conversation(conversation_id: str) -> Conversation:
    """The server's object for a conversation (the server runs in this process)."""
    return next(
        o for o in gc.get_objects() if isinstance(o, Conversation) and str(o.id) == conversation_id
    )


def holding(marker: str) -> Iterator[str]:
    """What in this process still holds a text starting with `marker`: our log's events, the
    SDK's events, a request's body."""
    for o in gc.get_objects():
        if isinstance(o, LoggedEvent) and marker in o.json[:2000]:
            yield "our log's event"
        elif isinstance(o, Request) and marker.encode() in bytes(o.body._data[:300]):  # pyright: ignore[reportPrivateUsage]
            yield f"a request's body ({o.method} {o.path})"


async def test_delete_frees_a_conversations_big_messages_at_once(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """Without the cyclic collector, DELETE frees the log's events, the SDK's events and
    the bodies of the requests that sent them (a run task started from a request, and the
    asyncio tasks of the SDK's run, used to keep that request referenced); with it,
    every object of the conversation is gone."""
    tag = fake_llm.script("memory", [finish("read it")])
    conversation_id = await create(server, fake_llm)
    await send(server, conversation_id, big_text("bigmarker-one", 2 * MB))
    await send(server, conversation_id, big_text(f"bigmarker-two {tag}", 2 * MB), run=True)
    await wait_status(server, conversation_id, "finished")
    conversation = loaded_conversation(conversation_id)
    assert conversation.sdk is not None
    sdk_events = [
        weakref.ref(e)
        for e in conversation.sdk.state.events
        if "bigmarker" in str(getattr(e, "llm_message", ""))[:300]
    ]
    assert len(sdk_events) == 2
    objects = [weakref.ref(conversation), weakref.ref(conversation.log)]
    objects.append(weakref.ref(conversation.sdk))
    del conversation
    assert sorted(holding("bigmarker")) == ["our log's event"] * 2
    gc.collect()
    gc.disable()
    try:
        response = await server.client.delete(f"/conversations/{conversation_id}")
        assert response.status_code == 200, response.text
        await server.client.get("/alive")  # this connection's previous request is let go
        assert [ref for ref in sdk_events if ref() is not None] == []
        assert list(holding("bigmarker")) == []
    finally:
        gc.enable()
    gc.collect()
    assert [ref() for ref in objects if ref() is not None] == []
