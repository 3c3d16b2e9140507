"""Connections that misbehave or are cut short, on raw sockets against the real server:
early responses with the body still on its way, slow bodies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import trio

from tests.conftest import LiveServer, start_server, test_settings

if TYPE_CHECKING:
    from pathlib import Path

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent

# The request line and headers of each path that answers before reading the body.
EARLY_ANSWERS = {
    404: "POST /no/such/route",
    405: "POST /alive",
    413: "POST /conversations",  # announces more than the 16 MiB limit
    415: "POST /conversations",  # text/plain
    422: "POST /api/conversations/not-a-uuid/pause",
}


async def read_response(stream: trio.SocketStream) -> bytes:
    """Read until the end of one response's headers and its announced body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


async def open_stream(server: LiveServer) -> trio.SocketStream:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def early_answer_then_late_body(server: LiveServer, status: int) -> None:
    request_line = EARLY_ANSWERS[status]
    body = b'{"x": 1}'
    length = 17 * 1024 * 1024 if status == 413 else len(body)
    content_type = "text/plain" if status == 415 else "application/json"
    head = (
        f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    with trio.fail_after(10):
        stream = await open_stream(server)
        async with stream:
            await stream.send_all(head.encode())
            answer = await read_response(stream)
            assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
            assert b"connection: close" in answer.lower()
            assert b'"detail"' in answer
            # The body arrives late (as Node's fetch sends it), then another request: the
            # server must not leave the connection hanging: it closes it.
            try:
                await stream.send_all(body + b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            except trio.BrokenResourceError:
                return  # closed already
            rest = b""
            while chunk := await stream.receive_some(65536):
                rest += chunk
            assert rest == b"", rest  # EOF: closed, and nothing answered on a dead request


@pytest.mark.parametrize("status", sorted(EARLY_ANSWERS))
async def test_an_early_answer_closes_the_connection(server: LiveServer, status: int) -> None:
    await early_answer_then_late_body(server, status)


async def test_an_early_401_closes_the_connection(nursery: trio.Nursery, tmp_path: Path) -> None:
    keyed = await start_server(nursery, test_settings(tmp_path, session_api_keys=("k",)))
    try:
        with trio.fail_after(10):
            stream = await open_stream(keyed)
            async with stream:
                await stream.send_all(
                    b"POST /conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
                )
                answer = await read_response(stream)
                assert answer.startswith(b"HTTP/1.1 401")
                assert b"connection: close" in answer.lower()
                try:
                    await stream.send_all(b"{}GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                except trio.BrokenResourceError:
                    return
                assert await stream.receive_some(65536) == b""
    finally:
        await keyed.aclose()


async def test_keep_alive_still_works_when_the_body_was_read(server: LiveServer) -> None:
    """The normal case is untouched: a request whose body was read keeps its connection."""
    with trio.fail_after(10):
        stream = await open_stream(server)
        async with stream:
            request = (
                b"POST /conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )
            await stream.send_all(request)
            first = await read_response(stream)
            assert first.startswith(b"HTTP/1.1 422")
            assert b"connection: close" not in first.lower()
            await stream.send_all(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            second = await read_response(stream)
            assert second.startswith(b"HTTP/1.1 200")


async def test_a_slow_body_is_cut_at_the_body_timeout(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    slow = await start_server(nursery, test_settings(tmp_path, body_timeout=0.5))
    try:
        with trio.fail_after(10):
            stream = await open_stream(slow)
            async with stream:
                await stream.send_all(
                    b"POST /conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                )
                answer = await read_response(stream)  # no more bytes: the timeout answers
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                assert b"connection: close" in answer.lower()
                assert b'"detail"' in answer
                assert await stream.receive_some(65536) == b""
    finally:
        await slow.aclose()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 431),
        (b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
async def test_requests_hypercorn_refuses_get_a_json_answer(
    server: LiveServer, request_bytes: bytes, status: int
) -> None:
    with trio.fail_after(10):
        stream = await open_stream(server)
        async with stream:
            await stream.send_all(request_bytes)
            answer = await read_response(stream)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["detail"]
