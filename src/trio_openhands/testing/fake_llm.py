"""A scripted OpenAI-compatible LLM server, for tests and demos that must not call a real model.

Replies are scripted by name and picked per request from a ``[[fake:NAME]]`` marker in the
user message and the number of assistant turns since (see ``_script``), so one stateless
server can serve many concurrent conversations. It records every request, including whether
the client hung up before its (delayed) reply was sent, so tests can check that cancelling
an agent really aborts its LLM call.

In-process (Trio)::

    llm = FakeLLM()
    hello = llm.script("hello", [tool_call("terminal", {"command": "echo hi"}), text("done")])
    base_url = await nursery.start(llm.serve)  # "http://127.0.0.1:PORT/v1"
    # send f"{hello} say hi" to an agent whose LLM uses base_url
    request = await llm.wait_for_request(script="hello", step=1)

From another process: ``python -m trio_openhands.testing.fake_llm --port 9000`` prints the
base URL; ``PUT /_scripts/{name}`` takes a JSON list of replies, ``GET /_requests`` returns the
log and ``DELETE /_requests`` clears it.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import hypercorn.trio
import trio
from hypercorn.config import Config

from trio_openhands.testing._log import Outcome, RecordedRequest, RequestLog
from trio_openhands.testing._openai import (
    JSONDict,
    completion_body,
    dicts,
    error_body,
    estimate_tokens,
    sse_event,
    stream_chunks,
    tool_names,
)
from trio_openhands.testing._script import (
    ErrorReply,
    Reply,
    TextReply,
    ToolCall,
    ToolCallsReply,
    choose,
    finish,
    http_error,
    marker,
    script_from_json,
    select,
    text,
    tool_call,
    tool_calls,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

__all__ = [
    "DEFAULT_REPLY",
    "END_REPLY",
    "ErrorReply",
    "FakeLLM",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "TextReply",
    "ToolCall",
    "ToolCallsReply",
    "finish",
    "http_error",
    "main",
    "marker",
    "text",
    "tool_call",
    "tool_calls",
]

DEFAULT_REPLY = text("OK")
"""Answer to requests without a marker, and to marked requests that offer no tools."""
END_REPLY = text("done")
"""Answer past the end of a script: plain text, so an agent finishes instead of looping."""
GRACEFUL_TIMEOUT = 0.5
KEEP_ALIVE_TIMEOUT = 120.0  # seconds an idle client connection is kept
"""Seconds held replies get at shutdown; a test double has nothing worth draining."""


async def _read_body(receive: ASGIReceiveCallable) -> bytes | None:
    """Read the whole request body; None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] == "http.request":
            chunks.append(message["body"])
            if not message["more_body"]:
                return b"".join(chunks)


def _json_response(status: int, payload: object) -> list[ASGISendEvent]:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


async def _send_json(send: ASGISendCallable, status: int, payload: object) -> None:
    for message in _json_response(status, payload):
        await send(message)


async def _client_left_during(delay: float, receive: ASGIReceiveCallable) -> bool:
    """Sleep ``delay`` seconds while watching for ``http.disconnect``; True if it came."""
    left = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await trio.sleep(delay)
        nursery.cancel_scope.cancel()
    return left


def _bad_request(message: str) -> JSONDict:
    return error_body(ErrorReply(400, message))


class FakeLLM:
    """A scripted chat-completions server; the instance itself is the ASGI app.

    The wait helpers (``wait_for_request``, ``RecordedRequest.wait_done``) work in the Trio
    run that serves the app; ``serve_in_thread`` is for synchronous callers.
    """

    def __init__(self, *, default: Reply = DEFAULT_REPLY, end: Reply = END_REPLY) -> None:
        self.default = default
        self.end = end
        self._scripts: dict[str, tuple[Reply, ...]] = {}
        self._log = RequestLog()
        self.base_url: str | None = None
        """Set by ``serve`` once listening, e.g. ``http://127.0.0.1:PORT/v1``."""

    def script(self, name: str, replies: Iterable[Reply]) -> str:
        """Register (or replace) script ``name``; return the marker that selects it."""
        tag = marker(name)
        self._scripts[name] = tuple(replies)
        return tag

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the request log, oldest first."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        """Forget the logged requests (indexes keep counting up)."""
        self._log.clear()

    async def wait_for_request(
        self,
        script: str | None = None,
        step: int | None = None,
        *,
        predicate: Callable[[RecordedRequest], bool] | None = None,
    ) -> RecordedRequest:
        """Wait until a logged request matches; return the oldest match.

        Returns as soon as the request arrives, before its (delayed) reply is sent, so a test
        can act exactly while the LLM call is in flight; ``await request.wait_done()`` then
        tells whether it was answered or aborted.
        """
        return await self._log.wait_for(script, step, predicate=predicate)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled or ``shutdown_trigger`` returns; report the base URL.

        Use as ``base_url = await nursery.start(llm.serve)``; port 0 picks a free port.
        """
        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.loglevel = "WARNING"
        config.graceful_timeout = GRACEFUL_TIMEOUT
        # Longer than a client's pool keeps an idle connection (aiohttp's: 15 s), so a call
        # never reuses one this side is closing (Hypercorn's 5 s made such a call fail with
        # "Connection error" about 5 s after the previous one, under load).
        config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
        async with trio.open_nursery() as nursery:
            # hypercorn's signature mentions WSGI apps with untyped dicts.
            serve = hypercorn.trio.serve  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            binds: list[str] = await nursery.start(
                partial(serve, self, config, shutdown_trigger=shutdown_trigger)
            )
            self.base_url = f"{binds[0]}/v1"
            task_status.started(self.base_url)

    @contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Generator[str]:
        """Serve from a Trio run in a background thread; yield the base URL.

        For synchronous code (scripts, SDK experiments); stops the server on exit.
        """
        handoff: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.CancelScope] | BaseException]
        handoff = queue.Queue()

        async def run() -> None:
            with trio.CancelScope() as cancel_scope:
                async with trio.open_nursery() as nursery:
                    url = await nursery.start(partial(self.serve, host, port))
                    handoff.put((url, trio.lowlevel.current_trio_token(), cancel_scope))

        def thread_main() -> None:
            try:
                trio.run(run)
            except BaseException as exc:  # hand start-up failures to the caller
                handoff.put(exc)

        thread = threading.Thread(target=thread_main, name="fake-llm", daemon=True)
        thread.start()
        started = handoff.get()
        if isinstance(started, BaseException):
            raise started
        url, token, cancel_scope = started
        try:
            yield url
        finally:
            trio.from_thread.run_sync(cancel_scope.cancel, trio_token=token)
            thread.join()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # hypercorn refuses the websocket for us
        method, path = scope["method"], scope["path"].rstrip("/")
        routes: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): partial(self._chat_completions, receive, send),
            ("POST", "/chat/completions"): partial(self._chat_completions, receive, send),
            ("GET", "/v1/models"): partial(self._models, send),
            ("GET", "/models"): partial(self._models, send),
            ("GET", "/_requests"): partial(self._get_requests, send),
            ("DELETE", "/_requests"): partial(self._delete_requests, send),
        }
        if path.startswith("/_scripts/") and method == "PUT":
            await self._put_script(path.removeprefix("/_scripts/"), receive, send)
        elif (method, path) in routes:
            await routes[method, path]()
        elif any(known == path for _, known in routes) or path.startswith("/_scripts/"):
            await _send_json(send, 405, error_body(ErrorReply(405, f"{method} not allowed")))
        else:
            await _send_json(send, 404, error_body(ErrorReply(404, f"no route {path}")))

    async def _models(self, send: ASGISendCallable) -> None:
        model = {"id": "fake", "object": "model", "created": 0, "owned_by": "trio-openhands"}
        await _send_json(send, 200, {"object": "list", "data": [model]})

    async def _get_requests(self, send: ASGISendCallable) -> None:
        await _send_json(send, 200, [record.to_json() for record in self._log.snapshot()])

    async def _delete_requests(self, send: ASGISendCallable) -> None:
        self.clear_requests()
        await _send_json(send, 200, {"cleared": True})

    async def _put_script(
        self, name: str, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return
        try:
            tag = self.script(name, script_from_json(json.loads(raw or b"null")))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            await _send_json(send, 400, _bad_request(str(exc)))
            return
        steps = len(self._scripts[name])
        await _send_json(send, 200, {"name": name, "marker": tag, "steps": steps})

    async def _chat_completions(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return
        try:
            body: object = json.loads(raw)
        except ValueError as exc:
            await _send_json(send, 400, _bad_request(f"invalid JSON body: {exc}"))
            return
        request = dicts([body])
        if not request or not isinstance(request[0].get("messages"), list):
            await _send_json(send, 400, _bad_request("body needs a 'messages' list"))
            return
        messages = dicts(request[0]["messages"])
        offered = tool_names(request[0].get("tools"))
        selection = select(messages, agent_step=bool(offered))
        reply = choose(selection, self._scripts, default=self.default, end=self.end)
        record = self._log.add(
            selection,
            model=str(request[0].get("model", "")),
            messages=messages,
            tools=offered,
            stream=request[0].get("stream") is True,
            reply=reply,
        )
        try:
            if reply.delay and await _client_left_during(reply.delay, receive):
                self._log.finish(record, "aborted")
                return
            response = self._response(record, request[0])
            # Answered from here on: a client may have read the reply before send() returns.
            self._log.finish(record, "answered")
            for message in response:
                await send(message)
        finally:
            if record.outcome == "pending":
                self._log.finish(record, "cancelled")

    def _response(self, record: RecordedRequest, request: JSONDict) -> list[ASGISendEvent]:
        """Build the whole HTTP response for the reply up front (streams included)."""
        reply = record.reply
        if isinstance(reply, ErrorReply):
            return _json_response(reply.status, error_body(reply))
        prompt_tokens = estimate_tokens(record.messages)
        if not record.stream:
            body = completion_body(reply, model=record.model, prompt_tokens=prompt_tokens)
            return _json_response(200, body)
        options = request.get("stream_options")
        include_usage = any(o.get("include_usage") is True for o in dicts([options]))
        chunks = stream_chunks(
            reply, model=record.model, prompt_tokens=prompt_tokens, include_usage=include_usage
        )
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        response: list[ASGISendEvent] = [
            {"type": "http.response.start", "status": 200, "headers": headers}
        ]
        for chunk in [*chunks, None]:
            event = sse_event(chunk)
            response.append({"type": "http.response.body", "body": event, "more_body": True})
        response.append({"type": "http.response.body", "body": b"", "more_body": False})
        return response


def _script_arg(value: str) -> tuple[str, list[Reply]]:
    """Parse a ``--script NAME=path.json`` argument into a named, validated script."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    try:
        marker(name)
        return name, script_from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"script {name!r} from {path}: {exc}") from exc


async def _serve_until_signal(llm: FakeLLM, host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def wait_for_signal() -> None:
            async for _ in signals:
                return

        async with trio.open_nursery() as nursery:
            serve = partial(llm.serve, host, port, shutdown_trigger=wait_for_signal)
            url = await nursery.start(serve)
            print(url, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM, printing its base URL on stdout first."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_openhands.testing.fake_llm",
        description="Scripted OpenAI-compatible LLM server for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--script",
        type=_script_arg,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="register the JSON list of replies in PATH as script NAME (repeatable)",
    )
    args = parser.parse_args(argv)
    llm = FakeLLM()
    scripts: list[tuple[str, list[Reply]]] = args.script
    for name, replies in scripts:
        llm.script(name, replies)
    trio.run(_serve_until_signal, llm, args.host, args.port)


if __name__ == "__main__":
    main()
