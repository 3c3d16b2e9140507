"""The messages a client sends on an event socket, read the same way by every socket.

Each inbound frame is JSON validated as the dialect's message model; a frame that does not
parse or validate is answered with the dialect's error frame (422 naming the problem, or
the status `load_json` chose) and skipped: the socket stays open. A `Dialect` names those
three choices once, so a socket served from the store (web/followed_socket.py) reads frames
exactly as the owner's socket of the same dialect does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from quart import websocket

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.validation import errors_from, load_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


@dataclass(frozen=True)
class Dialect[M: BaseModel]:
    """A socket dialect's inbound side: its message model, its error frame, what it skips."""

    model: type[M]
    send_error: Callable[[int, Any], Awaitable[None]]
    skip: Callable[[Any], bool] | None = None

    def messages(self) -> AsyncIterator[tuple[M, Any]]:
        return inbound_messages(self.model, self.send_error, skip=self.skip)


async def inbound_messages[M: BaseModel](
    model: type[M],
    send_error: Callable[[int, Any], Awaitable[None]],
    *,
    skip: Callable[[Any], bool] | None = None,
) -> AsyncIterator[tuple[M, Any]]:
    """Each valid message with its parsed JSON, until the client goes away; frames that
    `skip` accepts (e.g. a repeated `auth`) are passed over without an answer."""
    while True:
        raw = await websocket.receive()
        try:
            data = load_json(raw, ("frame",))
            if skip is not None and skip(data):
                continue
            message = model.model_validate(data)
        except ValidationError as error:
            await send_error(422, errors_from(error))
            continue
        except ValidationFailed as error:
            await send_error(error.status, error.detail)
            continue
        yield message, data
