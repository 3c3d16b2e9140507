"""Socket frames written in batches straight to Hypercorn's WebSocket stream
(web/frame_writer.py): what a subscriber has queued goes out in one write, framed by the
connection's own wsproto state, so a client that negotiated compression still reads every
frame. These tests fail if the fast path stops being taken (a Hypercorn upgrade that
changes its stream's shape): frames would then go one write each."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wsproto.extensions import PerMessageDeflate

from tests.conftest import STORE_INDEPENDENT, LiveServer
from tests.test_events import all_events, create, send
from tests.test_sockets import RawSocket, socket_path

if TYPE_CHECKING:
    import pytest

    from trio_openhands.testing.fake_llm import FakeLLM


@STORE_INDEPENDENT
async def test_a_replay_goes_out_in_one_write_even_compressed(
    server: LiveServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_openhands.web.frame_writer")
    conversation_id = await create(server, fake_llm)
    for index in range(30):
        await send(server, conversation_id, f"note {index}: " + "words to compress " * 20, False)
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
    assert f"socket closing with 4004 ({len(events)} frames in 1 write)" in caplog.text
