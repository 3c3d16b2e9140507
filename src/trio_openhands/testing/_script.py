"""Scripted replies and how a request picks one.

A request names its script with a ``[[fake:NAME]]`` marker in a user message and finds its
place in it by counting assistant messages, so the server keeps no per-conversation state
and one server can be shared by concurrent tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MARKER_RE = re.compile(r"\[\[fake:([A-Za-z0-9_.\-]+)\]\]")


def marker(name: str) -> str:
    """Return the marker that selects script ``name`` when put in a user message."""
    if not MARKER_RE.fullmatch(f"[[fake:{name}]]"):
        raise ValueError(f"invalid script name {name!r}: use letters, digits, '_', '.', '-'")
    return f"[[fake:{name}]]"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call in an assistant reply; ``id`` is generated when left out."""

    name: str
    arguments: Mapping[str, object] = field(default_factory=dict[str, object])
    id: str | None = None


@dataclass(frozen=True, slots=True)
class TextReply:
    """A plain assistant message; for an agent this ends the run."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCallsReply:
    """An assistant message calling tools (finish_reason ``tool_calls``), with optional text."""

    calls: tuple[ToolCall, ...]
    text: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An HTTP error with an OpenAI-style error body, as a provider outage or rate limit."""

    status: int
    message: str
    delay: float = 0.0


Reply = TextReply | ToolCallsReply | ErrorReply


def _check_delay(delay: float) -> float:
    if math.isnan(delay) or delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay!r}")
    return float(delay)


def text(content: str, *, delay: float = 0.0) -> TextReply:
    """Reply with plain text after ``delay`` seconds."""
    return TextReply(content, _check_delay(delay))


def tool_call(
    name: str,
    arguments: Mapping[str, object] | None = None,
    *,
    text: str | None = None,
    delay: float = 0.0,
) -> ToolCallsReply:
    """Reply with one tool call; ``arguments`` are sent as a JSON string.

    The openhands SDK validates ``arguments`` against the tool's action schema, so pass that
    tool's required fields (``terminal``: ``{"command": ...}``; ``finish``: ``{"message": ...}``).
    The SDK also accepts, but does not need, the ``summary`` and ``security_risk`` fields it
    adds to every tool's schema: without ``summary`` it writes one of its own, and
    ``security_risk`` is ignored unless a security analyzer is configured.
    """
    return tool_calls(ToolCall(name, dict(arguments or {})), text=text, delay=delay)


def tool_calls(*calls: ToolCall, text: str | None = None, delay: float = 0.0) -> ToolCallsReply:
    """Reply with several tool calls in one assistant message (parallel tool calling)."""
    if not calls:
        raise ValueError("tool_calls() needs at least one ToolCall")
    return ToolCallsReply(tuple(calls), text, _check_delay(delay))


def finish(message: str = "done", *, delay: float = 0.0) -> ToolCallsReply:
    """Reply with the SDK's built-in ``finish`` tool, which ends an agent run."""
    return tool_call("finish", {"message": message}, delay=delay)


def http_error(status: int, message: str = "fake LLM error", *, delay: float = 0.0) -> ErrorReply:
    """Answer with HTTP ``status`` (e.g. 500, 429, 401) and an OpenAI-style error body."""
    if not 400 <= status <= 599:
        raise ValueError(f"an error status must be 4xx or 5xx, got {status}")
    return ErrorReply(status, message, _check_delay(delay))


def reply_to_json(reply: Reply) -> dict[str, object]:
    """Return the JSON form of a reply, the one ``PUT /_scripts/{name}`` accepts."""
    out: dict[str, object]
    match reply:
        case TextReply():
            out = {"text": reply.text}
        case ToolCallsReply():
            calls: list[dict[str, object]] = []
            for call in reply.calls:
                item: dict[str, object] = {"name": call.name, "arguments": dict(call.arguments)}
                if call.id is not None:
                    item["id"] = call.id
                calls.append(item)
            out = {"tool_calls": calls}
            if reply.text is not None:
                out["text"] = reply.text
        case ErrorReply():
            out = {"error": reply.status, "message": reply.message}
    if reply.delay:
        out["delay"] = reply.delay
    return out


def _delay_from_json(obj: Mapping[str, object]) -> float:
    delay = obj.get("delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise ValueError(f"'delay' must be a number, got {delay!r}")
    return _check_delay(float(delay))


def _str_or_none(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {value!r}")
    return value


def _tool_call_from_json(obj: object) -> ToolCall:
    if not isinstance(obj, Mapping):
        raise ValueError(f"a tool call must be an object, got {obj!r}")
    item: Mapping[str, object] = obj  # pyright: ignore[reportUnknownVariableType]
    name = item.get("name")
    arguments = item.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a 'name' string, got {name!r}")
    if not isinstance(arguments, Mapping):
        raise ValueError(f"tool call 'arguments' must be an object, got {arguments!r}")
    args: Mapping[str, object] = arguments  # pyright: ignore[reportUnknownVariableType]
    return ToolCall(name, dict(args), _str_or_none(item, "id"))


def reply_from_json(obj: object) -> Reply:
    """Parse one reply from its JSON form; raises ``ValueError`` with a readable reason.

    Forms: ``{"text": "hi"}``, ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``
    (optionally with ``"text"``), ``{"error": 500, "message": "boom"}``; each may carry
    ``"delay": seconds``.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a reply must be an object, got {obj!r}")
    data: Mapping[str, object] = obj  # pyright: ignore[reportUnknownVariableType]
    delay = _delay_from_json(data)
    if "error" in data:
        status = data["error"]
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError(f"'error' must be an HTTP status code, got {status!r}")
        return http_error(status, _str_or_none(data, "message") or "fake LLM error", delay=delay)
    if "tool_calls" in data:
        calls = data["tool_calls"]
        if not isinstance(calls, list) or not calls:
            raise ValueError(f"'tool_calls' must be a non-empty list, got {calls!r}")
        items: list[object] = calls  # pyright: ignore[reportUnknownVariableType]
        parsed = [_tool_call_from_json(call) for call in items]
        return tool_calls(*parsed, text=_str_or_none(data, "text"), delay=delay)
    content = _str_or_none(data, "text")
    if content is None:
        raise ValueError(f"a reply needs 'text', 'tool_calls' or 'error': {dict(data)!r}")
    return text(content, delay=delay)


def script_from_json(obj: object) -> list[Reply]:
    """Parse a whole script: a JSON list of replies."""
    if not isinstance(obj, list):
        raise ValueError(f"a script must be a list of replies, got {obj!r}")
    items: list[object] = obj  # pyright: ignore[reportUnknownVariableType]
    return [reply_from_json(item) for item in items]


@dataclass(frozen=True, slots=True)
class Selection:
    """Where a request falls: its script (None without marker) and step (None if no agent step)."""

    script: str | None
    step: int | None


def message_text(message: Mapping[str, object]) -> str:
    """Return the text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[object] = content  # pyright: ignore[reportUnknownVariableType]
    texts: list[str] = []
    for part in parts:
        if isinstance(part, Mapping):
            value = part.get("text")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            if isinstance(value, str):
                texts.append(value)
    return "\n".join(texts)


def select(messages: Sequence[Mapping[str, object]], *, agent_step: bool) -> Selection:
    """Pick the script from the last marker in user messages and count the steps since.

    The SDK merges consecutive user messages into one, so the last marker wins; the step is
    the number of assistant messages after the user message holding it.
    """
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user":
            continue
        names = MARKER_RE.findall(message_text(message))
        if names:
            if not agent_step:
                return Selection(names[-1], None)
            later = messages[index + 1 :]
            step = sum(1 for m in later if m.get("role") == "assistant")
            return Selection(names[-1], step)
    return Selection(None, None)


def choose(
    selection: Selection,
    scripts: Mapping[str, Sequence[Reply]],
    *,
    default: Reply,
    end: Reply,
) -> Reply:
    """Return the scripted reply for ``selection``: ``default`` off-script, ``end`` past the end.

    An unknown script name is answered with a 400 error, so a typo fails loudly instead of
    silently ending the run.
    """
    if selection.script is None or selection.step is None:
        return default
    script = scripts.get(selection.script)
    if script is None:
        return ErrorReply(400, f"unknown fake LLM script {selection.script!r}")
    if selection.step < len(script):
        return script[selection.step]
    return end
