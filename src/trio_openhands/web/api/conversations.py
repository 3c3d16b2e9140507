"""The reference server's `/api/conversations` routes, on the same supervisor as the seed's.

What differs from the reference on purpose (see docs/compatibility.md): the status is
live (a pause shows at once), `pause` takes effect at once like `interrupt`, an unknown
`page_id` is a 400, `initial_message.run` is honoured, and a PATCH is pushed to sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core import sdk_bridge
from trio_openhands.core.conversation import utc_now
from trio_openhands.core.errors import Conflict, NotFound, ValidationFailed
from trio_openhands.core.event_log import Transient
from trio_openhands.core.working_dirs import resolve_working_dir
from trio_openhands.stores import file_store
from trio_openhands.web.api import bridge as api_bridge
from trio_openhands.web.api.models import (
    ApiBatchQuery,
    ApiConversationSearchQuery,
    ApiCountQuery,
    ApiInfoQuery,
    ApiStartConversationRequest,
    ApiUpdateConversationRequest,
    ConfirmationPolicyRequest,
    SecurityAnalyzerRequest,
    UpdateSecretsRequest,
)
from trio_openhands.web.api.state import conversation_info, state_update_frame
from trio_openhands.web.common import app, json_response, parse_conversation_id, supervisor
from trio_openhands.web.openapi import (
    BODY,
    LOADS,
    ApiConversationInfo,
    ApiConversationPage,
    ApiConversations,
    ApiSuccessStatus,
    Count,
    FinalResponse,
    Success,
    responses,
)
from trio_openhands.web.request_parsing import parse_body, parse_query

if TYPE_CHECKING:
    import uuid

    from trio_openhands.core.conversation import Conversation, ConversationRecord

blueprint = Blueprint("api_conversations", __name__)

ALREADY_RUNNING = "Conversation already running. Wait for completion or pause first."


def info(
    record: ConversationRecord, loaded: Conversation | None, include_skills: bool = False
) -> dict[str, Any]:
    return conversation_info(
        record,
        loaded,
        conversations_dir=app().settings.conversations_dir,
        include_skills=include_skills,
    )


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


def _lookup(conversation_id: uuid.UUID) -> tuple[ConversationRecord, Conversation | None] | None:
    """The record and, if loaded, the live conversation: listing never loads one."""
    sup = supervisor()
    live = sup.loaded.get(conversation_id)
    if live is not None:
        return None if live.deleted else (live.record, live)
    record = sup.records.get(conversation_id)
    return None if record is None else (record, None)


# -- create ------------------------------------------------------------------------------


def _stored_request(
    request: ApiStartConversationRequest, agent: Any, policy: Any, analyzer: Any
) -> dict[str, Any]:
    """What the record keeps: enough to describe the conversation without loading it, in
    both dialects (`llm`/`tools` are what the seed's ConversationInfo shows). No secrets."""
    agent_json: dict[str, Any] = agent.model_dump(mode="json")  # the api_key is redacted
    llm = {k: v for k, v in agent_json["llm"].items() if k != "api_key" and v is not None}
    policy_json = api_bridge.redacted_json(policy) or {"kind": "NeverConfirm"}
    return {
        "dialect": "api",
        "agent": agent_json,
        "llm": llm,
        "has_api_key": bool(agent.llm.api_key),
        "tools": [{"name": tool.name, "params": tool.params} for tool in agent.tools],
        "mcp_config": agent_json.get("mcp_config") or {},
        "agent_context": agent_json.get("agent_context"),
        "workspace": {"working_dir": request.workspace.working_dir},  # resolved already
        "max_iterations": request.max_iterations,
        "stuck_detection": request.stuck_detection,
        "confirmation_policy": policy_json,
        "confirmation_mode": policy_json.get("kind") == "AlwaysConfirm",
        "security_analyzer": api_bridge.redacted_json(analyzer),
        "tool_module_qualnames": request.tool_module_qualnames,
        "client_tools": [],
    }


def _refuse_unsupported(request: ApiStartConversationRequest) -> None:
    unsupported = {
        "agent_settings": request.agent_settings,
        "agent_profile_id": request.agent_profile_id,
        "plugins": request.plugins,
        "hook_config": request.hook_config,
        "client_tools": request.client_tools,
    }
    for field, value in unsupported.items():
        if value:
            raise ValidationFailed.single(
                ("body", field), f"`{field}` is not supported by this server", "not_supported"
            )
    if request.agent is None:
        raise ValidationFailed.single(("body", "agent"), "Field required", "missing")


@blueprint.post("/api/conversations")
@document_request(ApiStartConversationRequest)
@responses({200: ApiConversationInfo, 201: ApiConversationInfo}, *BODY, 503)
async def start_conversation() -> Response:
    """201 with the new conversation; 200 with the existing one when `conversation_id`
    names a conversation that exists (nothing is changed then)."""
    request = await parse_body(ApiStartConversationRequest)
    _refuse_unsupported(request)
    request.workspace.working_dir = await resolve_working_dir(
        request.workspace.working_dir, app().settings
    )
    assert request.agent is not None
    sup = supervisor()
    if request.conversation_id is not None and (found := _lookup(request.conversation_id)):
        return json_response(info(*found), 200)
    await app().sdk_loader.wait_ready()
    agent = await trio.to_thread.run_sync(
        api_bridge.build_agent,
        request.agent,
        app().settings.llm_api_key,
        request.tool_module_qualnames,
    )
    policy = (
        api_bridge.build_confirmation_policy(
            request.confirmation_policy, ("body", "confirmation_policy")
        )
        if request.confirmation_policy
        else None
    )
    analyzer = api_bridge.build_security_analyzer(
        request.security_analyzer, ("body", "security_analyzer")
    )
    secrets = api_bridge.build_secrets(request.secrets, ("body", "secrets"))
    message = (
        sdk_bridge.to_message(request.initial_message.content) if request.initial_message else None
    )
    conversation, created = await sup.create_with_agent(
        request.conversation_id,
        agent,
        _stored_request(request, agent, policy, analyzer),
        title=request.title,
        tags=request.tags,
    )
    if created:
        if policy is not None:
            await conversation.set_confirmation_policy(policy)
        if analyzer is not None:
            await conversation.set_security_analyzer(analyzer)
        if secrets:
            await conversation.update_secrets(secrets)
        if message is not None and request.initial_message is not None:
            await conversation.send_message(message, run=request.initial_message.run)
    return json_response(info(conversation.record, conversation), 201 if created else 200)


# -- read ----------------------------------------------------------------------------------


@blueprint.get("/api/conversations/search")
@document_querystring(ApiConversationSearchQuery)
@responses(ApiConversationPage, 400, 422)
async def search_conversations() -> Response:
    """`next_page_id` is the dashless id of the next page's first item; an unknown
    `page_id` is a 400 (the reference silently starts over)."""
    query = parse_query(ApiConversationSearchQuery)
    sup = supervisor()
    page, next_page_id = sup.page_of_records(
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
        sum(1 for r in supervisor().list_records() if query.status in (None, r.status))
    )


@blueprint.get("/api/conversations")
@document_querystring(ApiBatchQuery)
@responses(ApiConversations, 422)
async def batch_get_conversations() -> Response:
    query = parse_query(ApiBatchQuery, frozenset({"ids"}))
    items: list[dict[str, Any] | None] = []
    for index, raw in enumerate(query.ids):
        found = _lookup(parse_conversation_id(raw, f"ids[{index}]"))
        items.append(None if found is None else info(*found, query.include_skills))
    return json_response(items)


@blueprint.get("/api/conversations/<raw_id>")
@document_querystring(ApiInfoQuery)
@responses(ApiConversationInfo, 404, 422)
async def get_conversation(raw_id: str) -> Response:
    query = parse_query(ApiInfoQuery)
    conversation_id = parse_conversation_id(raw_id)
    found = _lookup(conversation_id)
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
    found = _lookup(conversation_id)
    if found is None:
        raise NotFound(f"Conversation not found: {conversation_id}")
    record, live = found
    changes = request.model_dump(exclude_unset=True, exclude_none=True)
    if "title" in changes:
        record.title = changes["title"]
    if "tags" in changes:
        record.tags = changes["tags"]
    record.updated_at = utc_now()
    if live is not None:
        await supervisor().save(live)
        for key, value in changes.items():
            live.log.publish(Transient(state_update_frame(key, value)))
    else:
        settings = app().settings
        await file_store.write_meta(settings.conversations_dir, record.id.hex, record.to_json())
    return success()


@blueprint.delete("/api/conversations/<raw_id>")
@responses(Success, *LOADS)
async def delete_conversation(raw_id: str) -> Response:
    """Stops any run, closes the conversation's sockets (4004) and removes its files."""
    await supervisor().delete(parse_conversation_id(raw_id))
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
    """Stops the agent at once (an LLM call in flight is aborted); the answer carries
    the status after the pause, and so does every read from then on."""
    conversation = await loaded(raw_id)
    await conversation.pause()
    return success(conversation)


@blueprint.post("/api/conversations/<raw_id>/interrupt")
@responses(ApiSuccessStatus, *LOADS)
async def interrupt_conversation(raw_id: str) -> Response:
    """The same as pause here: both abort the step in flight."""
    return await pause_conversation(raw_id)


@blueprint.post("/api/conversations/<raw_id>/secrets")
@document_request(UpdateSecretsRequest)
@responses(Success, *BODY, *LOADS)
async def update_secrets(raw_id: str) -> Response:
    request = await parse_body(UpdateSecretsRequest)
    conversation = await loaded(raw_id)
    await conversation.update_secrets(
        api_bridge.build_secrets(request.secrets, ("body", "secrets"))
    )
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
