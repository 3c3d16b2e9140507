"""The workspace API's shell commands: `/api/bash/...`, `/sockets/bash-events`, and the same
REST routes scoped to one conversation, `/api/conversations/{id}/bash/...` (what the SDK's
`RemoteWorkspace` calls when it carries a conversation id: that conversation's working
directory is the default `cwd`, and a `cwd` outside it is a 422, as in the reference).

A thin layer over `services.commands`: commands run in the supervisor's commands nursery;
these handlers start, stop, wait for and read them. Whoever holds the session key gets a
shell on the host through these routes, as the agent has (see README, Security).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from pydantic import ValidationError
from quart import Blueprint, Response, request, websocket
from quart_schema import document_querystring, document_request

from trio_openhands.core.errors import ApiError, NotFound, ValidationFailed
from trio_openhands.core.validation import errors_from, load_json, strict_uuid
from trio_openhands.services.command_log import iso, utc_now
from trio_openhands.web.api.models import BashEventSearchQuery, ExecuteBashRequest
from trio_openhands.web.api.sockets import accept_authenticated
from trio_openhands.web.common import app, json_response, raw_json, supervisor
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body, parse_query
from trio_openhands.web.response_bodies import (
    BashEvent,
    BashEventPage,
    BashEvents,
    ClearedCount,
    Success,
)

if TYPE_CHECKING:
    from trio_openhands.services.command_log import BashEvent as LoggedBashEvent
    from trio_openhands.services.command_log import CommandLog
    from trio_openhands.services.commands import RunningCommand, ScopeKey

blueprint = Blueprint("api_bash", __name__)

GLOBAL = "/api/bash"
SCOPED = "/api/conversations/<raw_id>/bash"
SCOPE_ERRORS = (404, 422)  # an unknown conversation, or a malformed id


class Scope:
    """Whose commands a request is about, and where they run by default."""

    def __init__(self, key: ScopeKey, default_cwd: trio.Path, confined: bool) -> None:
        self.key, self.default_cwd, self.confined = key, default_cwd, confined

    @classmethod
    async def of(cls, raw_id: str | None) -> Scope:
        settings = app().settings
        if raw_id is None:
            workspace = trio.Path(settings.workspace_dir)
            await workspace.mkdir(parents=True, exist_ok=True)
            return cls(None, await workspace.absolute(), confined=False)
        conversation_id = strict_uuid(raw_id)
        if conversation_id is None:
            raise ValidationFailed.single(("path", "conversation_id"), "Input should be a UUID")
        record = await supervisor().records.find(conversation_id)  # another instance's too
        if record is None:
            raise NotFound(f"Conversation not found: {raw_id}")
        working_dir = (record.request.get("workspace") or {}).get("working_dir")
        directory = trio.Path(working_dir or settings.workspace_dir)
        await directory.mkdir(parents=True, exist_ok=True)
        return cls(conversation_id, await directory.absolute(), confined=True)

    @property
    def log(self) -> CommandLog:
        return supervisor().commands.log_of(self.key)

    async def cwd_for(self, raw: str | None) -> Path:
        if raw is None:
            return Path(self.default_cwd)
        cwd = trio.Path(self.default_cwd, raw)  # an absolute `raw` replaces the default
        resolved = await cwd.resolve()
        if self.confined and not resolved.is_relative_to(await self.default_cwd.resolve()):
            raise ValidationFailed.single(
                ("body", "cwd"), "cwd must be inside the conversation workspace"
            )
        if not await resolved.is_dir():
            raise ValidationFailed.single(("body", "cwd"), f"{cwd} is not a directory")
        return Path(cwd)


def _both(rule: str, **options: Any):
    """Register a route under /api/bash and under a conversation's /bash."""
    methods = options.pop("methods")

    def decorate(func: Any) -> Any:
        blueprint.route(GLOBAL + rule, methods=methods, **options)(func)
        blueprint.route(SCOPED + rule, methods=methods, **options)(func)
        return func

    return decorate


@_both("/bash_events/search", methods=["GET"])
@document_querystring(BashEventSearchQuery)
@responses(BashEventPage, 400, *SCOPE_ERRORS)
async def search_bash_events(raw_id: str | None = None) -> Response:
    """Bash events by kind, command, time and `order`, oldest first unless TIMESTAMP_DESC."""
    query = parse_query(BashEventSearchQuery)
    scope = await Scope.of(raw_id)
    matches = scope.log.search(
        kind=query.kind__eq,
        command_id=query.command_id__eq,
        since=query.timestamp__gte,
        until=query.timestamp__lt,
        order_above=query.order__gt,
        descending=query.sort_order == "TIMESTAMP_DESC",
    )
    started = query.page_id is None
    items: list[str] = []
    next_page_id: str | None = None
    for event in matches:
        if not started:
            started = str(event.id) == query.page_id or event.id.hex == query.page_id
            if not started:
                continue
        if len(items) == query.limit:
            next_page_id = str(event.id)
            break
        items.append(event.json)
    if not started:
        raise ApiError(400, f"Unknown page_id: {query.page_id}")
    page = '{"items":[' + ",".join(items) + '],"next_page_id":' + json.dumps(next_page_id) + "}"
    return raw_json(page)


@_both("/bash_events/<event_id>", methods=["GET"])
@responses(BashEvent, *SCOPE_ERRORS)
async def get_bash_event(event_id: str, raw_id: str | None = None) -> Response:
    scope = await Scope.of(raw_id)
    parsed = strict_uuid(event_id)
    event = scope.log.get(parsed) if parsed is not None else None
    if event is None:
        raise NotFound(f"Bash event not found: {event_id}")
    return raw_json(event.json)


@_both("/bash_events/", methods=["GET"])
@_both("/bash_events", methods=["GET"])
@responses(BashEvents, *SCOPE_ERRORS)
async def batch_get_bash_events(raw_id: str | None = None) -> Response:
    """Events by `?event_ids=` (repeated), `null` for an unknown one; at most 100."""
    ids = request.args.getlist("event_ids")
    if len(ids) > 100:
        raise ValidationFailed.single(
            ("query", "event_ids"), "List should have at most 100 items", "too_long"
        )
    scope = await Scope.of(raw_id)
    found = [scope.log.get(parsed) if (parsed := strict_uuid(i)) else None for i in ids]
    return raw_json("[" + ",".join("null" if e is None else e.json for e in found) + "]")


@_both("/bash_events", methods=["DELETE"])
@responses(ClearedCount, *SCOPE_ERRORS)
async def clear_bash_events(raw_id: str | None = None) -> Response:
    scope = await Scope.of(raw_id)
    return json_response({"cleared_count": scope.log.clear()})


@_both("/start_bash_command", methods=["POST"])
@document_request(ExecuteBashRequest)
@responses(BashEvent, *BODY, 404, 503)
async def start_bash_command(raw_id: str | None = None) -> Response:
    """Start a command and answer with its `BashCommand` once its process exists (a fork:
    milliseconds); output follows as events. A short command has often ended by the
    client's first look at the events, which spares a polling client a round."""
    scope, running = await _start_from_request(raw_id)
    await running.spawned.wait()
    logged = scope.log.get(running.id)
    assert logged is not None
    return raw_json(logged.json)


@_both("/execute_bash_command", methods=["POST"])
@document_request(ExecuteBashRequest)
@responses(BashEvent, *BODY, 404, 503)
async def execute_bash_command(raw_id: str | None = None) -> Response:
    """Run a command to its end (or its timeout); one `BashOutput` with all of its output."""
    scope, running = await _start_from_request(raw_id)
    await running.finished.wait()
    return json_response(_collected(scope.log, running.id))


async def _start_from_request(raw_id: str | None) -> tuple[Scope, RunningCommand]:
    body = await parse_body(ExecuteBashRequest)
    scope = await Scope.of(raw_id)
    return scope, _start(scope, body, await scope.cwd_for(body.cwd))


def _start(scope: Scope, body: ExecuteBashRequest, cwd: Path) -> RunningCommand:
    commands = supervisor().commands
    if commands.closed or supervisor().shutting_down:
        raise ApiError(503, "Server is shutting down")
    return commands.start(scope.key, body.command, cwd, body.timeout)


def _collected(command_log: CommandLog, command_id: uuid.UUID) -> dict[str, Any]:
    """Every output chunk of a finished command joined into its last event."""
    outputs: list[LoggedBashEvent] = sorted(
        command_log.search(kind="BashOutput", command_id=command_id),
        key=lambda e: e.order or 0,
    )
    if not outputs:  # its events were cleared meanwhile
        return {
            "kind": "BashOutput",
            "id": str(uuid.uuid4()),
            "command_id": str(command_id),
            "order": 0,
            "exit_code": -1,
            "stdout": None,
            "stderr": None,
        }
    parts = [json.loads(e.json) for e in outputs]
    final = parts[-1]
    stdout = "".join(p["stdout"] for p in parts if p.get("stdout"))
    stderr = "".join(p["stderr"] for p in parts if p.get("stderr"))
    exit_code = final.get("exit_code")
    return {
        **final,
        "stdout": stdout or None,
        "stderr": stderr or None,
        "exit_code": -1 if exit_code is None else exit_code,
    }


@_both("/bash_commands/<command_id>/stop", methods=["POST"])
@responses(Success, *SCOPE_ERRORS)
async def stop_bash_command(command_id: str, raw_id: str | None = None) -> Response:
    """Stop a command (its process group: SIGTERM, then SIGKILL) and answer once it has
    ended; a command that already ended is a success too, an unknown one a 404."""
    scope = await Scope.of(raw_id)
    parsed = strict_uuid(command_id)
    if parsed is None:
        raise ValidationFailed.single(("path", "command_id"), "Input should be a valid UUID")
    commands = supervisor().commands
    running = commands.running(parsed)
    if running is not None and running.scope == scope.key:
        await commands.stop(parsed)
    elif scope.log.get(parsed) is None:
        raise NotFound(f"Bash command not found: {command_id}")
    return json_response({"success": True})


@blueprint.websocket("/sockets/bash-events")
async def bash_events_socket() -> None:
    """Bash events live (`resend_mode=all` replays what is kept first, with no gap or
    duplicate); each frame received is an ExecuteBashRequest, started at once.

    Subscribed before the handshake is answered: a client that starts a command as soon as
    it is connected gets all of its output (nothing is sent before authentication)."""
    scope = await Scope.of(None)
    replay = websocket.args.get("resend_mode") == "all" or websocket.args.get(
        "resend_all", ""
    ).lower() in ("true", "1", "yes")
    with scope.log.subscribe(replay=replay) as subscription:
        if not await accept_authenticated():
            return
        async with trio.open_nursery() as socket_nursery:
            socket_nursery.start_soon(_read_requests, scope, socket_nursery.cancel_scope)
            async for event in subscription.frames():
                await websocket.send(event.json)
            socket_nursery.cancel_scope.cancel()
        await websocket.close(subscription.close_code or 1000)


async def _read_requests(scope: Scope, socket_scope: trio.CancelScope) -> None:
    try:
        while True:
            raw = await websocket.receive()
            try:
                data = load_json(raw, ("frame",))
                if isinstance(data, dict) and data.get("type") == "auth":  # pyright: ignore[reportUnknownMemberType]
                    continue
                body = ExecuteBashRequest.model_validate(data)
                _start(scope, body, await scope.cwd_for(body.cwd))
            except ValidationError as error:
                await _send_error("ValidationError", json.dumps(errors_from(error)))
            except (ValidationFailed, NotFound) as error:
                await _send_error(type(error).__name__, json.dumps(error.detail))
    finally:
        socket_scope.cancel()


async def _send_error(code: str, detail: str) -> None:
    """The reference's `BashError` frame: it answers this socket only."""
    frame = {
        "kind": "BashError",
        "id": str(uuid.uuid4()),
        "timestamp": iso(utc_now()),
        "code": code,
        "detail": detail,
    }
    await websocket.send(json.dumps(frame))
