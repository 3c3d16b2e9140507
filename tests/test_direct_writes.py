"""HTTP/1.1 writes made straight to the socket (web/direct_writes.py): a response is two
writes with no pass of the scheduler, a body bigger than the socket takes arrives whole, and
a client that goes away in the middle of one leaves the server serving. The first test
fails if the writes stop being made there (a Hypercorn upgrade that changes its shape)."""

from __future__ import annotations

import json
import logging
import socket as stdlib_socket
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import trio
import trio.testing

from tests.conftest import STORE_INDEPENDENT, LiveServer
from tests.test_events import all_events, create, send
from trio_openhands.web.direct_writes import COUNTS

if TYPE_CHECKING:
    import pytest

    from trio_openhands.testing.fake_llm import FakeLLM

BIG_MESSAGE = "0123456789abcdef" * 100_000  # 1.6 MB a message


async def conversation_with(server: LiveServer, fake_llm: FakeLLM, texts: list[str]) -> str:
    """A new conversation holding `texts` as user messages (no run): its id."""
    conversation_id = await create(server, fake_llm)
    for text in texts:
        await send(server, conversation_id, text, False)
    return conversation_id


async def big_conversation(server: LiveServer, fake_llm: FakeLLM) -> str:
    """A conversation of three 1.6 MB messages: more than a socket takes at once."""
    return await conversation_with(server, fake_llm, [f"big {i} {BIG_MESSAGE}" for i in range(3)])


async def small_buffer_connection(server: LiveServer) -> trio.SocketStream:
    """A connection that takes 4 KiB at a time: the server's writes to it fill its socket."""
    parts = urlsplit(server.url)
    sock = trio.socket.socket()
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    await sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    return trio.SocketStream(sock)


async def get(stream: trio.SocketStream, client: h11.Connection, target: str) -> None:
    host = urlsplit(target).netloc or "127.0.0.1"
    request = h11.Request(method="GET", target=target, headers=[("host", host)])
    await stream.send_all(client.send(request) + (client.send(h11.EndOfMessage()) or b""))


async def read_response(stream: trio.SocketStream, client: h11.Connection) -> tuple[int, bytes]:
    status, body = 0, bytearray()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, bytes(body)


@STORE_INDEPENDENT
async def test_a_response_is_two_writes_straight_to_the_socket(server: LiveServer) -> None:
    assert (await server.client.get("/alive")).status_code == 200  # the connection is open
    before = replace(COUNTS)
    answer = await server.client.get("/server_info")
    assert answer.status_code == 200
    assert answer.json()["version"]
    # Status line and headers, then the body; the end of a body of known length is nothing.
    assert COUNTS.at_once - before.at_once == 2
    assert (COUNTS.in_part, COUNTS.through_hypercorn) == (before.in_part, before.through_hypercorn)


@STORE_INDEPENDENT
async def test_a_body_bigger_than_the_socket_takes_at_once_arrives_whole(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    conversation_id = await big_conversation(server, fake_llm)
    events = await all_events(server, conversation_id)
    before = replace(COUNTS)
    stream = await small_buffer_connection(server)
    client = h11.Connection(h11.CLIENT)
    try:
        with trio.fail_after(30):
            await get(stream, client, f"/conversations/{conversation_id}/events/search")
            status, body = await read_response(stream, client)
            assert status == 200
            assert len(body) > 3_000_000
            items = json.loads(body)["items"]
            assert items == events[: len(items)]  # the first page, as any client reads it
            client.start_next_cycle()  # the connection serves the next request as usual
            await get(stream, client, "/alive")
            assert await read_response(stream, client) == (200, b'{"status": "ok"}')
    finally:
        await stream.aclose()
    assert COUNTS.in_part > before.in_part  # the socket took part; the rest followed


@STORE_INDEPENDENT
async def test_a_client_gone_in_the_middle_of_a_response_leaves_the_server_serving(
    server: LiveServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    conversation_id = await big_conversation(server, fake_llm)
    before = replace(COUNTS)
    stream = await small_buffer_connection(server)
    client = h11.Connection(h11.CLIENT)
    await get(stream, client, f"/conversations/{conversation_id}/events/search")
    with trio.fail_after(30):
        while COUNTS.in_part == before.in_part:  # the server waits for room in the socket
            assert await stream.receive_some(4096)
    await stream.aclose()  # unread data: the kernel resets the connection
    await trio.testing.wait_all_tasks_blocked()  # the server has seen the reset
    answer = await server.client.get(f"/conversations/{conversation_id}/events/search")
    assert answer.status_code == 200
    assert len(answer.json()["items"]) > 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
