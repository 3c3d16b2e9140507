"""The seed's conversation API: start, get, batch get, search, pause, resume, delete.

Paths work with and without a trailing slash (no redirect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core.errors import ApiError
from trio_openhands.core.models import (
    BatchQuery,
    ConversationSearchQuery,
    StartConversationRequest,
)
from trio_openhands.core.sdk_bridge import REDACTED, metrics_of
from trio_openhands.core.seed_create import create_seed_conversation
from trio_openhands.core.working_dirs import resolve_working_dir
from trio_openhands.web.common import app, json_response, parse_conversation_id, supervisor
from trio_openhands.web.openapi import BODY, LOADS, responses
from trio_openhands.web.request_parsing import parse_body, parse_query
from trio_openhands.web.response_bodies import (
    ConversationInfo,
    ConversationPage,
    Conversations,
    Success,
    SuccessStatus,
)

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.conversation_record import ConversationRecord

blueprint = Blueprint("conversations", __name__)


def conversation_info(record: ConversationRecord, loaded: Conversation | None) -> dict[str, Any]:
    """ConversationInfo: what was asked for (the key redacted) and the live status."""
    request = record.request
    llm = dict(request.get("llm") or {})
    if request.get("has_api_key"):
        llm["api_key"] = REDACTED
    status = loaded.status if loaded is not None else record.status
    return {
        "id": str(record.id),
        "status": status,
        "title": record.title,
        "tags": record.tags,
        "llm": llm,
        "tools": request.get("tools", []),
        "mcp_config": request.get("mcp_config", {}),
        "agent_context": request.get("agent_context"),
        "confirmation_mode": request.get("confirmation_mode", False),
        "workspace": request.get("workspace"),
        "max_iterations": request.get("max_iterations"),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "metrics": metrics_of(loaded.sdk)
        if loaded is not None and loaded.sdk is not None
        else record.metrics,
        "event_count": len(loaded.log) if loaded is not None else None,
        "waiting_for_run_slot": loaded.waiting_for_slot if loaded is not None else False,
    }


def info_of(conversation: Conversation) -> dict[str, Any]:
    return conversation_info(conversation.record, conversation)


@blueprint.post("/conversations")
@blueprint.post("/conversations/")
@document_request(StartConversationRequest)
@responses({201: ConversationInfo}, *BODY, 503)
async def start_conversation() -> Response:
    request = await parse_body(StartConversationRequest)
    if request.workspace is not None:
        request.workspace.working_dir = await resolve_working_dir(
            request.workspace.working_dir, app().settings
        )
    conversation = await create_seed_conversation(supervisor(), request)
    return json_response(info_of(conversation), 201)


@blueprint.get("/conversations")
@blueprint.get("/conversations/")
@document_querystring(BatchQuery)
@responses(Conversations, 422)
async def batch_get_conversations() -> Response:
    query = parse_query(BatchQuery, frozenset({"ids"}))
    sup = supervisor()
    items: list[dict[str, Any] | None] = []
    for index, raw in enumerate(query.ids):
        conversation_id = parse_conversation_id(raw, f"ids[{index}]")
        record = sup.records.get(conversation_id)
        items.append(
            None if record is None else conversation_info(record, sup.loaded.get(conversation_id))
        )
    return json_response(items)


@blueprint.get("/conversations/search")
@blueprint.get("/conversations/search/")
@document_querystring(ConversationSearchQuery)
@responses(ConversationPage, 400, 422)
async def search_conversations() -> Response:
    """Pages start at `page_id` (the id of the first item of the page, inclusive)."""
    query = parse_query(ConversationSearchQuery)
    sup = supervisor()
    page, next_page_id = sup.records.page(
        status=query.status, sort_order=query.sort_order, page_id=query.page_id, limit=query.limit
    )
    items = [conversation_info(r, sup.loaded.get(r.id)) for r in page]
    return json_response({"items": items, "next_page_id": next_page_id})


@blueprint.get("/conversations/<raw_id>")
@blueprint.get("/conversations/<raw_id>/")
@responses(ConversationInfo, 404, 422)
async def get_conversation(raw_id: str) -> Response:
    conversation_id = parse_conversation_id(raw_id)
    sup = supervisor()
    if conversation_id in sup.loaded:
        return json_response(info_of(sup.loaded[conversation_id]))
    record = sup.records.get(conversation_id)
    if record is None:
        raise ApiError(404, f"Conversation not found: {conversation_id}")
    return json_response(conversation_info(record, None))


@blueprint.post("/conversations/<raw_id>/pause")
@blueprint.post("/conversations/<raw_id>/pause/")
@responses(SuccessStatus, *LOADS)
async def pause_conversation(raw_id: str) -> Response:
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    await conversation.pause()
    return json_response({"success": True, "status": conversation.status})


@blueprint.post("/conversations/<raw_id>/resume")
@blueprint.post("/conversations/<raw_id>/resume/")
@responses(SuccessStatus, *LOADS)
async def resume_conversation(raw_id: str) -> Response:
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    conversation.resume()
    return json_response({"success": True, "status": conversation.status})


@blueprint.delete("/conversations/<raw_id>")
@blueprint.delete("/conversations/<raw_id>/")
@responses(Success, *LOADS)
async def delete_conversation(raw_id: str) -> Response:
    await supervisor().delete(parse_conversation_id(raw_id))
    return json_response({"success": True})
