"""The seed's event API: search, get, batch get, send a message, answer a confirmation."""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ApiError, Conflict, NotFound, ValidationFailed
from trio_openhands.core.models import (
    ConfirmationResponse,
    EventBatchQuery,
    EventSearchQuery,
    SendMessageRequest,
)
from trio_openhands.web.common import (
    json_response,
    page_json,
    parse_conversation_id,
    raw_json,
    supervisor,
)
from trio_openhands.web.openapi import BODY, LOADS, responses
from trio_openhands.web.request_parsing import parse_body, parse_query
from trio_openhands.web.response_bodies import Event, EventPage, Events, SuccessStatus

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from trio_openhands.core.event_log import LoggedEvent

blueprint = Blueprint("events", __name__)

# A search page stops before the event that would take it past this many bytes of events
# (but always holds one, however big), so that a page of big messages stays a bounded
# response; `next_page_id` then points at the event left out.
MAX_PAGE_BYTES = 4 * 1024 * 1024


def _local_naive(raw: str, field: str) -> datetime:
    """Event timestamps are the SDK's naive local time; tz-aware filters are converted."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed.single(
            ("query", field), "Input should be an ISO 8601 datetime", "datetime_parsing"
        ) from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone().replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 here
            raise ValidationFailed.single(
                ("query", field),
                "Datetime is out of range in the server's time zone",
                "datetime_range",
            ) from None
    return value


class EventFilter:
    """The search filters of a query (both dialects' search and count)."""

    def __init__(self, query: EventSearchQuery) -> None:
        self.kind = query.kind.rsplit(".", 1)[-1] if query.kind else None
        self.source = query.source
        self.body = query.body.lower() if query.body else None
        gte, lt = query.timestamp__gte, query.timestamp__lt
        self.since = _local_naive(gte, "timestamp__gte") if gte else None
        self.until = _local_naive(lt, "timestamp__lt") if lt else None

    async def select(self, events: Iterable[LoggedEvent]) -> AsyncGenerator[LoggedEvent]:
        """The matching events, in order. A big message's text is searched in a worker
        thread (it is lower-cased then, a chunk at a time); everything else right here."""
        kind, source, body = self.kind, self.source, self.body
        since, until = self.since, self.until
        for event in events:
            if not (
                (kind is None or event.kind == kind)
                and (source is None or event.source == source)
                and (since is None or event.timestamp >= since)
                and (until is None or event.timestamp < until)
            ):
                continue
            if body is not None:
                if not event.search_is_slow:
                    if not event.mentions(body):
                        continue
                elif not await trio.to_thread.run_sync(event.mentions, body):
                    continue
            yield event


def event_filter(query: EventSearchQuery) -> EventFilter:
    return EventFilter(query)


@blueprint.get("/conversations/<raw_id>/events/search")
@blueprint.get("/conversations/<raw_id>/events/search/")
@document_querystring(EventSearchQuery)
@responses(EventPage, 400, *LOADS)
async def search_events(raw_id: str) -> Response:
    """Ordered by sequence number; `next_page_id` is the first event of the next page, so
    paging neither skips nor repeats while a run appends. A page holds at most `limit`
    events and MAX_PAGE_BYTES of them (at least one event)."""
    query = parse_query(EventSearchQuery)
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    event_log = conversation.log
    descending = query.sort_order == "TIMESTAMP_DESC"
    if query.page_id is not None:
        start = event_log.seq_of(query.page_id)
        if start is None:
            raise ApiError(400, f"Unknown page_id: {query.page_id}")
    else:
        start = len(event_log) - 1 if descending else 0
    page: list[str] = []
    size = 0
    next_page_id: str | None = None
    selected = event_filter(query).select(event_log.iter_from(start, descending))
    async with aclosing(selected) as found:
        async for event in found:
            if len(page) == query.limit or (page and size + event.size > MAX_PAGE_BYTES):
                next_page_id = event.id
                break
            page.append(event.json)
            size += event.size
    return page_json(page, next_page_id)


@blueprint.get("/conversations/<raw_id>/events")
@blueprint.get("/conversations/<raw_id>/events/")
@document_querystring(EventBatchQuery)
@responses(Events, *LOADS)
async def batch_get_events(raw_id: str) -> Response:
    query = parse_query(EventBatchQuery, frozenset({"event_ids"}))
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    texts = []
    for event_id in query.event_ids:
        event = conversation.log.get(event_id)
        texts.append("null" if event is None else event.json)
    return raw_json("[" + ",".join(texts) + "]")


@blueprint.get("/conversations/<raw_id>/events/<event_id>")
@blueprint.get("/conversations/<raw_id>/events/<event_id>/")
@responses(Event, *LOADS)
async def get_event(raw_id: str, event_id: str) -> Response:
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    event = conversation.log.get(event_id)
    if event is None:
        raise NotFound(f"Event not found: {event_id}")
    return raw_json(event.json)


@blueprint.post("/conversations/<raw_id>/events")
@blueprint.post("/conversations/<raw_id>/events/")
@document_request(SendMessageRequest)
@responses(SuccessStatus, *BODY, *LOADS)
async def send_message(raw_id: str) -> Response:
    conversation_id = parse_conversation_id(raw_id)
    request = await parse_body(SendMessageRequest)
    conversation = await supervisor().get(conversation_id)
    await conversation.send_message(sdk_bridge.to_message(request.content), run=request.run)
    return json_response({"success": True, "status": conversation.status})


@blueprint.post("/conversations/<raw_id>/events/respond_to_confirmation")
@blueprint.post("/conversations/<raw_id>/events/respond_to_confirmation/")
@document_request(ConfirmationResponse)
@responses(SuccessStatus, 409, *BODY, *LOADS)
async def respond_to_confirmation(raw_id: str) -> Response:
    conversation_id = parse_conversation_id(raw_id)
    request = await parse_body(ConfirmationResponse)
    conversation = await supervisor().get(conversation_id)
    sdk = conversation.sdk
    if (
        conversation.running
        and sdk is not None
        and sdk_bridge.status_of(sdk) == "waiting_for_confirmation"
    ):
        # The SDK already waits (its status frame may have reached the client) while the
        # run task winds down, and the status reads `running` until it has: wait for it.
        await conversation.wait_run_finished()
    if conversation.status != "waiting_for_confirmation":
        raise Conflict("No action is waiting for confirmation")
    await conversation.respond_to_confirmation(request.accept, request.reason)
    return json_response({"success": True, "status": conversation.status})
