"""Tests for the scripted OpenAI-compatible LLM server, through the real litellm client.

litellm's async API is asyncio-only, so its sync API runs in a worker thread. Nothing here
sleeps to wait: tests wait on the server's own events (``wait_for_request``, ``wait_done``).
"""

from __future__ import annotations

import os

# Before litellm is imported: otherwise it starts a thread that fetches the cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

import json
import signal
import subprocess
import sys
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import litellm
import litellm.exceptions as litellm_errors
import pytest
import trio

from trio_openhands.testing._script import (
    Selection,
    reply_from_json,
    reply_to_json,
    select,
)
from trio_openhands.testing.fake_llm import (
    DEFAULT_REPLY,
    FakeLLM,
    ToolCall,
    finish,
    http_error,
    marker,
    text,
    tool_call,
    tool_calls,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.trio

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "terminal",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
]


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
async def base_url(llm: FakeLLM, nursery: trio.Nursery) -> str:
    return await nursery.start(llm.serve)


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: str = "ok") -> dict[str, Any]:
    return {"role": "assistant", "content": content}


# litellm's responses are loosely typed unions (stream or not): Any keeps the asserts readable.
async def complete(base_url: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    """Call litellm's sync client in a thread, without retries; returns its response."""

    def call() -> Any:
        response = litellm.completion(
            model="openai/fake",
            api_base=base_url,
            api_key="x",
            messages=messages,
            num_retries=0,
            max_retries=0,
            **kwargs,
        )
        # A stream is read lazily: consume it in the thread too.
        return list(response) if kwargs.get("stream") else response  # pyright: ignore[reportArgumentType]

    return await trio.to_thread.run_sync(call)


async def test_text_reply_through_litellm(llm: FakeLLM, base_url: str) -> None:
    hello = llm.script("hello", [text("Hi there!")])
    response = await complete(base_url, [user(f"{hello} greet me")], tools=TOOLS)
    choice = response.choices[0]
    assert choice.message.content == "Hi there!"
    assert choice.finish_reason == "stop"
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


async def test_tool_calls_parsed_by_litellm(llm: FakeLLM, base_url: str) -> None:
    reply = tool_calls(
        ToolCall("terminal", {"command": "echo hi"}),
        ToolCall("finish", {"message": "bye"}),
        text="running it",
    )
    name = llm.script("tools", [reply])
    response = await complete(base_url, [user(f"{name} go")], tools=TOOLS)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "running it"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["terminal", "finish"]
    assert json.loads(calls[0].function.arguments) == {"command": "echo hi"}
    assert json.loads(calls[1].function.arguments) == {"message": "bye"}
    assert len({c.id for c in calls}) == 2
    assert all(c.id.startswith("call_") for c in calls)


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (500, litellm_errors.InternalServerError),
        (429, litellm_errors.RateLimitError),
        (401, litellm_errors.AuthenticationError),
        (400, litellm_errors.BadRequestError),
        (404, litellm_errors.NotFoundError),
    ],
)
async def test_http_errors_surface_as_litellm_exceptions(
    llm: FakeLLM, base_url: str, status: int, exception: type[Exception]
) -> None:
    name = llm.script("err", [http_error(status, "boom")])
    with pytest.raises(exception, match="boom"):
        await complete(base_url, [user(f"{name} go")], tools=TOOLS)
    [request] = llm.requests  # no retries
    assert request.outcome == "answered"


async def test_streaming_text_and_tool_calls(llm: FakeLLM, base_url: str) -> None:
    name = llm.script(
        "stream", [text("Hello from a stream"), tool_call("terminal", {"command": "ls -la"})]
    )
    chunks = await complete(base_url, [user(f"{name} go")], tools=TOOLS, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from a stream"

    messages = [user(f"{name} go"), assistant("Hello from a stream")]
    chunks = await complete(
        base_url, messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    built: Any = litellm.stream_chunk_builder(chunks)  # pyright: ignore[reportUnknownMemberType]
    assert built is not None
    [call] = built.choices[0].message.tool_calls
    assert call.function.name == "terminal"
    assert json.loads(call.function.arguments) == {"command": "ls -la"}
    assert built.usage.completion_tokens > 0
    assert [r.stream for r in llm.requests] == [True, True]


async def test_raw_stream_ends_with_done(llm: FakeLLM, base_url: str) -> None:
    name = llm.script("raw", [text("a b")])
    body = {"model": "fake", "messages": [user(f"{name} go")], "tools": TOOLS, "stream": True}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base_url}/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    lines = [line for line in response.text.splitlines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    finish_reasons = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in lines[:-1]]
    assert finish_reasons[-1] == "stop"


async def test_concurrent_requests_pick_scripts_by_marker(llm: FakeLLM, base_url: str) -> None:
    slow = llm.script("slow", [text("slow reply", delay=60)])
    fast = llm.script("fast", [text("fast reply")])
    slow_body = {"model": "fake", "messages": [user(f"{slow} go")], "tools": TOOLS}
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        slow_scope = trio.CancelScope()

        async def slow_request() -> None:
            with slow_scope:
                await client.post(f"{base_url}/chat/completions", json=slow_body)

        nursery.start_soon(slow_request)
        with trio.fail_after(10):
            held = await llm.wait_for_request(script="slow", step=0)
        response = await complete(base_url, [user(f"{fast} go")], tools=TOOLS)
        assert response.choices[0].message.content == "fast reply"
        assert held.outcome == "pending"  # the slow one is still held: they overlapped
        assert held.reply == text("slow reply", delay=60)
        slow_scope.cancel()
        with trio.fail_after(10):
            await held.wait_done()
    assert [(r.script, r.outcome) for r in llm.requests] == [
        ("slow", "aborted"),
        ("fast", "answered"),
    ]


async def test_step_index_advances_with_assistant_messages(llm: FakeLLM, base_url: str) -> None:
    name = llm.script("steps", [tool_call("terminal", {"command": "pwd"}), text("second")])
    first = await complete(base_url, [user(f"{name} go")], tools=TOOLS)
    assert first.choices[0].message.tool_calls[0].function.name == "terminal"
    history = [user(f"{name} go"), assistant()]
    second = await complete(base_url, history, tools=TOOLS)
    assert second.choices[0].message.content == "second"
    past_end = await complete(base_url, [*history, assistant()], tools=TOOLS)
    assert past_end.choices[0].message.content == "done"
    # A new marked user message starts the script over.
    again = await complete(base_url, [*history, user(f"{name} again")], tools=TOOLS)
    assert again.choices[0].message.tool_calls
    assert [r.step for r in llm.requests] == [0, 1, 2, 0]


async def test_select_takes_last_marker_and_counts_assistants() -> None:
    merged = user(f"{marker('a')} first\n{marker('b')} second")
    tool_result = {"role": "tool", "content": "x"}
    messages = [{"role": "system", "content": "s"}, merged, assistant(), tool_result, assistant()]
    assert select(messages, agent_step=True) == Selection("b", 2)
    assert select([*messages, user("no marker")], agent_step=True) == Selection("b", 2)
    parts = {"role": "user", "content": [{"type": "text", "text": marker("c")}]}
    assert select([parts], agent_step=True) == Selection("c", 0)
    assert select([parts], agent_step=False) == Selection("c", None)
    assert select([user("plain")], agent_step=True) == Selection(None, None)


async def test_request_log_and_off_script_replies(llm: FakeLLM, base_url: str) -> None:
    name = llm.script("log", [text("scripted")])
    no_marker = await complete(base_url, [user("hello")], tools=TOOLS)
    assert no_marker.choices[0].message.content == DEFAULT_REPLY.text
    title = await complete(base_url, [user(f"{name} make a title")])  # no tools: not a step
    assert title.choices[0].message.content == DEFAULT_REPLY.text
    step = await complete(base_url, [user(f"{name} go")], tools=TOOLS)
    assert step.choices[0].message.content == "scripted"
    unknown = marker("no-such-script")
    with pytest.raises(litellm_errors.BadRequestError, match="no-such-script"):
        await complete(base_url, [user(f"{unknown} go")], tools=TOOLS)

    log = llm.requests
    assert [(r.script, r.step) for r in log] == [
        (None, None),
        ("log", None),
        ("log", 0),
        ("no-such-script", 0),
    ]
    assert [r.index for r in log] == [0, 1, 2, 3]
    assert [r.has_tools for r in log] == [True, False, True, True]
    assert log[2].tools == ["terminal"]
    assert log[2].model == "fake"
    assert log[2].messages[-1]["content"] == f"{name} go"
    assert not any(r.stream or r.aborted for r in log)
    llm.clear_requests()
    assert llm.requests == []


async def test_client_disconnect_during_delay_is_recorded_as_aborted(
    llm: FakeLLM, base_url: str
) -> None:
    name = llm.script("held", [text("too late", delay=60)])
    body = {"model": "fake", "messages": [user(f"{name} go")], "tools": TOOLS}
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        request_scope = trio.CancelScope()

        async def post() -> None:
            with request_scope:
                await client.post(f"{base_url}/chat/completions", json=body)

        nursery.start_soon(post)
        with trio.fail_after(10):
            held = await llm.wait_for_request(script="held", step=0)
            assert held.outcome == "pending"
            request_scope.cancel()  # closes the connection: the client gives up
            assert await held.wait_done() == "aborted"
    assert held.aborted
    assert llm.requests[0].to_json()["aborted"] is True


async def test_wait_done_reports_answered(llm: FakeLLM, base_url: str) -> None:
    name = llm.script("quick", [text("hi", delay=0.01)])
    await complete(base_url, [user(f"{name} go")], tools=TOOLS)
    with trio.fail_after(10):
        record = await llm.wait_for_request(predicate=lambda r: r.script == "quick")
        assert await record.wait_done() == "answered"


async def test_http_scripting_endpoints(llm: FakeLLM, base_url: str) -> None:
    root = base_url.removesuffix("/v1")
    replies = [
        {"tool_calls": [{"name": "terminal", "arguments": {"command": "echo hi"}}]},
        {"text": "hi", "delay": 0.01},
        {"error": 500, "message": "boom"},
    ]
    async with httpx.AsyncClient(base_url=root) as client:
        created = await client.put("/_scripts/remote", json=replies)
        assert created.json() == {"name": "remote", "marker": "[[fake:remote]]", "steps": 3}
        history = [user("[[fake:remote]] go"), assistant()]
        body = {"model": "fake", "messages": history, "tools": TOOLS}
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.json()["choices"][0]["message"]["content"] == "hi"
        body["messages"] = [*history, assistant()]
        error = await client.post("/v1/chat/completions", json=body)
        assert error.status_code == 500
        assert error.json()["error"]["message"] == "boom"

        log = (await client.get("/_requests")).json()
        assert [(r["script"], r["step"], r["outcome"]) for r in log] == [
            ("remote", 1, "answered"),
            ("remote", 2, "answered"),
        ]
        assert log[0]["reply"] == {"text": "hi", "delay": 0.01}
        assert (await client.delete("/_requests")).status_code == 200
        assert (await client.get("/_requests")).json() == []

        assert (await client.put("/_scripts/bad", json={"text": "x"})).status_code == 400
        assert (await client.put("/_scripts/bad", json=[{"nope": 1}])).status_code == 400
        assert (await client.put("/_scripts/bad name", json=[])).status_code == 400
        models = (await client.get("/v1/models")).json()
        assert models["data"][0]["id"] == "fake"
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/v1/chat/completions")).status_code == 405


async def test_reply_json_round_trip() -> None:
    replies = [
        text("hi", delay=0.5),
        tool_call("terminal", {"command": "ls"}, text="thinking"),
        tool_calls(ToolCall("a", {}, id="call_1"), ToolCall("b", {"x": [1]})),
        finish("bye"),
        http_error(429, "slow down"),
    ]
    for reply in replies:
        assert reply_from_json(json.loads(json.dumps(reply_to_json(reply)))) == reply
    bad_replies: list[dict[str, object]] = [
        {"text": 1},
        {"tool_calls": []},
        {"error": 200},
        {"text": "x", "delay": -1},
    ]
    for bad in bad_replies:
        with pytest.raises(ValueError, match=r"."):
            reply_from_json(bad)


async def test_cli_serves_scripts_and_exits_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "cli.json"
    script.write_text(json.dumps([{"text": "from the CLI"}]))
    command = [
        sys.executable,
        "-m",
        "trio_openhands.testing.fake_llm",
        "--port",
        "0",
        "--script",
        f"cli={script}",
    ]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        with trio.fail_after(20):
            output = b""
            while not output.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "fake LLM exited before printing its URL"
                output += chunk
        base_url = output.decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        response = await complete(base_url, [user("[[fake:cli]] go")], tools=TOOLS)
        assert response.choices[0].message.content == "from the CLI"
        async with httpx.AsyncClient() as client:
            log = (await client.get(base_url.removesuffix("/v1") + "/_requests")).json()
        assert [r["script"] for r in log] == ["cli"]

        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_rejects_a_bad_script_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{}]")
    command = [sys.executable, "-m", "trio_openhands.testing.fake_llm", "--script", f"x={bad}"]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 2
    assert b"script 'x'" in result.stderr


async def test_serve_in_thread_for_sync_callers() -> None:
    llm = FakeLLM()
    name = llm.script("sync", [text("from a thread")])
    body = {"model": "fake", "messages": [user(f"{name} go")], "tools": TOOLS}

    def sync_caller() -> tuple[httpx.Response, str]:
        with llm.serve_in_thread() as url:
            return httpx.post(f"{url}/chat/completions", json=body), url

    response, url = await trio.to_thread.run_sync(sync_caller)
    assert response.json()["choices"][0]["message"]["content"] == "from a thread"
    assert [r.outcome for r in llm.requests] == ["answered"]
    with pytest.raises(httpx.ConnectError):  # stopped on leaving the block
        await trio.to_thread.run_sync(partial(httpx.post, f"{url}/chat/completions", json=body))
