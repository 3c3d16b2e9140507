"""`WS /conversations/{id}/events/socket`: the conversation's events, live, losing nothing.

Query: `resend_all=true` replays the whole log first; `after_event_id=ID` replays what
came after that event; otherwise only new events are sent. Each frame is one event's JSON.
The client may send messages (`{"role": "user", "content": [...]}`), handled like
`POST .../events` with run=true; an invalid frame gets
`{"type": "error", "code": 422, "detail": ...}` back and the socket stays open.

Rejected before accept: a bad key (403), an unknown conversation (404), an unknown
`after_event_id` (400). Close codes: 1001 server shutdown, 1013 the subscriber fell more
than `subscriber_buffer` frames behind (reconnect with `after_event_id`), 4004 deleted.
With the shared store, a socket on an instance that does not own the conversation follows
it from the database (web/followed_socket.py): the same frames and close codes.
A client that stops reading altogether still gets its 1013 close frame, but only once it
reads again (the frames in flight come first); meanwhile it holds no queued frames.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, websocket

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ApiError, NotFound
from trio_openhands.core.models import SendMessageRequest
from trio_openhands.stores.conversation_store import OwnedElsewhere
from trio_openhands.web.common import app, parse_conversation_id, supervisor
from trio_openhands.web.followed_socket import serve_followed_socket, stored_seq_of
from trio_openhands.web.frame_writer import serve_subscription
from trio_openhands.web.security import API_KEY_HEADER, key_is_valid
from trio_openhands.web.socket_messages import Dialect

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation

log = logging.getLogger(__name__)
blueprint = Blueprint("sockets", __name__)


def socket_key_is_valid() -> bool:
    keys = app().settings.session_api_keys
    if not keys:
        return True
    candidate = websocket.headers.get(API_KEY_HEADER) or websocket.args.get("session_api_key")
    return key_is_valid(candidate, keys)


@blueprint.websocket("/conversations/<raw_id>/events/socket")
async def event_socket(raw_id: str) -> None:
    if not socket_key_is_valid():
        raise ApiError(403, "Invalid or missing session API key")
    after_seq: int | None = None
    if websocket.args.get("resend_all", "").lower() in ("true", "1", "yes"):
        after_seq = -1
    after_event_id = websocket.args.get("after_event_id")
    try:
        conversation_id = parse_conversation_id(raw_id)
    except ApiError:
        raise NotFound(f"Conversation not found: {raw_id}") from None
    try:
        conversation = await supervisor().get(conversation_id)
    except OwnedElsewhere:  # another instance runs it: follow it from the shared store
        if after_event_id:
            after_seq = await stored_seq_of(conversation_id, after_event_id)
            if after_seq is None:
                raise _unknown_event(after_event_id) from None
        await serve_followed_socket(conversation_id, SEED_MESSAGES, after_seq=after_seq)
        return
    except ApiError as error:
        if error.status == 422:
            raise NotFound(f"Conversation not found: {raw_id}") from None
        raise
    if after_event_id:
        after_seq = conversation.log.seq_of(after_event_id)
        if after_seq is None:
            raise _unknown_event(after_event_id)
    with conversation.log.subscribe(after_seq) as subscription:
        await websocket.accept()
        log.info(
            "conversation %s: socket subscribed (%d to replay)",
            conversation.id,
            subscription.history_end - subscription.history_start,
        )
        await serve_subscription(
            subscription,
            partial(_read_messages, conversation),
            name=f"conversation {conversation.id}: socket",
        )


def _unknown_event(event_id: str) -> ApiError:
    return ApiError(400, f"after_event_id is not an event of this conversation: {event_id}")


async def _read_messages(conversation: Conversation, socket_scope: trio.CancelScope) -> None:
    """Each inbound frame is a message, handled like `POST .../events` with run=true."""
    try:
        async for request, _ in SEED_MESSAGES.messages():
            try:
                await conversation.send_message(sdk_bridge.to_message(request.content), run=True)
            except ApiError as error:
                await _send_error(error.status, error.detail)
            except Exception:
                log.exception("conversation %s: a socket message failed", conversation.id)
                await _send_error(500, "Internal Server Error")
    finally:
        socket_scope.cancel()  # the client went away: stop writing too


async def _send_error(code: int, detail: object) -> None:
    await websocket.send(json.dumps({"type": "error", "code": code, "detail": detail}))


SEED_MESSAGES = Dialect(SendMessageRequest, _send_error)
