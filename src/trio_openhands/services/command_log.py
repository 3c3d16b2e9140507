"""The bash events of one scope (the host workspace, or one conversation's), in memory.

Events are the reference server's `BashCommand` (a command was started) and `BashOutput`
(a chunk of its output, numbered by `order`; the last one carries `exit_code`). Each is
serialized once when it is appended; searches, pages and socket frames reuse that text.

Subscribing works as the conversation event log does: synchronous, at the log's current
end, so replay + live has neither gap nor duplicate; publishing never waits, and a
subscriber that falls `buffer` frames behind is closed with 1013.

The log is bounded: past `max_bytes` of serialized events the oldest are dropped (a command
that is still running keeps its newest output). Bash events do not survive a restart.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_GOING_AWAY = 1001
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

type BashKind = Literal["BashCommand", "BashOutput", "BashError"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """As pydantic writes an aware UTC time (`...Z`), so clients parse ours like theirs."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class BashEvent:
    seq: int
    id: uuid.UUID
    kind: BashKind
    timestamp: datetime  # aware, UTC
    command_id: uuid.UUID | None  # BashOutput only
    order: int | None  # BashOutput only
    exit_code: int | None
    json: str

    @classmethod
    def build(
        cls, seq: int, kind: BashKind, fields: dict[str, Any], *, event_id: uuid.UUID | None = None
    ) -> BashEvent:
        event_id = event_id or uuid.uuid4()
        timestamp = utc_now()
        command_id = fields.get("command_id")
        body = {"kind": kind, "id": str(event_id), "timestamp": iso(timestamp), **fields}
        if isinstance(command_id, uuid.UUID):
            body["command_id"] = str(command_id)
        return cls(
            seq=seq,
            id=event_id,
            kind=kind,
            timestamp=timestamp,
            command_id=command_id if isinstance(command_id, uuid.UUID) else None,
            order=fields.get("order"),
            exit_code=fields.get("exit_code"),
            json=json.dumps(body),
        )


class BashSubscription:
    def __init__(self, log_: CommandLog, history: list[BashEvent], buffer: int) -> None:
        self._log = log_
        self.history = history
        self.send_channel, self.live = trio.open_memory_channel[BashEvent](buffer)
        self.close_code: int | None = None

    async def frames(self) -> AsyncIterator[BashEvent]:
        for event in self.history:
            if self.close_code is not None:
                return
            yield event
        async for event in self.live:
            yield event

    def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        self.send_channel.close()
        self._log.unsubscribe(self)

    def __enter__(self) -> BashSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.send_channel.close()
        self.live.close()
        self._log.unsubscribe(self)


class CommandLog:
    """Append-only (but bounded), Trio thread only."""

    def __init__(self, *, subscriber_buffer: int = 1024, max_bytes: int = DEFAULT_MAX_BYTES):
        self.events: deque[BashEvent] = deque()
        self._by_id: dict[uuid.UUID, BashEvent] = {}
        self._next_seq = 0
        self._bytes = 0
        self._max_bytes = max_bytes
        self._subscribers: set[BashSubscription] = set()
        self._subscriber_buffer = subscriber_buffer

    def append(
        self, kind: BashKind, fields: dict[str, Any], *, event_id: uuid.UUID | None = None
    ) -> BashEvent:
        event = BashEvent.build(self._next_seq, kind, fields, event_id=event_id)
        self._next_seq += 1
        if kind != "BashError":  # an error frame answers one socket; it is not history
            self.events.append(event)
            self._by_id[event.id] = event
            self._bytes += len(event.json)
            self._evict()
        for subscription in list(self._subscribers):
            try:
                subscription.send_channel.send_nowait(event)
            except trio.WouldBlock:
                log.warning("closing a bash-events subscriber that fell behind")
                subscription.close(CLOSE_TRY_AGAIN_LATER)
            except trio.BrokenResourceError:
                self.unsubscribe(subscription)
        return event

    def _evict(self) -> None:
        while self._bytes > self._max_bytes and len(self.events) > 1:
            oldest = self.events.popleft()
            self._by_id.pop(oldest.id, None)
            self._bytes -= len(oldest.json)

    def subscribe(self, *, replay: bool) -> BashSubscription:
        history = list(self.events) if replay else []
        subscription = BashSubscription(self, history, self._subscriber_buffer)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: BashSubscription) -> None:
        self._subscribers.discard(subscription)

    def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        for subscription in list(self._subscribers):
            subscription.close(code)

    def get(self, event_id: uuid.UUID) -> BashEvent | None:
        return self._by_id.get(event_id)

    def clear(self) -> int:
        count = len(self.events)
        self.events.clear()
        self._by_id.clear()
        self._bytes = 0
        return count

    def search(
        self,
        *,
        kind: BashKind | None = None,
        command_id: uuid.UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order_above: int | None = None,
        descending: bool = False,
    ) -> Iterable[BashEvent]:
        """Matching events in time order (sequence order: the same, without ties)."""
        events = reversed(self.events) if descending else iter(self.events)
        for event in events:
            if kind is not None and event.kind != kind:
                continue
            if command_id is not None and event.command_id != command_id:
                continue
            if since is not None and event.timestamp < since:
                continue
            if until is not None and event.timestamp >= until:
                continue
            if order_above is not None and event.order is not None and event.order <= order_above:
                continue
            yield event
