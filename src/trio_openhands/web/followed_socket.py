"""An event socket on an instance that does not own the conversation: from the store.

With the shared store a socket may reach any instance. One that is not the conversation's
owner follows the events table instead of the owner's in-memory log: it replays from the
store by seq, then goes live through LISTEN/NOTIFY wake-ups (`EventFollower`), so it has
neither gap nor duplicate, and each frame is the event's JSON as the owner logged it, byte
for byte. It keeps going whichever instance owns the conversation meanwhile (a takeover
only changes who appends). Close codes as on the owner: 4004 once the conversation is
deleted (on any instance), 1001 when this server shuts down. A slow client is never
closed with 1013 here: it reads the store at its own pace.

A message the client sends is read as the socket's dialect reads it (`Dialect`: the seed's
`{"type": "error"}` answer to a bad frame, or the /api socket's `ServerErrorEvent` and its
repeated `auth` frames skipped), then handed to the owner (`POST .../events` forwarded with
the socket's key), or, with no live owner, to the conversation loaded here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
import trio
from quart import websocket

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ApiError
from trio_openhands.core.models import SendMessageRequest
from trio_openhands.stores.conversation_store import OwnedElsewhere
from trio_openhands.stores.postgres.follow import ConversationDeleted, EventFollower
from trio_openhands.web.common import supervisor
from trio_openhands.web.forwarding import FORWARD_TIMEOUT, FORWARDED_HEADER
from trio_openhands.web.security import API_KEY_HEADER

if TYPE_CHECKING:
    import uuid

    from trio_openhands.stores.postgres.conversation_store import PostgresStore
    from trio_openhands.web.api.models import ApiSendMessageRequest
    from trio_openhands.web.socket_messages import Dialect

    type MessageDialect = Dialect[SendMessageRequest] | Dialect[ApiSendMessageRequest]

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_CONVERSATION_DELETED = 4004


async def serve_followed_socket(
    conversation_id: uuid.UUID,
    dialect: MessageDialect,
    *,
    after_seq: int | None,
    accepted: bool = False,
) -> None:
    """Serve the event socket from the store, reading the client's frames as `dialect`.
    `after_seq`: -1 replays everything, None nothing (only new events); `after_event_id`
    is resolved by `stored_seq_of`. The /api socket has accepted already (it authenticates
    after accepting); it gets the events only, not the owner's `full_state` snapshots."""
    sup = supervisor()
    store: PostgresStore = sup.store  # type: ignore[assignment]
    start = await store.events.last_seq(conversation_id) if after_seq is None else after_seq
    follower = EventFollower(store.events, store.wakeups, conversation_id, after_seq=start)
    with follower:
        if not accepted:
            await websocket.accept()
        log.info("conversation %s: socket following the store after seq %d", conversation_id, start)
        close_code = 1000
        async with trio.open_nursery() as socket_nursery:

            async def until_shutdown() -> None:
                nonlocal close_code
                await sup.stopping.wait()
                close_code = CLOSE_GOING_AWAY
                socket_nursery.cancel_scope.cancel()

            async def read_messages() -> None:
                try:
                    await _read_messages(conversation_id, dialect)
                finally:
                    socket_nursery.cancel_scope.cancel()  # the client went away

            socket_nursery.start_soon(until_shutdown)
            socket_nursery.start_soon(read_messages)
            try:
                while True:
                    for event in await follower.next_batch():
                        await websocket.send(event.json)
            except ConversationDeleted:
                close_code = CLOSE_CONVERSATION_DELETED
            socket_nursery.cancel_scope.cancel()
    reason = {CLOSE_CONVERSATION_DELETED: "conversation deleted"}.get(close_code, "")
    if close_code == CLOSE_GOING_AWAY:
        reason = "server shutting down"
    await websocket.close(close_code, reason)
    log.info("conversation %s: followed socket closed with %d", conversation_id, close_code)


async def stored_seq_of(conversation_id: uuid.UUID, event_id: str) -> int | None:
    """The seq of an event in the store (`after_event_id`); None when unknown."""
    store: PostgresStore = supervisor().store  # type: ignore[assignment]
    event = await store.events.get(conversation_id, event_id)
    return None if event is None else event.seq


async def _read_messages(conversation_id: uuid.UUID, dialect: MessageDialect) -> None:
    async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT) as client:
        async for request, data in dialect.messages():
            try:
                await _send(client, conversation_id, request, data)
            except ApiError as error:
                await dialect.send_error(error.status, error.detail)


async def _send(
    client: httpx.AsyncClient,
    conversation_id: uuid.UUID,
    request: SendMessageRequest | ApiSendMessageRequest,
    data: Any,
) -> None:
    """The message to the owner, or to the conversation loaded here if it has none."""
    try:
        conversation = await supervisor().get(conversation_id)
    except OwnedElsewhere as owned:
        if owned.address is None:
            raise
        key = websocket.headers.get(API_KEY_HEADER) or websocket.args.get("session_api_key")
        headers = {FORWARDED_HEADER: "socket", **({API_KEY_HEADER: key} if key else {})}
        body = {**data, "run": True}
        try:
            answer = await client.post(
                f"{owned.address.rstrip('/')}/conversations/{conversation_id}/events",
                json=body,
                headers=headers,
            )
        except httpx.HTTPError as error:
            log.warning("forwarding a socket message to %s failed: %s", owned.address, error)
            raise ApiError(503, "The instance running this conversation did not answer") from None
        if answer.status_code >= 400:
            raise ApiError(answer.status_code, answer.json().get("detail")) from None
        return
    await conversation.send_message(sdk_bridge.to_message(request.content), run=True)
