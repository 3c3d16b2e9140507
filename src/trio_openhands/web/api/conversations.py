"""The reference server's `/api/conversations` routes, on the same supervisor as the seed's.

What differs from the reference on purpose (see docs/compatibility.md): the status is
live (a pause shows at once), `pause` takes effect at once like `interrupt`, an unknown
`page_id` is a 400, `initial_message.run` is honoured, and a PATCH is logged as state
updates.
"""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core import autotitle, sdk_bridge
from trio_openhands.core.conversation_record import utc_now
from trio_openhands.core.errors import ApiError, Conflict, NotFound, ValidationFailed
from trio_openhands.core.working_dirs import resolve_working_dir
from trio_openhands.services import worktrees
from trio_openhands.services.errors import ServiceError
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
from trio_openhands.web.api.settings import load_profile_llm
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
    request: ApiStartConversationRequest,
    agent: Any,
    policy: Any,
    analyzer: Any,
    hook_config: dict[str, Any] | None,
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
        "client_tools": request.client_tools,
        "parent_conversation_id": (
            str(request.parent_conversation_id) if request.parent_conversation_id else None
        ),
        "autotitle": request.autotitle,
        "hook_config": hook_config,
    }


def _refuse_unsupported(request: ApiStartConversationRequest) -> None:
    unsupported = {
        "agent_profile_id": request.agent_profile_id,
        "plugins": request.plugins,
        "agent_launch_additions": request.agent_launch_additions,
    }
    for field, value in unsupported.items():
        if value:
            raise ValidationFailed.single(
                ("body", field), f"`{field}` is not supported by this server", "not_supported"
            )
    if request.agent is None and request.agent_settings is None:
        raise ValidationFailed.single(
            ("body", "agent"), "One of `agent` or `agent_settings` is required", "missing"
        )


async def _check_parent(request: ApiStartConversationRequest) -> None:
    """The parent must exist and share the child's working directory, as the reference's."""
    if request.parent_conversation_id is None:
        return
    found = _lookup(request.parent_conversation_id)
    loc = ("body", "parent_conversation_id")
    if found is None:
        raise ValidationFailed.single(loc, "No such conversation", "not_found")
    parent_dir = (found[0].request.get("workspace") or {}).get("working_dir")
    if parent_dir != request.workspace.working_dir:
        raise ValidationFailed.single(loc, "The parent works in another working directory")


async def _make_worktree(
    request: ApiStartConversationRequest, conversation_hex: str
) -> Path | None:
    """`worktree` inside a repository: a worktree of the conversation's own, where it then
    works (services/worktrees.py); outside one nothing changes, as in the reference."""
    if not request.worktree:
        return None
    working_dir = Path(request.workspace.working_dir)
    repo = await worktrees.repository_of(working_dir)
    if repo is None:
        return None
    conversations_dir = app().settings.conversations_dir
    try:
        inside = await worktrees.create(repo, working_dir, conversations_dir, conversation_hex)
    except ServiceError as error:
        if error.status == 422:
            raise ValidationFailed.single(("body", "worktree"), error.detail) from None
        raise ApiError(error.status, error.detail) from None
    request.workspace.working_dir = str(inside)
    return repo


async def _build_agent(request: ApiStartConversationRequest) -> Any:
    """The client's `agent`, or one the SDK builds from its `agent_settings`; with its
    `client_tools`. Secrets sent encrypted are decrypted with the server secret."""
    cipher = await app().settings_store.cipher() if request.secrets_encrypted else None
    key = app().settings.llm_api_key
    qualnames = request.tool_module_qualnames
    if request.agent is not None:
        build = partial(api_bridge.build_agent, request.agent, key, qualnames, cipher)
    else:
        assert request.agent_settings is not None
        build = partial(
            api_bridge.build_agent_from_settings, request.agent_settings, key, qualnames, cipher
        )
    agent = await trio.to_thread.run_sync(build)
    if request.client_tools:
        agent = await trio.to_thread.run_sync(
            api_bridge.add_client_tools, agent, request.client_tools
        )
    return agent


def _worktree_top(request: ApiStartConversationRequest, repo: Path) -> str:
    """The worktree's own folder (the working directory may lie deeper inside it)."""
    inside = Path(request.workspace.working_dir)
    while inside.name != repo.name or inside.parent.parent.name != worktrees.WORKTREES_DIR:
        inside = inside.parent
    return str(inside)


async def _title_llm(request: ApiStartConversationRequest) -> Any:
    """`title_llm_profile`'s LLM, or None (the agent's): a profile that does not load
    falls back to the agent's LLM, as in the reference."""
    if not request.title_llm_profile:
        return None
    try:
        return await load_profile_llm(request.title_llm_profile)
    except ApiError:
        return None


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
    sup = supervisor()
    if request.conversation_id is not None and (found := _lookup(request.conversation_id)):
        return json_response(info(*found), 200)
    await _check_parent(request)
    await app().sdk_loader.wait_ready()
    agent = await _build_agent(request)
    secrets_cipher = await app().settings_store.cipher() if request.secrets_encrypted else None
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
    secrets = api_bridge.build_secrets(request.secrets, ("body", "secrets"), secrets_cipher)
    hook_config = api_bridge.build_hook_config(request.hook_config, ("body", "hook_config"))
    title_llm = await _title_llm(request)
    conversation_id = request.conversation_id or uuid.uuid4()
    repo = await _make_worktree(request, conversation_id.hex)
    message = (
        sdk_bridge.to_message(request.initial_message.content) if request.initial_message else None
    )
    stored = _stored_request(request, agent, policy, analyzer, hook_config)
    if repo is not None:
        stored["worktree"] = {"repository": str(repo), "top": _worktree_top(request, repo)}
    try:
        conversation, created = await sup.create_with_agent(
            conversation_id, agent, stored, title=request.title, tags=request.tags
        )
    except BaseException:
        if repo is not None:
            with trio.CancelScope(shield=True):
                await worktrees.remove(repo, Path(stored["worktree"]["top"]))
        raise
    if created:
        if request.autotitle and not request.title and conversation.nursery is not None:
            conversation.nursery.start_soon(
                autotitle.title_after_first_message,
                conversation,
                partial(_set_title, conversation),
                title_llm,
            )
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
    await _change_record(*found, request.model_dump(exclude_unset=True, exclude_none=True))
    return success()


async def _change_record(
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


async def _set_title(conversation: Conversation, title: str) -> None:
    await _change_record(conversation.record, conversation, {"title": title})


@blueprint.delete("/api/conversations/<raw_id>")
@responses(Success, *LOADS)
async def delete_conversation(raw_id: str) -> Response:
    """Stops any run, closes the conversation's sockets (4004) and removes its files (and
    its git worktree, if it was given one)."""
    conversation_id = parse_conversation_id(raw_id)
    found = _lookup(conversation_id)
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
