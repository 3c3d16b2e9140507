"""Event benchmark: socket delivery rate to 1, 10 and 50 subscribers; search latency on a
conversation of 10,000 events; peak RSS with one stalled subscriber during a 5,000-event run.

Run: `uv run python bench/events.py` (about a minute; prints figures). Figures move by
+-30 % from run to run on a busy 2-core machine; compare within one run.

How the figures are made:
- The server is the real app on Hypercorn on a loopback port, in this process. Subscribers
  are trio-websocket clients in a separate process (`--clients` mode of this script), as real
  clients would be, so the server's Trio thread does not also parse their frames.
- Events enter where the SDK hands them to the server: `Conversation.on_sdk_event`, called
  from a worker thread as the SDK's callbacks are. Agent runs cannot make events fast enough
  to measure the fan-out (an agent step makes an action and an observation for 13 ms of SDK
  CPU when the history is empty, ~145 ms at 580 events: shared/notes/sdk.md; and the SDK's
  own emission path, which writes an event file and base_state.json per event, tops out at
  ~300-600 events/s here: measured in the RSS section), so the delivery and search figures
  start at that hand-off:
  the SDK serializes the event there, the server logs it once and fans it out, clients parse
  every frame. The events are real SDK events (agent and user messages of ~0.7 KB, pauses and
  agent errors).
- Delivery: each subscriber counts frames until a final marker event; the rate is events
  x subscribers / (time the last subscriber got the marker - time the first event was
  emitted). The producer emits as fast as it can (a burst far beyond any agent), so the
  subscriber buffer is raised to hold the whole burst here; with the default (1,024) a
  subscriber more than that many frames behind is closed with 1013 by design.
- Search: 10,000 events made as above, then timed over httpx: first page (100), a filtered
  page (user messages containing a word, 1 % of events: one page scans the whole log), a deep
  page (page_id at event 9,000), newest first; median and p95 of 50 requests each.
- RSS: three 5,000-event runs through the SDK's own emission path (events persisted by the
  SDK, exactly as during a run), each on a fresh conversation, with the default buffer:
  no subscriber; one healthy subscriber; a stalled subscriber (completes the handshake with a
  4 KiB receive buffer and never reads) plus a healthy one. Peak RSS is the kernel's
  high-water mark (VmHWM), reset before each run; "before" grows from run to run because
  every conversation stays loaded with its events. The healthy subscriber's frame count
  includes the SDK's state-change frames, which are not log events.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket as stdlib_socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation
    from trio_openhands.web.app import OpenHandsApp

END_MARKER = "bench-end-of-burst"


# -- the subscriber process -------------------------------------------------------------


async def run_clients(url: str, count: int) -> None:
    """Open `count` sockets, say "ready", read each until the end marker; report on stdout."""
    from trio_websocket import open_websocket_url

    ready = trio.Semaphore(0)
    frames = [0] * count
    finished_at = [0.0] * count

    async def client(index: int) -> None:
        async with open_websocket_url(url, message_queue_size=1024) as socket:
            ready.release()
            while True:
                message = await socket.get_message()
                frames[index] += 1
                if END_MARKER in str(message):
                    finished_at[index] = time.time()
                    return

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(client, index)
        for _ in range(count):
            await ready.acquire()
        print("ready", flush=True)
    print(json.dumps({"frames": frames, "last": max(finished_at), "first": min(finished_at)}))


# -- helpers ----------------------------------------------------------------------------


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def make_events(count: int, end: bool = True, needle_every: int = 0) -> list[Any]:
    """A realistic mix of SDK events; the last one carries END_MARKER."""
    from openhands.sdk import Message, TextContent
    from openhands.sdk.event import AgentErrorEvent, MessageEvent, PauseEvent

    filler = "the agent considers the repository layout and the failing test " * 5
    events: list[Any] = []
    for index in range(count):
        if needle_every and index % needle_every == 0:
            text_ = f"user note {index}: please look at the haystack needle {filler}"
            events.append(
                MessageEvent(
                    source="user",
                    llm_message=Message(role="user", content=[TextContent(text=text_)]),
                )
            )
        elif index % 50 == 25:
            events.append(PauseEvent())
        elif index % 50 == 40:
            events.append(
                AgentErrorEvent(
                    error=f"tool failed {index}", tool_name="think", tool_call_id=f"c{index}"
                )
            )
        else:
            source = "user" if index % 10 == 0 else "agent"
            role = "user" if source == "user" else "assistant"
            events.append(
                MessageEvent(
                    source=source,
                    llm_message=Message(
                        role=role, content=[TextContent(text=f"{index}: {filler}")]
                    ),
                )
            )
    if end:
        events[-1] = MessageEvent(
            source="agent",
            llm_message=Message(role="assistant", content=[TextContent(text=END_MARKER)]),
        )
    return events


async def emit(conversation: Conversation, events: list[Any]) -> float:
    """Hand events over from a worker thread, as the SDK's callbacks do; returns start time."""
    started = time.time()

    def produce() -> None:
        for event in events:
            conversation.on_sdk_event(event)

    await trio.to_thread.run_sync(produce)
    return started


async def emit_through_sdk(conversation: Conversation, events: list[Any]) -> float:
    """The SDK's own emission path: stamped, persisted (event file, base_state.json), then
    the callbacks, under the state lock; returns the seconds it took."""
    sdk = conversation.sdk
    assert sdk is not None
    on_event = sdk._on_event  # pyright: ignore[reportPrivateUsage]

    def produce() -> float:
        started = time.perf_counter()
        for event in events:
            with sdk.state:
                on_event(event)
        return time.perf_counter() - started

    return await trio.to_thread.run_sync(produce)


class StalledSocket:
    """Completes the WebSocket handshake over a 4 KiB receive buffer, then never reads."""

    def __init__(self, sock: trio.socket.SocketType, connection: Any) -> None:
        self.sock = sock
        self.connection = connection

    @classmethod
    async def open(cls, url: str, path: str) -> StalledSocket:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = trio.socket.socket()
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
        await sock.connect((host, port))
        connection = WSConnection(ConnectionType.CLIENT)
        await sock.send(connection.send(Request(host=f"{host}:{port}", target=path)))
        while True:
            connection.receive_data(await sock.recv(4096))
            if any(isinstance(event, AcceptConnection) for event in connection.events()):
                return cls(sock, connection)

    async def drain_close_code(self) -> int | None:
        """Read everything now; the close code the server sent, if any."""
        from wsproto.events import CloseConnection

        with trio.move_on_after(10):
            while chunk := await self.sock.recv(1 << 20):
                self.connection.receive_data(chunk)
                for event in self.connection.events():
                    if isinstance(event, CloseConnection):
                        return event.code
        return None

    def close(self) -> None:
        self.sock.close()


# -- the benchmark ----------------------------------------------------------------------


async def start(settings: Any, nursery: trio.Nursery) -> tuple[OpenHandsApp, str, trio.Event]:
    from hypercorn.trio import serve

    from trio_openhands.server import hypercorn_config
    from trio_openhands.web.app import create_app

    app = create_app(settings)
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()
        await app.begin_shutdown()

    config = hypercorn_config(settings)
    config.loglevel = "WARNING"
    binds: list[str] = await nursery.start(
        partial(serve, app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
    )
    return app, binds[0], stop


async def new_conversation(app: OpenHandsApp, client: Any, base_url: str) -> Conversation:
    llm = {"model": "openai/fake", "base_url": base_url, "api_key": "bench"}
    created = (await client.post("/conversations", json={"llm": llm})).json()
    return app.supervisor.loaded[uuid.UUID(created["id"])]


async def delivery(
    app: OpenHandsApp, client: Any, url: str, base_url: str, subscribers: int, count: int
) -> None:
    conversation = await new_conversation(app, client, base_url)
    events = make_events(count)
    socket_url = url.replace("http://", "ws://") + f"/conversations/{conversation.id}/events/socket"
    clients = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--clients", socket_url, str(subscribers)],
        stdout=subprocess.PIPE,
    )
    assert clients.stdout is not None
    output = b""
    while b"ready\n" not in output:
        output += await clients.stdout.receive_some(4096)
    cpu_before = time.process_time()
    started = await emit(conversation, events)
    while chunk := await clients.stdout.receive_some(65536):
        output += chunk
    cpu = time.process_time() - cpu_before  # this process: the server and the emitter
    await clients.wait()
    report = json.loads(output.decode().split("ready\n", 1)[1])
    elapsed = report["last"] - started
    assert all(frames >= count for frames in report["frames"]), report["frames"]
    total = count * subscribers
    print(
        f"  {subscribers:>2} subscriber(s), {count:,} events: {total / elapsed:>9,.0f} deliveries/s"
        f" ({count / elapsed:,.0f} events/s each; last frame {elapsed:.2f} s after the first emit)"
        f"; server CPU {cpu / total * 1e6:,.1f} µs per delivery"
    )


async def search(app: OpenHandsApp, client: Any, base_url: str) -> None:
    conversation = await new_conversation(app, client, base_url)
    events = make_events(10_000, end=False, needle_every=100)
    await emit(conversation, events)
    # The worker thread's return is queued after its hand-offs: all are logged by now.
    assert len(conversation.log) == 10_000
    base = f"/conversations/{conversation.id}/events/search"
    deep_id = conversation.log.events[9_000].id
    cases = {
        "first page (100)": {},
        "filtered page (user messages with a word, 1 %)": {
            "kind": "MessageEvent",
            "source": "user",
            "body": "NEEDLE",
        },
        "deep page (page_id at event 9,000)": {"page_id": deep_id},
        "first page newest first": {"sort_order": "TIMESTAMP_DESC"},
    }
    print(f"search on {len(conversation.log):,} events (httpx over loopback, 50 requests each):")
    for name, params in cases.items():
        times: list[float] = []
        items, size = 0, 0
        for _ in range(50):
            began = time.perf_counter()
            response = await client.get(base, params={"limit": 100, **params})
            times.append(time.perf_counter() - began)
            assert response.status_code == 200
            items, size = len(response.json()["items"]), len(response.content)
        times.sort()
        print(
            f"  {name}: median {ms(statistics.median(times))}, p95 {ms(times[47])}"
            f" ({items} items, {size / 1024:.0f} KB)"
        )
    times = []
    for _ in range(50):
        began = time.perf_counter()
        await client.get("/alive")
        times.append(time.perf_counter() - began)
    print(f"  (for scale: GET /alive, median {ms(statistics.median(times))})")


async def memory(app: OpenHandsApp, client: Any, url: str, base_url: str) -> None:
    count = 5_000
    print(f"RSS during a {count:,}-event run through the SDK's emission path (events persisted):")
    for stalled_too, healthy_too in ((False, False), (False, True), (True, True)):
        conversation = await new_conversation(app, client, base_url)
        events = make_events(count)
        path = f"/conversations/{conversation.id}/events/socket"
        stalled = await StalledSocket.open(url, path) if stalled_too else None
        healthy = None
        output = b""
        if healthy_too:
            ws_url = url.replace("http://", "ws://") + path
            healthy = await trio.lowlevel.open_process(
                [sys.executable, __file__, "--clients", ws_url, "1"], stdout=subprocess.PIPE
            )
            assert healthy.stdout is not None
            while b"ready\n" not in output:
                output += await healthy.stdout.receive_some(4096)
        before = rss_mb()
        exact = reset_peak()
        seconds = await emit_through_sdk(conversation, events)
        assert len(conversation.log) >= count
        peak = peak_mb() if exact else rss_mb()
        label = {
            (False, False): "no subscriber",
            (False, True): "one healthy subscriber",
            (True, True): "one stalled + one healthy subscriber",
        }[stalled_too, healthy_too]
        line = (
            f"  {label:<37}: RSS {before:.0f} MB before, peak {peak:.0f} MB"
            f" (+{peak - before:.1f} MB); the SDK emitted {count / seconds:,.0f} events/s"
        )
        if healthy is not None:
            assert healthy.stdout is not None
            while chunk := await healthy.stdout.receive_some(65536):
                output += chunk
            await healthy.wait()
            report = json.loads(output.decode().split("ready\n", 1)[1])
            line += f"\n    the healthy subscriber got all {report['frames'][0]:,} frames"
        if stalled is not None:
            code = await stalled.drain_close_code()
            stalled.close()
            line += (
                f"; the stalled one was closed with {code} once"
                f" {app.settings.subscriber_buffer:,} frames behind"
            )
        print(line)


async def main() -> None:
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the SDK's own logger
    logging.getLogger("trio_openhands").setLevel(logging.WARNING)
    import httpx

    from trio_openhands.core.sdk_loader import quiet_sdk_environment
    from trio_openhands.settings import Settings
    from trio_openhands.testing.fake_llm import FakeLLM

    quiet_sdk_environment()
    folder = Path(tempfile.mkdtemp(prefix="bench-events-"))
    base = Settings(
        host="127.0.0.1",
        port=0,
        conversations_dir=folder / "conversations",
        workspace_dir=folder / "project",
        secret_key="bench-secret",
        graceful_timeout=0.5,
        log_level="WARNING",
    )
    try:
        async with trio.open_nursery() as outer:
            fake = FakeLLM()
            base_url = await outer.start(fake.serve)
            began = time.perf_counter()
            async with trio.open_nursery() as nursery:
                # Delivery and search: a buffer that holds the whole burst (see the docstring).
                app, url, stop = await start(base.with_changes(subscriber_buffer=20_000), nursery)
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    await app.sdk_loader.wait_ready()
                    print(f"(server ready, SDK imported, in {time.perf_counter() - began:.1f} s)")
                    print(
                        "socket delivery, emitted at the SDK hand-off, clients in another process:"
                    )
                    await delivery(app, client, url, base_url, 1, 5_000)
                    await delivery(app, client, url, base_url, 10, 5_000)
                    await delivery(app, client, url, base_url, 50, 2_000)
                    await search(app, client, base_url)
                stop.set()
            async with trio.open_nursery() as nursery:
                settings = base.with_changes(conversations_dir=folder / "memory")
                app, url, stop = await start(settings, nursery)
                print(f"(subscriber_buffer {settings.subscriber_buffer}, the default)")
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    await memory(app, client, url, base_url)
                stop.set()
            outer.cancel_scope.cancel()  # the fake LLM
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--clients":
        trio.run(run_clients, sys.argv[2], int(sys.argv[3]))
    else:
        trio.run(main)
