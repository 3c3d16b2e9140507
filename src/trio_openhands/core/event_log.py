"""One conversation's ordered event log, and the subscribers that stream it live.

Every SDK event enters the log once, on the Trio thread, in the order the SDK emitted it,
and gets a sequence number (its index: the same dense index the SDK gives its event files).
It is serialized once, when it arrives; REST pages and socket frames reuse that text.
That text and the SDK's own event object are the only full copies of an event kept: `body`
search keeps a lower-cased copy of a message's text only while it is small, and reads a
big one's from the SDK's strings (see `LoggedEvent.search_text`). A released log (deleted or
unloaded conversation) drops its events at once, without waiting for the cyclic collector.

Subscribing is synchronous: the subscriber's history ends at the log's length at that
instant and everything appended later goes to its channel, so replay + live has neither
gap nor duplicate. Each subscriber's channel is bounded; publishing never waits: a
subscriber whose buffer is full is closed with 1013 (its queued frames are dropped at once,
so a stalled subscriber costs at most `subscriber_buffer` frames) and may resume with
`after_event_id`.

A subscriber's reader (the socket's writer task) goes through `history()` then `live`. If
the subscription is closed while the history is still being sent, the reader must stop
there: live frames after an incomplete history would leave a gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

log = logging.getLogger(__name__)

# WebSocket close codes a subscriber may be closed with.
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_CONVERSATION_DELETED = 4004

# A message text up to this many characters keeps a lower-cased copy for `body` search (the
# common case: fast to scan on 10,000 events); a longer one is lower-cased when searched.
SEARCH_COPY_MAX_CHARS = 64 * 1024
# A big text is lower-cased this many characters at a time, so that a search holds the GIL
# (and the Trio thread waits) only briefly at a time, and keeps no full copy.
_FOLD_CHUNK_CHARS = 1 << 20
# A subscriber's batch of frames (written to its socket at once) holds up to about this much
# JSON: a replay of a long history goes out in writes of this size.
BATCH_MAX_CHARS = 256 * 1024


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as the log keeps it: its serialization plus what filters need."""

    seq: int
    id: str
    kind: str
    source: str
    timestamp: datetime  # as the SDK stamps it: naive, server-local time
    # For `body` search: a small message's text lower-cased; a big one's text parts as the
    # SDK holds them (shared, not copied); "" for non-messages.
    search_text: str | tuple[str, ...]
    json: str  # the SDK's own serialization, made once
    size: int  # bytes of `json` in UTF-8, for pages bounded in bytes

    @property
    def search_is_slow(self) -> bool:
        """Whether `mentions` lower-cases a big text (run it in a worker thread)."""
        return isinstance(self.search_text, tuple)

    def mentions(self, needle: str) -> bool:
        """Whether the message text contains `needle` (lower-cased), ignoring case."""
        text = self.search_text
        if isinstance(text, str):
            return needle in text
        return _contains_folded(text[0] if len(text) == 1 else " ".join(text), needle)


@dataclass(frozen=True, slots=True)
class Transient:
    """A frame for live subscribers that is not part of the log (e.g. a status snapshot)."""

    json: str


type Frame = LoggedEvent | Transient


class Subscription:
    """A subscriber's view: `history` (already in the log) then `live` (the channel)."""

    def __init__(self, log_: EventLog, start: int, end: int, buffer: int) -> None:
        self._log = log_
        self.history_start = start
        self.history_end = end
        self.send_channel, self.live = trio.open_memory_channel[Frame](buffer)
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def history(self) -> Iterator[LoggedEvent]:
        """The events before the subscription, oldest first (read by index: no copy)."""
        events = self._log.events
        for seq in range(self.history_start, self.history_end):
            yield events[seq]

    async def batches(self, max_chars: int = BATCH_MAX_CHARS) -> AsyncIterator[list[Frame]]:
        """The history, then live frames, in sequence order, until the subscription closes;
        what is already there comes in one batch (of up to about `max_chars` of JSON), so
        that a socket writes it at once instead of frame by frame.

        Closed before the history is through (deleted, shutting down, too slow), it stops
        there: live frames after a partial history would leave a gap. Closed later, the
        frames already queued are delivered first (none if it was closed for being slow).
        """
        events, seq = self._log.events, self.history_start
        while seq < self.history_end:
            if self.closed:
                return
            batch: list[Frame] = []
            size = 0
            while seq < self.history_end and size < max_chars:
                event = events[seq]
                batch.append(event)
                size += len(event.json)
                seq += 1
            yield batch
        while True:
            try:  # frames already queued go out without a scheduler round each
                frame = self.live.receive_nowait()
            except trio.WouldBlock:
                try:
                    frame = await self.live.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            batch, size = [frame], len(frame.json)
            while size < max_chars:
                try:
                    frame = self.live.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(frame)
                size += len(frame.json)
            yield batch

    async def frames(self) -> AsyncIterator[Frame]:
        """`batches()`, one frame at a time (and stopping at the frame where the history
        was closed, for a reader that waits between frames)."""
        async for batch in self.batches():
            for frame in batch:
                in_history = isinstance(frame, LoggedEvent) and frame.seq < self.history_end
                if in_history and self.closed:
                    return
                yield frame

    def close(self, code: int, reason: str, *, drop_queued: bool = False) -> None:
        """End the live stream; the socket handler then closes with `code`.

        Frames already queued are still delivered (so a client told "deleted" or "shutting
        down" sees the last events first) unless `drop_queued`: a subscriber too slow to
        keep up resumes from `after_event_id` anyway, so its backlog is freed at once.
        """
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.send_channel.close()
        if drop_queued:
            while True:
                try:
                    self.live.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
        self._log.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.send_channel.close()
        self.live.close()
        self._log.unsubscribe(self)


class EventLog:
    """Append-only, in memory; the SDK's event files are what survives a restart."""

    def __init__(self, subscriber_buffer: int) -> None:
        self.events: list[LoggedEvent] = []
        self._by_id: dict[str, int] = {}
        self._subscribers: set[Subscription] = set()
        self._subscriber_buffer = subscriber_buffer
        self._closed: tuple[int, str] | None = None

    def __len__(self) -> int:
        return len(self.events)

    def statistics(self) -> dict[str, int]:
        return {"events": len(self.events), "subscribers": len(self._subscribers)}

    def append(self, event: Any, json_text: str) -> LoggedEvent:
        """Add an SDK event (Trio thread only) and offer it to every subscriber, never waiting."""
        if event.id in self._by_id:  # the SDK re-emitting an event it already logged
            return self.events[self._by_id[event.id]]
        logged = LoggedEvent(
            seq=len(self.events),
            id=event.id,
            kind=type(event).__name__,
            source=str(event.source),
            timestamp=_parse_timestamp(event.timestamp),
            search_text=_search_text(event),
            json=json_text,
            size=len(json_text) if json_text.isascii() else len(json_text.encode()),
        )
        self.events.append(logged)
        self._by_id[logged.id] = logged.seq
        self._offer(logged)
        return logged

    def publish(self, frame: Transient) -> None:
        self._offer(frame)

    def _offer(self, frame: Frame) -> None:
        for subscription in list(self._subscribers):
            try:
                subscription.send_channel.send_nowait(frame)
            except trio.WouldBlock:
                log.warning(
                    "closing a subscriber that fell %d frames behind", self._subscriber_buffer
                )
                subscription.close(
                    CLOSE_TRY_AGAIN_LATER,
                    "subscriber too slow; resume with after_event_id",
                    drop_queued=True,
                )
            except trio.BrokenResourceError:
                self.unsubscribe(subscription)

    def subscribe(self, after_seq: int | None) -> Subscription:
        """History after `after_seq` (None: no history; -1: all of it), then live frames."""
        end = len(self.events)
        start = end if after_seq is None else max(0, after_seq + 1)
        subscription = Subscription(self, min(start, end), end, self._subscriber_buffer)
        if self._closed is not None:
            subscription.close(*self._closed)
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self, code: int, reason: str) -> None:
        """No more live frames: every subscriber is told why (delete, shutdown)."""
        self._closed = (code, reason)
        for subscription in list(self._subscribers):
            subscription.close(code, reason)

    def release(self) -> None:
        """Drop every event (the conversation is deleted or unloaded; call after `close`).

        The conversation's objects form reference cycles with the SDK's, which the cyclic
        collector may only reach much later: dropping the events here frees their text now.
        A reader still going through the old list (a socket's history) keeps it until done.
        """
        self.events = []
        self._by_id = {}

    def seq_of(self, event_id: str) -> int | None:
        return self._by_id.get(event_id)

    def get(self, event_id: str) -> LoggedEvent | None:
        seq = self._by_id.get(event_id)
        return None if seq is None else self.events[seq]

    def iter_from(self, seq: int, descending: bool) -> Iterator[LoggedEvent]:
        events = self.events  # this instant's list, even if the log is released meanwhile
        if descending:
            for index in range(seq, -1, -1):
                yield events[index]
        else:
            for index in range(seq, len(events)):
                yield events[index]


def _parse_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now()


def _search_text(event: Any) -> str | tuple[str, ...]:
    message = getattr(event, "llm_message", None)
    if message is None:
        return ""
    parts = [getattr(item, "text", "") for item in getattr(message, "content", [])]
    parts = [part for part in parts if part]
    if sum(map(len, parts)) + len(parts) <= SEARCH_COPY_MAX_CHARS:
        return " ".join(parts).lower()
    return tuple(parts)


def _contains_folded(text: str, needle: str) -> bool:
    """`needle in text.lower()` without a full lower-cased copy when the text is ASCII
    (lower-casing ASCII is per character, so chunks that overlap by len(needle) - 1 find
    every occurrence). Other text is lower-cased whole: its case mapping can depend on
    context (a final sigma), which chunks would cut."""
    if not text.isascii():
        return needle in text.lower()
    if not needle.isascii():  # a lower-cased ASCII text is ASCII
        return False
    overlap = max(len(needle) - 1, 0)
    for start in range(0, len(text), _FOLD_CHUNK_CHARS):
        if needle in text[start : start + _FOLD_CHUNK_CHARS + overlap].lower():
            return True
    return needle == ""
