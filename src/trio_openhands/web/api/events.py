"""The reference server's `/api/conversations/{id}/events` routes, on the same event log.

Search and single reads are the seed's own handlers (one implementation of paging and
filters for both dialects: pages neither skip nor repeat while a run appends, and an
unknown `page_id` is a 400). The dialect's differences: `count`, a batch read that also
takes the reference's JSON-array body, messages whose `run` defaults to false, and a
confirmation answer that is accepted in any status.
"""

from __future__ import annotations

from contextlib import aclosing

from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.models import EventSearchQuery
from trio_openhands.core.validation import load_json
from trio_openhands.web.api.conversations import loaded, success
from trio_openhands.web.api.models import ApiConfirmationResponse, ApiSendMessageRequest
from trio_openhands.web.common import json_response, raw_json
from trio_openhands.web.openapi import BODY, LOADS, READS_BODY, responses
from trio_openhands.web.request_parsing import parse_body, parse_query
from trio_openhands.web.response_bodies import ApiSuccessStatus, Count, Event, EventPage, Events
from trio_openhands.web.seed import events

blueprint = Blueprint("api_events", __name__)

MAX_BATCH = 100


@blueprint.get("/api/conversations/<raw_id>/events/search")
@document_querystring(EventSearchQuery)
@responses(EventPage, 400, *LOADS)
async def search_events(raw_id: str) -> Response:
    """`{"items": [Event], "next_page_id"}`; `next_page_id` is the next page's first event."""
    return await events.search_events(raw_id)


@blueprint.get("/api/conversations/<raw_id>/events/count")
@document_querystring(EventSearchQuery)
@responses(Count, *LOADS)
async def count_events(raw_id: str) -> Response:
    """How many events match the search filters (paging parameters are ignored)."""
    query = parse_query(EventSearchQuery)
    conversation = await loaded(raw_id)
    count = 0
    async with aclosing(events.event_filter(query).select(conversation.log.events)) as found:
        async for _ in found:
            count += 1
    return json_response(count)


@blueprint.get("/api/conversations/<raw_id>/events/<event_id>")
@responses(Event, *LOADS)
async def get_event(raw_id: str, event_id: str) -> Response:
    return await events.get_event(raw_id, event_id)


@blueprint.get("/api/conversations/<raw_id>/events")
@responses(Events, *READS_BODY, *LOADS)
async def batch_get_events(raw_id: str) -> Response:
    """Events by id, `null` for unknown ones: ids as `?event_ids=` (repeated), or as the
    reference takes them, a JSON array in the GET body. At most 100 either way."""
    ids = await requested_ids()
    conversation = await loaded(raw_id)
    texts = []
    for event_id in ids:
        event = conversation.log.get(event_id)
        texts.append("null" if event is None else event.json)
    return raw_json("[" + ",".join(texts) + "]")


async def requested_ids() -> list[str]:
    """The batch read's event ids (the query's, else the body's), at most MAX_BATCH."""
    ids = request.args.getlist("event_ids")
    if not ids:
        raw = await request.get_data(as_text=False)
        body = load_json(raw) if raw.strip() else []
        if not isinstance(body, list) or not all(isinstance(i, str) for i in body):
            raise ValidationFailed.single(("body",), "Input should be a list of event ids")
        ids = body
    if len(ids) > MAX_BATCH:
        raise ValidationFailed.single(
            ("query", "event_ids"), f"List should have at most {MAX_BATCH} items", "too_long"
        )
    return ids


@blueprint.post("/api/conversations/<raw_id>/events")
@document_request(ApiSendMessageRequest)
@responses(ApiSuccessStatus, *BODY, *LOADS)
async def send_message(raw_id: str) -> Response:
    """A user message; with `"run": true` the agent also starts on it (default false)."""
    message_request = await parse_body(ApiSendMessageRequest)
    conversation = await loaded(raw_id)
    await conversation.send_message(
        sdk_bridge.to_message(message_request.content), run=message_request.run
    )
    return success(conversation)


@blueprint.post("/api/conversations/<raw_id>/events/respond_to_confirmation")
@document_request(ApiConfirmationResponse)
@responses(ApiSuccessStatus, *BODY, *LOADS)
async def respond_to_confirmation(raw_id: str) -> Response:
    """Accept runs the pending actions; reject records a rejection for each (the
    conversation is then idle, ready for the next message or run)."""
    answer = await parse_body(ApiConfirmationResponse)
    conversation = await loaded(raw_id)
    await conversation.respond_to_confirmation(answer.accept, answer.reason)
    return success(conversation)
