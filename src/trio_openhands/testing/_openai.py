"""The OpenAI chat-completions wire format for scripted replies.

Kept apart from the server so the shapes clients parse (litellm, the openai client) are in
one place: bodies, stream chunks, error bodies and token counts.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from trio_openhands.testing._script import ErrorReply, TextReply, ToolCallsReply

JSONDict = dict[str, object]

# OpenAI's error "type"/"code" per status. litellm maps any body saying
# "invalid_request_error" to BadRequestError whatever the status, so only 400-like errors say it.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def estimate_tokens(obj: object) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    raw = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return max(1, len(raw) // 4)


def _tool_call_ids(reply: ToolCallsReply) -> list[str]:
    # Random ids: the same script replayed in one conversation must not repeat an id.
    return [call.id or f"call_{uuid.uuid4().hex[:24]}" for call in reply.calls]


def _usage(prompt_tokens: int, reply: TextReply | ToolCallsReply) -> JSONDict:
    produced: list[object] = [reply.text or ""]
    if isinstance(reply, ToolCallsReply):
        produced += [[call.name, dict(call.arguments)] for call in reply.calls]
    completion_tokens = estimate_tokens(produced)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(kind: str, model: str, completion_id: str) -> JSONDict:
    return {
        "id": completion_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }


def completion_body(
    reply: TextReply | ToolCallsReply, *, model: str, prompt_tokens: int
) -> JSONDict:
    """Build a non-streaming ``chat.completion`` response body."""
    message: JSONDict = {"role": "assistant", "content": reply.text}
    finish_reason = "stop"
    if isinstance(reply, ToolCallsReply):
        finish_reason = "tool_calls"
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
            }
            for call, call_id in zip(reply.calls, _tool_call_ids(reply), strict=True)
        ]
    body = _envelope("chat.completion", model, f"chatcmpl-{uuid.uuid4().hex}")
    body["choices"] = [
        {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
    ]
    body["usage"] = _usage(prompt_tokens, reply)
    return body


def _split(value: str, pieces: int) -> list[str]:
    """Cut ``value`` into at most ``pieces`` parts so clients must reassemble deltas."""
    if not value:
        return []
    size = max(1, -(-len(value) // pieces))
    return [value[i : i + size] for i in range(0, len(value), size)]


def stream_chunks(
    reply: TextReply | ToolCallsReply,
    *,
    model: str,
    prompt_tokens: int,
    include_usage: bool,
) -> list[JSONDict]:
    """Build the ``chat.completion.chunk`` objects of a streamed reply, in order."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"

    def chunk(delta: JSONDict, finish_reason: str | None = None) -> JSONDict:
        out = _envelope("chat.completion.chunk", model, completion_id)
        out["choices"] = [
            {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ]
        return out

    chunks = [chunk({"role": "assistant", "content": ""})]
    # Word-sized text deltas, as a real model streams them.
    chunks += [chunk({"content": piece}) for piece in re.findall(r"\s*\S+\s*", reply.text or "")]
    finish_reason = "stop"
    if isinstance(reply, ToolCallsReply):
        finish_reason = "tool_calls"
        for index, (call, call_id) in enumerate(
            zip(reply.calls, _tool_call_ids(reply), strict=True)
        ):
            head = {"name": call.name, "arguments": ""}
            first = {"index": index, "id": call_id, "type": "function", "function": head}
            chunks.append(chunk({"tool_calls": [first]}))
            for piece in _split(json.dumps(dict(call.arguments)), 2):
                part = {"index": index, "function": {"arguments": piece}}
                chunks.append(chunk({"tool_calls": [part]}))
    chunks.append(chunk({}, finish_reason))
    if include_usage:
        last = _envelope("chat.completion.chunk", model, completion_id)
        last["choices"] = []
        last["usage"] = _usage(prompt_tokens, reply)
        chunks.append(last)
    return chunks


def sse_event(payload: JSONDict | None) -> bytes:
    """Encode one server-sent event; ``None`` is the closing ``[DONE]`` sentinel."""
    data = "[DONE]" if payload is None else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def error_body(reply: ErrorReply) -> JSONDict:
    """Build an OpenAI-style ``{"error": {...}}`` body for an error reply."""
    default = "server_error" if reply.status >= 500 else "api_error"
    kind, code = _ERROR_KINDS.get(reply.status, (default, None))
    return {"error": {"message": reply.message, "type": kind, "param": None, "code": code}}


def dicts(value: object) -> list[JSONDict]:
    """Return the JSON objects in ``value`` if it is a list (ignoring other items), else []."""
    if not isinstance(value, list):
        return []
    items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
    return [item for item in items if isinstance(item, dict)]  # pyright: ignore[reportUnknownVariableType]


def tool_names(tools: object) -> list[str]:
    """Return the function names offered in a request's ``tools`` list."""
    names: list[str] = []
    for tool in dicts(tools):
        function = tool.get("function")
        if isinstance(function, dict):
            name = function.get("name")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            if isinstance(name, str):
                names.append(name)
    return names
