"""`WS /sockets/events/{id}`: the reference server's event socket, as the SDK client uses it.

Order of frames: a `full_state` snapshot first (the client waits for it to call itself
connected), then the requested history, then live events and state updates, and after
every run a `full_state` snapshot following the run's last event and its settled status
(the client's blocking `run()` returns on it).

Authentication, when the server has keys: the `X-Session-API-Key` header or the
`session_api_key` query parameter (a wrong one is a 403 before accepting), or else the
client's first frame, `{"type": "auth", "session_api_key": KEY}`, within AUTH_TIMEOUT.
Later auth frames are ignored; any other frame is a user message, sent and run.

History: `resend_mode=all` (or the older `resend_all=true`) replays the whole log,
`resend_mode=since&after_timestamp=ISO` the events stamped at or after that time,
`after_event_id=ID` what followed that event. The subscription starts at the exact point
the history ends, so there is neither a gap nor a duplicate between the two.

Close codes: 4001 authentication failed and 4004 no such conversation, or deleted (the
client gives up on these); 1001 server shutting down, 1013 fell `subscriber_buffer`
frames behind (the client reconnects and resyncs over REST); 1008 bad query parameters.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, websocket

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ApiError, NotFound, ValidationFailed
from trio_openhands.core.event_log import (
    CLOSE_CONVERSATION_DELETED,
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN_LATER,
    Transient,
)
from trio_openhands.core.validation import load_json, strict_uuid
from trio_openhands.stores.conversation_store import OwnedElsewhere
from trio_openhands.web.api.models import ApiSendMessageRequest
from trio_openhands.web.api.state import full_state_frame
from trio_openhands.web.common import app, supervisor
from trio_openhands.web.followed_socket import serve_followed_socket, stored_seq_of
from trio_openhands.web.frame_writer import serve_subscription
from trio_openhands.web.security import API_KEY_HEADER, key_is_valid
from trio_openhands.web.socket_messages import Dialect

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.event_log import Subscription

log = logging.getLogger(__name__)
blueprint = Blueprint("api_sockets", __name__)

AUTH_TIMEOUT = 10.0  # seconds, as the reference
CLOSE_AUTH_FAILED = 4001
CLOSE_POLICY_VIOLATION = 1008


class BadQuery(Exception):
    pass


async def accept_authenticated() -> bool:
    """Accept the socket if its key is right (header, query, or the first frame when the
    server has keys); a wrong key in the header or query is a 403 before accepting, a
    wrong or missing first frame a close with 4001 (then False)."""
    keys = app().settings.session_api_keys
    offered = websocket.headers.get(API_KEY_HEADER) or websocket.args.get("session_api_key")
    if keys and offered is not None and not key_is_valid(offered, keys):
        raise ApiError(403, "Invalid session API key")
    await websocket.accept()
    if keys and offered is None and not await _authenticated_by_first_frame(keys):
        await websocket.close(CLOSE_AUTH_FAILED, "Authentication failed")
        return False
    return True


@blueprint.websocket("/sockets/events/<raw_id>")
async def events_socket(raw_id: str) -> None:
    if not await accept_authenticated():
        return
    if (conversation_id := strict_uuid(raw_id)) is None:
        await websocket.close(CLOSE_CONVERSATION_DELETED, "Conversation not found")
        return
    try:
        conversation = await supervisor().get(conversation_id)
        if conversation.deleted:
            raise NotFound(raw_id)
    except OwnedElsewhere:  # another instance runs it: follow it from the shared store
        await _follow_from_store(conversation_id)
        return
    except NotFound:
        await websocket.close(CLOSE_CONVERSATION_DELETED, "Conversation not found")
        return
    except ApiError as error:  # 503 while shutting down: the client may come back
        await websocket.close(CLOSE_GOING_AWAY, str(error.detail))
        return
    try:
        after_seq = _history_start(conversation)
    except BadQuery as error:
        await websocket.close(CLOSE_POLICY_VIOLATION, str(error))
        return
    await _stream(conversation, after_seq, app().settings.conversations_dir)


async def _follow_from_store(conversation_id: uuid.UUID) -> None:
    args = websocket.args
    after_seq: int | None = None
    if after_event_id := args.get("after_event_id"):
        after_seq = await stored_seq_of(conversation_id, after_event_id)
        if after_seq is None:
            await websocket.close(
                CLOSE_POLICY_VIOLATION, f"Unknown after_event_id: {after_event_id}"
            )
            return
    elif args.get("resend_mode") == "all" or args.get("resend_all", "").lower() in (
        "true",
        "1",
        "yes",
    ):
        after_seq = -1
    await serve_followed_socket(conversation_id, API_MESSAGES, after_seq=after_seq, accepted=True)


async def _authenticated_by_first_frame(keys: tuple[str, ...]) -> bool:
    with trio.move_on_after(AUTH_TIMEOUT):
        raw = await websocket.receive()
        try:
            frame = load_json(raw, ("frame",))
        except ValidationFailed:
            return False
        if not isinstance(frame, dict) or frame.get("type") != "auth":  # pyright: ignore[reportUnknownMemberType]
            return False
        candidate = frame.get("session_api_key")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return isinstance(candidate, str) and key_is_valid(candidate, keys)
    return False


def _history_start(conversation: Conversation) -> int | None:
    """The `after_seq` to subscribe with: None for no history, -1 for all of it."""
    args = websocket.args
    if after_event_id := args.get("after_event_id"):
        seq = conversation.log.seq_of(after_event_id)
        if seq is None:
            raise BadQuery(f"Unknown after_event_id: {after_event_id}")
        return seq
    mode = args.get("resend_mode")
    if mode == "all" or args.get("resend_all", "").lower() in ("true", "1", "yes"):
        return -1
    if mode == "since":
        since = _naive_local(args.get("after_timestamp", ""))
        first = next((e.seq for e in conversation.log.events if e.timestamp >= since), None)
        return len(conversation.log) - 1 if first is None else first - 1
    if mode is not None:
        raise BadQuery(f"Unknown resend_mode: {mode}")
    return None


def _naive_local(raw: str) -> datetime:
    """Event times are the SDK's naive local time; an aware time is converted to it."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"after_timestamp is not an ISO 8601 time: {raw!r}") from None
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone().replace(tzinfo=None)
    except OverflowError:
        raise BadQuery(f"after_timestamp is out of range: {raw!r}") from None


async def _stream(
    conversation: Conversation, after_seq: int | None, conversations_dir: Path
) -> None:
    with conversation.log.subscribe(after_seq) as subscription:
        # The snapshot is taken at the subscription's cut: what follows is what changed.
        snapshot = full_state_frame(conversation, conversations_dir)

        def after_run() -> None:
            try:
                frame = Transient(full_state_frame(conversation, conversations_dir))
            except Exception:  # a listener must not raise into the run task
                log.exception("conversation %s: no full_state snapshot", conversation.id)
                return
            _offer(subscription, frame)

        conversation.run_end_listeners.add(after_run)
        try:
            await websocket.send(snapshot)
            await serve_subscription(
                subscription,
                partial(_read_frames, conversation),
                name=f"conversation {conversation.id}: /sockets/events",
            )
        finally:
            conversation.run_end_listeners.discard(after_run)


def _offer(subscription: Subscription, frame: Transient) -> None:
    """Queue a frame behind everything already queued, never waiting (as the log does)."""
    if subscription.closed:
        return
    try:
        subscription.send_channel.send_nowait(frame)
    except trio.WouldBlock:
        subscription.close(
            CLOSE_TRY_AGAIN_LATER, "subscriber too slow; reconnect to resync", drop_queued=True
        )
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _read_frames(conversation: Conversation, socket_scope: trio.CancelScope) -> None:
    try:
        async for message, _ in API_MESSAGES.messages():
            try:
                await conversation.send_message(sdk_bridge.to_message(message.content), run=True)
            except ApiError as error:
                await _send_error(error.status, error.detail)
    finally:
        socket_scope.cancel()  # the client went away: stop writing too


def _is_auth_frame(data: Any) -> bool:
    """A client's `auth` frame: it authenticated already, on connecting."""
    return isinstance(data, dict) and data.get("type") == "auth"  # pyright: ignore[reportUnknownMemberType]


async def _send_error(code: int, detail: Any) -> None:
    """The reference's `ServerErrorEvent` frame; the socket stays open."""
    frame = {
        "kind": "ServerErrorEvent",
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now().isoformat(),
        "source": "environment",
        "code": code,
        "detail": detail,
    }
    await websocket.send(json.dumps(frame))


API_MESSAGES = Dialect(ApiSendMessageRequest, _send_error, skip=_is_auth_frame)
