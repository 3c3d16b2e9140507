"""The fake LLM's request log, and the waits tests use instead of sleeping.

Every wait is an event set by the server, so a test can act exactly when a request arrives
(while its reply is still held) or when it ends (answered, or aborted by the client).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import trio

from trio_openhands.testing._script import reply_to_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_openhands.testing._openai import JSONDict
    from trio_openhands.testing._script import Reply, Selection

Outcome = Literal["pending", "answered", "aborted", "cancelled"]
"""``aborted``: the client left before the reply; ``cancelled``: the server shut down first."""


@dataclass(eq=False)
class RecordedRequest:
    """One ``/chat/completions`` request as the server saw it, and what became of it."""

    index: int
    script: str | None
    step: int | None
    """Position in the script; None when the request offered no tools (not an agent step)."""
    model: str
    messages: list[JSONDict]
    tools: list[str]
    """Names of the tools the request offered."""
    stream: bool
    reply: Reply
    outcome: Outcome = "pending"
    _done: trio.Event = field(default_factory=trio.Event, repr=False)

    @property
    def aborted(self) -> bool:
        """True if the client disconnected before the reply was sent (e.g. during a delay)."""
        return self.outcome == "aborted"

    @property
    def has_tools(self) -> bool:
        """True if the request offered tools, i.e. it was an agent step."""
        return bool(self.tools)

    async def wait_done(self) -> Outcome:
        """Wait until the request was answered, aborted or cancelled; return which."""
        await self._done.wait()
        return self.outcome

    def to_json(self) -> JSONDict:
        """Return the form ``GET /_requests`` serves."""
        return {
            "index": self.index,
            "script": self.script,
            "step": self.step,
            "model": self.model,
            "messages": self.messages,
            "tools": self.tools,
            "stream": self.stream,
            "outcome": self.outcome,
            "aborted": self.aborted,
            "reply": reply_to_json(self.reply),
        }


class RequestLog:
    """Requests in arrival order; one event per change wakes every waiter to re-check."""

    def __init__(self) -> None:
        self._records: list[RecordedRequest] = []
        self._counter = itertools.count()
        self._changed = trio.Event()

    def snapshot(self) -> list[RecordedRequest]:
        """The logged requests, oldest first (a copy)."""
        return list(self._records)

    def add(
        self,
        selection: Selection,
        *,
        model: str,
        messages: list[JSONDict],
        tools: list[str],
        stream: bool,
        reply: Reply,
    ) -> RecordedRequest:
        """Log an arriving request (before its reply is sent) and wake the waiters."""
        record = RecordedRequest(
            next(self._counter),
            selection.script,
            selection.step,
            model,
            messages,
            tools,
            stream,
            reply,
        )
        self._records.append(record)
        self._notify()
        return record

    def finish(self, record: RecordedRequest, outcome: Outcome) -> None:
        """Mark how ``record`` ended and wake whoever waits on it."""
        record.outcome = outcome
        record._done.set()  # pyright: ignore[reportPrivateUsage]
        self._notify()

    def clear(self) -> None:
        """Forget the logged requests (indexes keep counting up)."""
        self._records.clear()
        self._notify()

    async def wait_for(
        self,
        script: str | None = None,
        step: int | None = None,
        *,
        predicate: Callable[[RecordedRequest], bool] | None = None,
    ) -> RecordedRequest:
        """Wait until a logged request matches all given criteria; return the oldest match."""
        while True:
            changed = self._changed
            for record in self._records:
                if (
                    (script is None or record.script == script)
                    and (step is None or record.step == step)
                    and (predicate is None or predicate(record))
                ):
                    return record
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
