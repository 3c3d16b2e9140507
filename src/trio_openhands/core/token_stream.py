"""An LLM's streamed tokens, sent to the conversation's live sockets as the reference sends
them: `StreamingDeltaEvent` frames, never logged (a client that connects later gets the
finished message from the log, not the deltas that made it).

The SDK streams only for an LLM with `stream: true`, and calls back on its agents' thread
for every chunk. The callback only queues the text and, unless one is pending already,
asks the Trio thread for a flush; so the deltas that arrive before the Trio thread gets
to them go out as one frame, and a busy server sends fewer, bigger frames rather than
falling behind. A flush runs before the hand-over of any event the SDK emits after those
tokens (both go through the same queue), so a message's deltas always precede it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core.event_log import Transient

if TYPE_CHECKING:
    from trio_openhands.core.event_log import EventLog


class TokenStream:
    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._token = trio.lowlevel.current_trio_token()
        self._lock = threading.Lock()
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._flush_pending = False

    def on_token(self, chunk: Any) -> None:
        """The SDK's token callback (its thread): queue the chunk's text, never wait."""
        if isinstance(chunk, str):
            pieces = [(chunk, None)]
        else:
            pieces = [
                (
                    getattr(choice.delta, "content", None),
                    getattr(choice.delta, "reasoning_content", None),
                )
                for choice in chunk.choices or ()
                if choice.delta is not None
            ]
        with self._lock:
            for content, reasoning in pieces:
                if content is not None:  # an empty string is forwarded, as the reference does
                    self._content.append(content)
                if reasoning is not None:
                    self._reasoning.append(reasoning)
            if self._flush_pending or not (self._content or self._reasoning):
                return
            self._flush_pending = True
        with contextlib.suppress(trio.RunFinishedError):  # the server has stopped
            self._token.run_sync_soon(self._flush)

    def _flush(self) -> None:
        from openhands.sdk.event import StreamingDeltaEvent

        with self._lock:
            content, reasoning = self._content, self._reasoning
            self._content, self._reasoning = [], []
            self._flush_pending = False
        event = StreamingDeltaEvent(
            content="".join(content) if content else None,
            reasoning_content="".join(reasoning) if reasoning else None,
        )
        self._log.publish(Transient(event.model_dump_json()))
