"""Socket frames written in batches straight to Hypercorn's WebSocket stream
(web/frame_writer.py): what a subscriber has queued goes out in one write, framed by the
connection's own wsproto state, so a client that negotiated compression still reads every
frame, and over HTTP/1.1 straight to the socket (web/direct_writes.py). These tests fail if
either fast path stops being taken (a Hypercorn upgrade that changes its stream's shape):
frames would then go one write each, or through Hypercorn's own send."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage
from wsproto.extensions import PerMessageDeflate

from tests.conftest import STORE_INDEPENDENT, LiveServer
from tests.test_direct_writes import big_conversation, conversation_with
from tests.test_events import all_events
from tests.test_sockets import RawSocket, socket_path
from trio_openhands.web.direct_writes import COUNTS
from trio_openhands.web.frame_writer import SHARED_FRAME_LIMIT, frame_all

if TYPE_CHECKING:
    import pytest

    from trio_openhands.testing.fake_llm import FakeLLM


@STORE_INDEPENDENT
async def test_a_replay_goes_out_in_one_write_even_compressed(
    server: LiveServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_openhands.web.frame_writer")
    notes = [f"note {index}: " + "words to compress " * 20 for index in range(30)]
    conversation_id = await conversation_with(server, fake_llm, notes)
    events = await all_events(server, conversation_id)
    assert len(events) > 60  # each message and its state update, after the system prompt

    path = socket_path(conversation_id, "resend_all=true")
    raw = await RawSocket.open(server, path, extensions=[PerMessageDeflate()])
    try:
        assert [type(e) for e in raw.extensions] == [PerMessageDeflate]
        frames = await raw.frames_until(lambda frame: frame["id"] == events[-1]["id"])
        # Every event once, in log order, the same JSON the REST search serves.
        assert frames == events

        answer = await server.client.delete(f"/conversations/{conversation_id}")
        assert answer.status_code == 200, answer.text
        assert await raw.next_frame() is None
        assert raw.close_code == 4004
    finally:
        await raw.aclose()
    written = f"{len(events)} frames in 1 write"
    assert f"socket closing with 4004 ({written})" in caplog.text


@STORE_INDEPENDENT
async def test_a_write_bigger_than_the_socket_takes_at_once_arrives_whole(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """Megabytes to a client with a 4 KiB receive buffer: the socket takes part of the write,
    the rest follows as the client reads."""
    conversation_id = await big_conversation(server, fake_llm)
    events = await all_events(server, conversation_id)
    before = replace(COUNTS)
    raw = await RawSocket.open(server, socket_path(conversation_id, "resend_all=true"))
    try:
        frames = await raw.frames_until(lambda frame: frame["id"] == events[-1]["id"])
        assert frames == events
        assert (await server.client.delete(f"/conversations/{conversation_id}")).status_code == 200
        assert await raw.next_frame() is None
    finally:
        await raw.aclose()
    assert COUNTS.in_part > before.in_part


@STORE_INDEPENDENT
async def test_a_client_gone_in_the_middle_of_a_big_write_ends_its_socket_quietly(
    server: LiveServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_openhands.web.frame_writer")
    conversation_id = await big_conversation(server, fake_llm)
    left = trio.Event()
    watcher = _SetOnMessage("socket left by the client", left)
    logging.getLogger("trio_openhands.web.frame_writer").addHandler(watcher)
    try:
        raw = await RawSocket.open(server, socket_path(conversation_id, "resend_all=true"))
        assert (await raw.next_frame()) is not None  # the rest is still being written
        await raw.aclose()  # unread data: the kernel resets the connection
        with trio.fail_after(10):
            await left.wait()
    finally:
        logging.getLogger("trio_openhands.web.frame_writer").removeHandler(watcher)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The server goes on serving that conversation's sockets.
    again = await RawSocket.open(server, socket_path(conversation_id, "resend_all=true"))
    try:
        assert (await again.next_frame()) is not None
    finally:
        await again.aclose()


class _SetOnMessage(logging.Handler):
    """Sets `event` when a record holding `text` is logged (on the Trio thread, as the
    socket's own log lines are)."""

    def __init__(self, text: str, event: trio.Event) -> None:
        super().__init__()
        self._text, self._event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self._text in record.getMessage():
            self._event.set()


def received_texts(chunks: list[bytes]) -> list[str]:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(b"".join(chunks))
    return [event.data for event in client.events() if isinstance(event, TextMessage)]


@STORE_INDEPENDENT
def test_sockets_without_extensions_share_each_frame() -> None:
    texts = ['{"id": "one"}', '{"id": "two", "text": "%s"}' % ("x" * 70_000), "\u00e9t\u00e9"]
    first, second = Connection(ConnectionType.SERVER), Connection(ConnectionType.SERVER)
    framed_first, framed_second = frame_all(first, texts), frame_all(second, texts)
    # The same bytes wsproto makes for each socket, made once for the small frames.
    own = Connection(ConnectionType.SERVER)
    assert framed_first == framed_second == [own.send(TextMessage(data=t)) for t in texts]
    assert framed_first[0] is framed_second[0]
    assert framed_first[2] is framed_second[2]
    assert len(texts[1]) > SHARED_FRAME_LIMIT
    assert framed_first[1] is not framed_second[1]
    assert received_texts(framed_first) == texts


@STORE_INDEPENDENT
def test_a_compressed_socket_frames_its_own_and_a_closing_one_none() -> None:
    text = '{"text": "%s"}' % ("words to compress " * 20)
    deflate = PerMessageDeflate()
    deflate.accept("permessage-deflate")
    compressed = Connection(ConnectionType.SERVER, extensions=[deflate])
    [framed] = frame_all(compressed, [text])
    assert framed[0] & 0x40  # RSV1: compressed by the socket's own extension
    assert framed != frame_all(Connection(ConnectionType.SERVER), [text])[0]

    closing = Connection(ConnectionType.SERVER)
    closing.send(CloseConnection(code=1000))
    assert frame_all(closing, [text]) == []
