"""Live-server tests of `WS /conversations/{id}/events/socket`.

Two clients: trio-websocket for ordinary subscribers, and `RawSocket`, a bare wsproto client
whose TCP receive buffer is tiny and which reads only when told to. When it stops reading
during a history bigger than what TCP can hold in flight, the server's replay really
blocks: appends then land mid-replay, and a small `subscriber_buffer` really overflows, on
every run, with no timing involved.
"""

from __future__ import annotations

import json
import select
import signal
import socket as stdlib_socket
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from tests.conftest import (
    LiveServer,
    start_cli_server,
    start_server,
    test_settings,
    wait_status,
)
from tests.test_events import (
    agent_says,
    all_events,
    close_code,
    create,
    is_status,
    message,
    read_until,
    send,
)
from trio_openhands.testing.fake_llm import FakeLLM, text, tool_call

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from wsproto.events import Event as WsEvent
    from wsproto.extensions import Extension

# Far more than loopback TCP holds in flight for a 4 KiB receive buffer (16-32 KiB here):
# a replay that reaches this event blocks until the client reads again.
BIG_TEXT = "x" * 512 * 1024


class RawSocket:
    """A WebSocket client that reads only when asked to, over a small TCP receive buffer."""

    def __init__(self, stream: trio.SocketStream, connection: WSConnection) -> None:
        self._stream = stream
        self._ws = connection
        self._events: deque[WsEvent] = deque()
        self._text: list[str] = []
        self.close_code: int | None = None
        self.extensions: list[Extension] = []  # what the server accepted of those offered

    @staticmethod
    async def _connect(
        server: LiveServer,
        path: str,
        headers: list[tuple[str, str]],
        extensions: Sequence[Extension] = (),
    ) -> tuple[trio.SocketStream, WSConnection]:
        parts = urlsplit(server.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = trio.socket.socket()
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
        await sock.connect((host, port))
        stream = trio.SocketStream(sock)
        connection = WSConnection(ConnectionType.CLIENT)
        encoded = [(name.encode(), value.encode()) for name, value in headers]
        request = Request(
            host=f"{host}:{port}", target=path, extra_headers=encoded, extensions=[*extensions]
        )
        await stream.send_all(connection.send(request))
        return stream, connection

    @classmethod
    async def handshake_status(
        cls, server: LiveServer, path: str, headers: list[tuple[str, str]] | None = None
    ) -> int:
        """101 if the server accepts the socket, else the HTTP status it rejected it with."""
        return (await cls._handshake(server, path, headers))[0]

    @classmethod
    async def refusal(
        cls, server: LiveServer, path: str, headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, Any]:
        """The HTTP status and JSON body a socket is refused with before it is accepted."""
        status, body = await cls._handshake(server, path, headers)
        assert status != 101, "accepted"
        return status, body

    @classmethod
    async def _handshake(
        cls, server: LiveServer, path: str, headers: list[tuple[str, str]] | None
    ) -> tuple[int, Any]:
        """(101, None) if accepted, else the refusal's status and JSON body (None if none)."""
        stream, connection = await cls._connect(server, path, headers or [])
        status, body = 0, b""
        try:
            with trio.fail_after(30):
                while True:
                    data = await stream.receive_some(65536)
                    assert data, "the server hung up during the handshake"
                    connection.receive_data(data)
                    for event in connection.events():
                        if isinstance(event, AcceptConnection):
                            return 101, None
                        if isinstance(event, RejectConnection):
                            status = event.status_code
                            if not event.has_body:
                                return status, None
                        elif isinstance(event, RejectData):
                            body += event.data
                            if event.body_finished:
                                return status, json.loads(body)
        finally:
            await stream.aclose()

    @classmethod
    async def open(
        cls,
        server: LiveServer,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        extensions: Sequence[Extension] = (),
    ) -> RawSocket:
        """Connect and wait for the handshake's answer (then the subscription exists)."""
        stream, connection = await cls._connect(server, path, headers or [], extensions)
        raw = cls(stream, connection)
        event = await raw._next_event()
        assert isinstance(event, AcceptConnection), event
        raw.extensions = event.extensions
        return raw

    async def _next_event(self) -> WsEvent | None:
        with trio.fail_after(30):
            while not self._events:
                data = await self._stream.receive_some(65536)
                if not data:
                    return None
                self._ws.receive_data(data)
                self._events.extend(self._ws.events())
            return self._events.popleft()

    async def next_frame(self) -> dict[str, Any] | None:
        """The next text frame, parsed; None once the server has closed the socket."""
        while True:
            event = await self._next_event()
            if event is None:
                return None
            if isinstance(event, Ping):
                await self._stream.send_all(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                await self._stream.send_all(self._ws.send(event.response()))
                return None
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    frame = json.loads("".join(self._text))
                    self._text.clear()
                    return frame

    async def frames_until(self, predicate: Any) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        while True:
            frame = await self.next_frame()
            assert frame is not None, f"closed with {self.close_code} before the expected frame"
            frames.append(frame)
            if predicate(frame):
                return frames

    def has_data(self) -> bool:
        """Whether a frame is here to read at this instant, without waiting for one."""
        ready, _, _ = select.select([self._stream.socket.fileno()], [], [], 0)
        return bool(self._events) or bool(ready)

    async def aclose(self) -> None:
        await self._stream.aclose()


def logged(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames that are log events (state updates too), not error frames."""
    return [f for f in frames if "kind" in f]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """The kinds of the events, state updates left out."""
    return [e["kind"] for e in events if e["kind"] != "ConversationStateUpdateEvent"]


def socket_path(conversation_id: str, query: str = "") -> str:
    return f"/conversations/{conversation_id}/events/socket" + (f"?{query}" if query else "")


async def test_live_stream_of_a_whole_run(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("live", [tool_call("think", {"thought": "live"}), text("streamed")])
    conversation_id = await create(server, fake_llm)
    frames: list[dict[str, Any]] = []
    async with open_websocket_url(server.ws_url(socket_path(conversation_id))) as socket:
        await send(server, conversation_id, f"stream this {tag}")
        await read_until(socket, lambda f: is_status(f, "finished"), frames)
    events = await all_events(server, conversation_id)
    # Every logged event, once, in log order, as the same JSON REST serves; the finished
    # status came after the last of them.
    assert logged(frames) == events
    assert kinds(events) == [
        "SystemPromptEvent",
        "MessageEvent",
        "ActionEvent",
        "ObservationEvent",
        "MessageEvent",
    ]
    # One status when the run starts, one when it has ended, both logged.
    statuses = [f["value"] for f in frames if is_status(f, "running", "finished")]
    assert statuses == ["running", "finished"]


async def test_replay_meets_live_without_gap_or_duplicate(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """`resend_all` and `after_event_id` subscribers are held mid-replay (they stop
    reading inside a big history) while a whole run appends; each then receives the log
    exactly: no gap, no duplicate, in sequence order."""
    conversation_id = await create(server, fake_llm)
    await send(server, conversation_id, "small before", run=False)
    await send(server, conversation_id, BIG_TEXT, run=False)
    await send(server, conversation_id, "small after", run=False)
    history = await all_events(server, conversation_id)
    assert kinds(history) == ["SystemPromptEvent", *["MessageEvent"] * 3]

    resend_all = await RawSocket.open(server, socket_path(conversation_id, "resend_all=true"))
    after_first = await RawSocket.open(
        server, socket_path(conversation_id, f"after_event_id={history[0]['id']}")
    )
    up_to_date = await RawSocket.open(
        server, socket_path(conversation_id, f"after_event_id={history[-1]['id']}")
    )
    try:
        # Each takes one frame, then stops reading: the server is stuck in their replays.
        first_all = await resend_all.next_frame()
        first_after = await after_first.next_frame()
        assert first_all is not None
        assert first_all["id"] == history[0]["id"]
        assert first_after is not None
        assert first_after["id"] == history[1]["id"]

        tag = fake_llm.script(
            "replay",
            [
                tool_call("think", {"thought": "one"}),
                tool_call("think", {"thought": "two"}),
                text("replay done"),
            ],
        )
        await send(server, conversation_id, f"run now {tag}")
        await wait_status(server, conversation_id, "finished")
        events = await all_events(server, conversation_id)
        # message (and its last_user_message_id update), 2 x (action, its LLM call's stats,
        # observation), reply and its stats; the run's status as it starts and ends
        assert len(events) == len(history) + 12

        def done(frame: dict[str, Any]) -> bool:
            return is_status(frame, "finished")

        rest_all = await resend_all.frames_until(done)
        rest_after = await after_first.frames_until(done)
        rest_up_to_date = await up_to_date.frames_until(done)
        assert logged([first_all, *rest_all]) == events
        assert logged([first_after, *rest_after]) == events[1:]
        assert logged(rest_up_to_date) == events[len(history) :]
    finally:
        for raw in (resend_all, after_first, up_to_date):
            await raw.aclose()


async def test_a_subscriber_that_stops_reading_is_closed_with_1013(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    settings = test_settings(tmp_path, subscriber_buffer=8)
    live = await start_server(nursery, settings)
    try:
        conversation_id = await create(live, fake_llm)
        await send(live, conversation_id, BIG_TEXT, run=False)
        history = await all_events(live, conversation_id)
        stalled = await RawSocket.open(live, socket_path(conversation_id, "resend_all=true"))
        try:
            steps = 6
            tag = fake_llm.script(
                "stall",
                [*(tool_call("think", {"thought": f"t{i}"}) for i in range(steps)), text("bye")],
            )
            healthy_frames: list[dict[str, Any]] = []
            url = live.ws_url(socket_path(conversation_id))
            async with open_websocket_url(url) as healthy:
                await send(live, conversation_id, f"busy {tag}")
                await read_until(healthy, lambda f: is_status(f, "finished"), healthy_frames)
            # The run finished and the healthy subscriber got every event, while the
            # stalled one has not read a byte since its handshake.
            events = await all_events(live, conversation_id)
            assert len(events) - len(history) > settings.subscriber_buffer
            assert logged(healthy_frames) == events[len(history) :]
            await wait_status(live, conversation_id, "finished")

            # Reading again, it finds the frames that were in flight, then a 1013 close.
            received: list[dict[str, Any]] = []
            while (frame := await stalled.next_frame()) is not None:
                received.append(frame)
            assert stalled.close_code == 1013
            got = logged(received)
            assert 0 < len(got) < len(events)
            assert got == events[: len(got)]  # a prefix: nothing skipped before the cut
        finally:
            await stalled.aclose()

        # It resumes from the last event it saw and misses nothing.
        resume = socket_path(conversation_id, f"after_event_id={got[-1]['id']}")
        async with open_websocket_url(live.ws_url(resume)) as again:
            await send(live, conversation_id, "sentinel", run=False)
            resumed: list[dict[str, Any]] = []
            sentinel = await read_until(
                again,
                lambda f: (
                    f.get("kind") == "MessageEvent"
                    and f["source"] == "user"
                    and "sentinel" in json.dumps(f)
                ),
                resumed,
            )
            # The SDK's update of `last_user_message_id` follows the message.
            await read_until(again, lambda f: f.get("value") == sentinel["id"], resumed)
        everything = await all_events(live, conversation_id)
        assert got + logged(resumed) == everything
    finally:
        await live.client.aclose()
        live.stop.set()


async def test_delete_closes_the_socket_with_4004(server: LiveServer, fake_llm: FakeLLM) -> None:
    conversation_id = await create(server, fake_llm)
    async with open_websocket_url(server.ws_url(socket_path(conversation_id))) as socket:
        await send(server, conversation_id, "hello", run=False)
        first = json.loads(await socket.get_message())
        assert first["kind"] in ("SystemPromptEvent", "MessageEvent")
        deleted = await server.client.delete(f"/conversations/{conversation_id}")
        assert deleted.status_code == 200
        assert await close_code(socket) == 4004
    assert await RawSocket.handshake_status(server, socket_path(conversation_id)) == 404


async def test_socket_auth_and_rejections_before_accept(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    key = "sekrit-key"
    live = await start_server(nursery, test_settings(tmp_path, session_api_keys=(key,)))
    live.client.headers["X-Session-API-Key"] = key
    try:
        conversation_id = await create(live, fake_llm)
        path = socket_path(conversation_id)
        status = RawSocket.handshake_status
        assert await status(live, path) == 403
        assert await status(live, path, [("X-Session-API-Key", "wrong")]) == 403
        assert await status(live, path + "?session_api_key=wrong") == 403
        assert await status(live, path, [("X-Session-API-Key", key)]) == 101
        assert await status(live, path + f"?session_api_key={key}") == 101
        good = [("X-Session-API-Key", key)]
        missing = socket_path("00000000-0000-0000-0000-000000000000")
        assert await status(live, missing, good) == 404
        assert await status(live, socket_path("not-a-uuid"), good) == 404
        assert await status(live, path + "?after_event_id=nope", good) == 400
        # Each refusal says what was wrong, in JSON.
        refusal = RawSocket.refusal
        assert await refusal(live, missing, good) == (
            404,
            {"detail": "Conversation not found: 00000000-0000-0000-0000-000000000000"},
        )
        assert await refusal(live, socket_path("not-a-uuid"), good) == (
            404,
            {"detail": "Conversation not found: not-a-uuid"},
        )
        assert await refusal(live, path + "?after_event_id=nope", good) == (
            400,
            {"detail": "after_event_id is not an event of this conversation: nope"},
        )
        assert await refusal(live, missing) == (
            403,
            {"detail": "Invalid or missing session API key"},
        )
        # A bad key is refused even for a conversation that does not exist.
        assert await status(live, missing) == 403
    finally:
        await live.client.aclose()
        live.stop.set()


async def test_inbound_frames(server: LiveServer, fake_llm: FakeLLM) -> None:
    """A message frame is handled like POST events with run=true; an invalid frame gets an
    error frame back and the socket stays open."""
    conversation_id = await create(server, fake_llm)
    tag = fake_llm.script("inbound", [text("heard you")])
    async with open_websocket_url(server.ws_url(socket_path(conversation_id))) as socket:
        for bad, field in (
            ("not json", None),
            ('{"foo": 1}', "content"),
            ('{"role": "user", "content": []}', "content"),
            ('{"role": "assistant", "content": [{"type": "text", "text": "x"}]}', "role"),
            ("[1, 2]", None),
        ):
            await socket.send_message(bad)
            error = json.loads(await socket.get_message())
            assert error["type"] == "error"
            assert error["code"] == 422
            if field is not None:
                assert field in [str(part) for item in error["detail"] for part in item["loc"]]
        good = message(f"over the socket {tag}")
        del good["run"]  # a socket message always runs
        await socket.send_message(json.dumps(good))
        frames: list[dict[str, Any]] = []
        await read_until(socket, agent_says("heard you"), frames)
    events = await all_events(server, conversation_id)
    user = [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "user"]
    assert len(user) == 1
    assert "over the socket" in json.dumps(user[0])
    await wait_status(server, conversation_id, "finished")


async def test_a_client_that_stops_reading_cannot_keep_the_server_running(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """A replay blocked on a client that never reads holds a socket write Hypercorn will
    not cancel; after SIGTERM the process still ends, its conversations saved."""
    server = await start_cli_server(tmp_path, wait_for="/ready")
    process = server.process
    live = LiveServer.of_process(server.port, test_settings(tmp_path))
    try:
        conversation_id = await create(live, fake_llm)
        await send(live, conversation_id, BIG_TEXT, run=False)
        stuck = await RawSocket.open(live, socket_path(conversation_id, "resend_all=true"))
        started = trio.current_time()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await process.wait()
        assert code == 0, "exited after saving every conversation"
        assert trio.current_time() - started < 5
        await stuck.aclose()
    finally:
        await live.client.aclose()
        if process.returncode is None:
            process.kill()
            await process.wait()
    meta = json.loads(
        (tmp_path / "conversations" / conversation_id.replace("-", "") / "meta.json").read_text()
    )
    assert meta["status"] == "idle"
