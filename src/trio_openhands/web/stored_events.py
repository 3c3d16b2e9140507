"""Event reads on an instance that does not run the conversation, from the store.

With the shared store, both dialects' `GET .../events/search`, `.../events/{event_id}` and
`.../events?event_ids=` (and /api's `.../events/count`) are answered from the `events`
table on any instance that does not hold the conversation: the same filters, pages and
bytes as the owner's in-memory log (each event's JSON as the owner logged it), and they
keep answering while a dead owner's lease runs out. The owner itself answers from its log
(web/seed/events.py, web/api/events.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_openhands.core.errors import ApiError, NotFound
from trio_openhands.core.models import EventBatchQuery, EventSearchQuery
from trio_openhands.stores.postgres.events import EventQuery, UnknownEvent
from trio_openhands.web.api import events as api_events
from trio_openhands.web.common import json_response, page_json, raw_json
from trio_openhands.web.request_parsing import parse_query
from trio_openhands.web.seed.events import MAX_PAGE_BYTES, event_filter

if TYPE_CHECKING:
    import uuid

    from quart import Response

    from trio_openhands.stores.postgres.conversation_store import PostgresStore

# The routes answered here, by rule (the /api dialect's are the same under /api).
SEARCH = "/conversations/<raw_id>/events/search"
ONE = "/conversations/<raw_id>/events/<event_id>"
BATCH = "/conversations/<raw_id>/events"
COUNT = "/conversations/<raw_id>/events/count"
RULES = frozenset({SEARCH, ONE, BATCH, *(f"/api{rule}" for rule in (SEARCH, ONE, BATCH, COUNT))})


async def answer(
    store: PostgresStore, rule: str, conversation_id: uuid.UUID, event_id: str | None
) -> Response:
    """The route's answer from the store (404 for an unknown conversation or event)."""
    api = rule.startswith("/api/")
    if await store.read_record(conversation_id) is None:
        raise NotFound(f"Conversation not found: {conversation_id}")
    events = store.events
    rule = rule.removeprefix("/api")
    if rule in (SEARCH, COUNT):
        query = parse_query(EventSearchQuery)
        chosen = event_filter(query)
        matching = EventQuery(chosen.kind, chosen.source, chosen.body, chosen.since, chosen.until)
        if rule == COUNT:
            return json_response(await events.count(conversation_id, matching))
        try:
            page, next_page_id = await events.search(
                conversation_id,
                matching,
                descending=query.sort_order == "TIMESTAMP_DESC",
                page_id=query.page_id,
                limit=query.limit,
                max_bytes=MAX_PAGE_BYTES,
            )
        except UnknownEvent:
            raise ApiError(400, f"Unknown page_id: {query.page_id}") from None
        return page_json([event.json for event in page], next_page_id)
    if rule == ONE:
        assert event_id is not None
        event = await events.get(conversation_id, event_id)
        if event is None:
            raise NotFound(f"Event not found: {event_id}")
        return raw_json(event.json)
    if api:
        wanted_ids = await api_events.requested_ids()
    else:
        wanted_ids = parse_query(EventBatchQuery, frozenset({"event_ids"})).event_ids
    texts = []
    for wanted in wanted_ids:
        event = await events.get(conversation_id, wanted)
        texts.append("null" if event is None else event.json)
    return raw_json("[" + ",".join(texts) + "]")
