"""Request bodies a handler may stream (file uploads), with backpressure.

Quart keeps the bytes that arrive in the request's `Body` until the handler takes them,
with no bound but `MAX_CONTENT_LENGTH` (16 MiB), which it also checks against the declared
`Content-Length` before anything is read: a larger upload is refused outright, and one
that arrives faster than the disk takes it would pile up in memory. `StreamedBodyRequest`
(the app's request class) gives each request a `StreamableBody` that behaves exactly like
Quart's until its handler calls `stream()`; from then on

- the body may be as large as the handler allows (it counts and refuses beyond that),
- at most HIGH_WATER bytes wait in memory: `wait_for_room()` holds the task that reads
  from Hypercorn (connection.py calls it before each read) until the handler has
  taken them, so a fast client is slowed down to the handler's pace by TCP itself, and
- each chunk must arrive within the body timeout (`next_chunk`), however long the whole.
"""

from __future__ import annotations

import trio
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

from trio_openhands.core.errors import ApiError

HIGH_WATER = 4 * 1024 * 1024  # bytes of a streamed body kept in memory at most (+ one read)


class StreamableBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self.expected_content_length = expected_content_length
        # Quart drops every byte of a body declared too large; keep them (up to the usual
        # limit) until the handler says whether it streams, and refuse only then.
        self._declared_too_large = self._must_raise is not None
        self._must_raise = None
        self._streaming = False
        self._room = trio.Event()
        self._room.set()

    def stream(self) -> None:
        """From now on the handler reads this body chunk by chunk (`async for`/`next_chunk`)."""
        self._streaming = True
        self._max_content_length = None  # the handler bounds the total; HIGH_WATER the rest
        self._declared_too_large = False
        self._note_level()

    def append(self, data: bytes) -> None:
        super().append(data)
        if self._streaming:
            self._note_level()

    def __await__(self):  # type: ignore[override]  # the unstreamed body, whole
        if self._declared_too_large:
            raise RequestEntityTooLarge()
        return super().__await__()

    async def __anext__(self) -> bytes:
        if self._declared_too_large and not self._streaming:
            raise RequestEntityTooLarge()
        chunk = await super().__anext__()
        self._room.set()
        return chunk

    async def next_chunk(self, idle_seconds: float) -> bytes | None:
        """The bytes that arrived since the last call (None at the end); a 408 if none
        arrive within `idle_seconds`."""
        with trio.move_on_after(idle_seconds) as waited:
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                return None
        assert waited.cancelled_caught
        raise ApiError(408, f"The body stopped arriving: nothing for {idle_seconds:g} s")

    async def wait_for_room(self) -> None:
        """Return once fewer than HIGH_WATER bytes wait for the handler (at once, unless
        the body is streamed)."""
        while self._streaming and len(self._data) >= HIGH_WATER:
            room = self._room
            await room.wait()

    def _note_level(self) -> None:
        if len(self._data) >= HIGH_WATER and self._room.is_set():
            self._room = trio.Event()


class StreamedBodyRequest(TrioRequest):
    body_class = StreamableBody
