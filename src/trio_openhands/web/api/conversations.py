"""The reference server's `/api/conversations` routes, on the same supervisor as the seed's.

What differs from the reference on purpose (see docs/compatibility.md): the status is
live (a pause shows at once), `pause` takes effect at once like `interrupt`, an unknown
`page_id` is a 400, `initial_message.run` is honoured, and a PATCH is logged as state
updates. The start (`POST /api/conversations`) is conversation_start.py's; the lookups
here serve it and the other /api route modules too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core import agent_launch
from trio_openhands.core.conversation_record import utc_now
from trio_openhands.core.errors import Conflict, NotFound
from trio_openhands.services import worktrees
from trio_openhands.stores import file_store
from trio_openhands.web.api import bridge as api_bridge
from trio_openhands.web.api.models import (
    ApiBatchQuery,
    ApiConversationSearchQuery,
    ApiCountQuery,
    ApiInfoQuery,
    ApiUpdateConversationRequest,
    ConfirmationPolicyRequest,
    SecurityAnalyzerRequest,
    UpdateSecretsRequest,
)
from trio_openhands.web.api.state import conversation_info
from trio_openhands.web.common import app, json_response, parse_conversation_id, supervisor
from trio_openhands.web.openapi import BODY, LOADS, responses
from trio_openhands.web.request_parsing import parse_body, parse_query
from trio_openhands.web.response_bodies import (
    ApiConversationInfo,
    ApiConversationPage,
    ApiConversations,
    ApiSuccessStatus,
    Count,
    FinalResponse,
    Success,
)

if TYPE_CHECKING:
    import uuid

    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.conversation_record import ConversationRecord

blueprint = Blueprint("api_conversations", __name__)

ALREADY_RUNNING = "Conversation already running. Wait for completion or pause first."


def info(
    record: ConversationRecord, loaded: Conversation | None, include_skills: bool = False
) -> dict[str, Any]:
    described = conversation_info(
        record,
        loaded,
        conversations_dir=app().settings.conversations_dir,
        include_skills=include_skills,
    )
    parent = str(record.id)
    described["sub_conversation_ids"] = [
        str(child.id)
        for child in supervisor().records.listed()
        if child.request.get("parent_conversation_id") == parent
    ]
    return described


def success(conversation: Conversation | None = None) -> Response:
    body: dict[str, Any] = {"success": True}
    if conversation is not None:
        body["execution_status"] = conversation.status
    return json_response(body)


async def loaded(raw_id: str) -> Conversation:
    """The conversation, loaded; a 404 for an unknown (or deleted) one."""
    conversation = await supervisor().get(parse_conversation_id(raw_id))
    if conversation.deleted:
        raise NotFound(f"Conversation not found: {conversation.id}")
    return conversation


def lookup(conversation_id: uuid.UUID) -> tuple[ConversationRecord, Conversation | None] | None:
    """The record and, if loaded, the live conversation: listing never loads one."""
    sup = supervisor()
    live = sup.loaded.get(conversation_id)
    if live is not None:
        return None if live.deleted else (live.record, live)
    record = sup.records.get(conversation_id)
    return None if record is None else (record, None)


# -- read ----------------------------------------------------------------------------------


@blueprint.get("/api/conversations/search")
@document_querystring(ApiConversationSearchQuery)
@responses(ApiConversationPage, 400, 422)
async def search_conversations() -> Response:
    """`next_page_id` is the dashless id of the next page's first item; an unknown
    `page_id` is a 400 (the reference silently starts over)."""
    query = parse_query(ApiConversationSearchQuery)
    sup = supervisor()
    page, next_page_id = sup.records.page(
        status=query.status, sort_order=query.sort_order, page_id=query.page_id, limit=query.limit
    )
    items = [info(r, sup.loaded.get(r.id), query.include_skills) for r in page]
    return json_response({"items": items, "next_page_id": next_page_id})


@blueprint.get("/api/conversations/count")
@document_querystring(ApiCountQuery)
@responses(Count, 422)
async def count_conversations() -> Response:
    query = parse_query(ApiCountQuery)
    return json_response(
        sum(1 for r in supervisor().records.listed() if query.status in (None, r.status))
    )


@blueprint.get("/api/conversations")
@document_querystring(ApiBatchQuery)
@responses(ApiConversations, 422)
async def batch_get_conversations() -> Response:
    query = parse_query(ApiBatchQuery, frozenset({"ids"}))
    items: list[dict[str, Any] | None] = []
    for index, raw in enumerate(query.ids):
        found = lookup(parse_conversation_id(raw, f"ids[{index}]"))
        items.append(None if found is None else info(*found, query.include_skills))
    return json_response(items)


@blueprint.get("/api/conversations/<raw_id>")
@document_querystring(ApiInfoQuery)
@responses(ApiConversationInfo, 404, 422)
async def get_conversation(raw_id: str) -> Response:
    query = parse_query(ApiInfoQuery)
    conversation_id = parse_conversation_id(raw_id)
    found = lookup(conversation_id)
    if found is None:
        raise NotFound(f"Conversation not found: {conversation_id}")
    return json_response(info(*found, query.include_skills))


@blueprint.get("/api/conversations/<raw_id>/agent_final_response")
@responses(FinalResponse, *LOADS)
async def agent_final_response(raw_id: str) -> Response:
    conversation = await loaded(raw_id)
    # Newest first, narrowed to what can answer, so only those few are parsed.
    candidates = [
        (event.kind, event.source, event.json)
        for event in conversation.log.iter_from(len(conversation.log) - 1, descending=True)
        if event.source == "agent" and event.kind in ("ActionEvent", "MessageEvent")
    ]
    return json_response({"response": api_bridge.final_response(candidates)})


# -- change --------------------------------------------------------------------------------


@blueprint.patch("/api/conversations/<raw_id>")
@document_request(ApiUpdateConversationRequest)
@responses(Success, 404, *BODY)
async def update_conversation(raw_id: str) -> Response:
    """Title and tags, persisted at once and pushed to the conversation's sockets."""
    conversation_id = parse_conversation_id(raw_id)
    request = await parse_body(ApiUpdateConversationRequest)
    found = lookup(conversation_id)
    if found is None:
        raise NotFound(f"Conversation not found: {conversation_id}")
    await change_record(*found, request.model_dump(exclude_unset=True, exclude_none=True))
    return success()


async def change_record(
    record: ConversationRecord, live: Conversation | None, changes: dict[str, Any]
) -> None:
    """Title and tags, persisted at once and pushed to the conversation's sockets."""
    if "title" in changes:
        record.title = changes["title"]
    if "tags" in changes:
        record.tags = changes["tags"]
    record.updated_at = utc_now()
    if live is not None:
        await supervisor().save(live)
        for key, value in changes.items():
            await live.log_state_update(key, value)
    else:
        settings = app().settings
        await file_store.write_meta(settings.conversations_dir, record.id.hex, record.to_json())


@blueprint.delete("/api/conversations/<raw_id>")
@responses(Success, *LOADS)
async def delete_conversation(raw_id: str) -> Response:
    """Stops any run, closes the conversation's sockets (4004) and removes its files (and
    its git worktree, if it was given one)."""
    conversation_id = parse_conversation_id(raw_id)
    found = lookup(conversation_id)
    await supervisor().delete(conversation_id)
    worktree = found[0].request.get("worktree") if found is not None else None
    if isinstance(worktree, dict):
        await worktrees.remove(Path(worktree["repository"]), Path(worktree["top"]))
    return success()


@blueprint.post("/api/conversations/<raw_id>/run")
@responses(ApiSuccessStatus, 409, *LOADS)
async def run_conversation(raw_id: str) -> Response:
    """Starts a run; 409 if one is in progress. That run is still told to look again
    before it ends, so whatever was sent before this request is never left unanswered."""
    conversation = await loaded(raw_id)
    already_running = conversation.running
    conversation.request_run()
    if already_running:
        raise Conflict(ALREADY_RUNNING)
    return success(conversation)


@blueprint.post("/api/conversations/<raw_id>/pause")
@responses(ApiSuccessStatus, *LOADS)
async def pause_conversation(raw_id: str) -> Response:
    """Stops the agent at once: a `PauseEvent`, then the LLM call in flight aborted (an
    `InterruptEvent`); the answer carries the status after the pause, and so does every
    read from then on."""
    conversation = await loaded(raw_id)
    await conversation.pause()
    return success(conversation)


@blueprint.post("/api/conversations/<raw_id>/interrupt")
@responses(ApiSuccessStatus, *LOADS)
async def interrupt_conversation(raw_id: str) -> Response:
    """Aborts the step in flight (an `InterruptEvent`), without the pause's `PauseEvent`."""
    conversation = await loaded(raw_id)
    await conversation.interrupt()
    return success(conversation)


@blueprint.post("/api/conversations/<raw_id>/secrets")
@document_request(UpdateSecretsRequest)
@responses(Success, *BODY, *LOADS)
async def update_secrets(raw_id: str) -> Response:
    request = await parse_body(UpdateSecretsRequest)
    conversation = await loaded(raw_id)
    secrets = api_bridge.build_secrets(request.secrets, ("body", "secrets"))
    # A conversation an agent profile launched keeps to the profile's `secret_refs`.
    launched = conversation.record.request.get("launched_agent_profile")
    await conversation.update_secrets(agent_launch.allowed_secrets(launched, secrets))
    return success()


@blueprint.post("/api/conversations/<raw_id>/confirmation_policy")
@document_request(ConfirmationPolicyRequest)
@responses(Success, *BODY, *LOADS)
async def set_confirmation_policy(raw_id: str) -> Response:
    request = await parse_body(ConfirmationPolicyRequest)
    conversation = await loaded(raw_id)
    policy = api_bridge.build_confirmation_policy(request.policy, ("body", "policy"))
    await conversation.set_confirmation_policy(policy)
    stored = conversation.record.request
    stored["confirmation_policy"] = api_bridge.redacted_json(policy)
    stored["confirmation_mode"] = policy.kind == "AlwaysConfirm"
    await supervisor().save(conversation)
    return success()


@blueprint.post("/api/conversations/<raw_id>/security_analyzer")
@document_request(SecurityAnalyzerRequest)
@responses(Success, *BODY, *LOADS)
async def set_security_analyzer(raw_id: str) -> Response:
    request = await parse_body(SecurityAnalyzerRequest)
    conversation = await loaded(raw_id)
    analyzer = api_bridge.build_security_analyzer(
        request.security_analyzer, ("body", "security_analyzer")
    )
    await conversation.set_security_analyzer(analyzer)
    conversation.record.request["security_analyzer"] = api_bridge.redacted_json(analyzer)
    await supervisor().save(conversation)
    return success()
