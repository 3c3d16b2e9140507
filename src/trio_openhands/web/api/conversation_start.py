"""`POST /api/conversations`: a conversation started from the reference's request.

The agent (or the SDK's, from `agent_settings`) with its client tools, confirmation policy,
security analyzer, secrets and hooks are built from the request; a git worktree of its own
if asked; the title made by an LLM after the first message if asked. A `conversation_id`
that exists answers 200 with that conversation, unchanged.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response
from quart_schema import document_request

from trio_openhands.core import agent_launch, autotitle, sdk_bridge
from trio_openhands.core.errors import ApiError, Conflict, ValidationFailed
from trio_openhands.core.working_dirs import resolve_working_dir
from trio_openhands.services import git, worktrees
from trio_openhands.services.errors import ServiceError
from trio_openhands.web.api import bridge as api_bridge
from trio_openhands.web.api.conversations import change_record, info, lookup
from trio_openhands.web.api.models import ApiStartConversationRequest
from trio_openhands.web.api.settings import load_profile_llm, read_settings
from trio_openhands.web.common import app, json_response, supervisor
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body
from trio_openhands.web.response_bodies import ApiConversationInfo

if TYPE_CHECKING:
    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.llm.meta_profile_store import MetaProfileStore
    from openhands.sdk.profiles import AgentProfileStore

    from trio_openhands.core.conversation import Conversation
    from trio_openhands.stores.settings_store import ServerSettings

log = logging.getLogger(__name__)

blueprint = Blueprint("api_conversation_start", __name__)


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
        "tool_module_qualnames": api_bridge.tool_modules(
            agent, request.tool_module_qualnames, request.client_tools
        ),
        "client_tools": request.client_tools,
        "parent_conversation_id": (
            str(request.parent_conversation_id) if request.parent_conversation_id else None
        ),
        "autotitle": request.autotitle,
        "hook_config": hook_config,
    }


def _check_sources(request: ApiStartConversationRequest) -> None:
    """Exactly one agent source, as the SDK's request says."""
    if request.agent_profile_id is not None:
        others = [name for name in ("agent", "agent_settings") if getattr(request, name)]
        if others:
            raise ValidationFailed.single(
                agent_launch.PROFILE_LOC,
                "`agent_profile_id` is mutually exclusive with " + ", ".join(others),
            )
    elif request.agent is None and request.agent_settings is None:
        raise ValidationFailed.single(
            ("body", "agent"),
            "One of `agent`, `agent_settings` or `agent_profile_id` is required",
            "missing",
        )


async def _check_parent(request: ApiStartConversationRequest) -> None:
    """The parent must exist and share the child's working directory, as the reference's."""
    if request.parent_conversation_id is None:
        return
    found = lookup(request.parent_conversation_id)
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


async def _build_agent(request: ApiStartConversationRequest) -> tuple[Any, dict[str, Any] | None]:
    """The conversation's agent and, when a stored agent profile launched it, the SDK's
    `LaunchedAgentProfile` (JSON). The source is the client's `agent`, one the SDK builds
    from its `agent_settings`, or the profile `agent_profile_id` resolved with this server's
    stores; then the SDK's launch finalizes it (`agent_launch_additions`, the stored
    settings' `load_memory`) and the `client_tools` join. Secrets sent encrypted are
    decrypted with the server secret."""
    cipher = await app().settings_store.cipher() if request.secrets_encrypted else None
    key = app().settings.llm_api_key
    qualnames = request.tool_module_qualnames
    has_profile = request.agent_profile_id is not None
    additions = await trio.to_thread.run_sync(
        agent_launch.parsed_additions, request.agent_launch_additions, has_profile
    )
    settings = await _launch_settings(required=has_profile)
    if request.agent_profile_id is not None:
        assert settings is not None
        source = await _resolve_profile(request.agent_profile_id, settings, additions)
    elif request.agent is not None:
        build = partial(api_bridge.build_agent, request.agent, key, qualnames, cipher)
        source = await trio.to_thread.run_sync(build)
    else:
        assert request.agent_settings is not None
        build = partial(
            api_bridge.build_agent_from_settings, request.agent_settings, key, qualnames, cipher
        )
        source = await trio.to_thread.run_sync(build)
    context = getattr(settings.agent_settings, "agent_context", None) if settings else None
    finalize = partial(
        agent_launch.blocking_finalize,
        source,
        additions,
        load_memory=context is not None and bool(context.load_memory),
    )
    launched = await trio.to_thread.run_sync(finalize)
    agent: Any = launched.agent  # an `Agent`: ACP sources were refused above
    if launched.profile is not None:
        defaults = partial(
            api_bridge.with_server_defaults, agent, key, qualnames, agent_launch.PROFILE_LOC
        )
        agent = await trio.to_thread.run_sync(defaults)
    if request.client_tools:
        agent = await trio.to_thread.run_sync(
            api_bridge.add_client_tools, agent, request.client_tools
        )
    profile = launched.profile.model_dump(mode="json") if launched.profile else None
    return agent, profile


async def _launch_settings(*, required: bool) -> ServerSettings | None:
    """The stored settings a launch reads. A profile launch needs them (its MCP server
    references name the settings' servers): unreadable, it is refused (409). Any other
    launch goes on without them, as the reference's does, and says so in the log."""
    try:
        return await read_settings()
    except Conflict:
        if required:
            raise
        log.warning("settings unreadable: this conversation starts without their load_memory")
        return None


async def _resolve_profile(profile_id: uuid.UUID, settings: ServerSettings, additions: Any) -> Any:
    """The SDK's `ResolvedLaunch` of a stored profile, read in one pass over the profile
    stores; an ACP profile is refused as ACP agents are (422)."""
    cipher = await app().settings_store.cipher()

    def resolve(llm: LLMProfileStore, agents: AgentProfileStore, metas: MetaProfileStore) -> Any:
        stores = agent_launch.launch_stores(settings, cipher, llm, agents, metas)
        try:
            return agent_launch.blocking_resolve(profile_id, stores, additions)
        except Exception as error:
            answer = agent_launch.launch_failure(error)
            if answer is None:
                raise
            raise answer from None

    resolved = await app().settings_store.profiles.use_all(resolve)
    if resolved.settings.agent_kind != "openhands":
        raise ValidationFailed.single(
            agent_launch.PROFILE_LOC,
            f"only 'openhands' agents are served, not {resolved.settings.agent_kind!r}",
            "not_supported",
        )
    return resolved


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
@responses({200: ApiConversationInfo, 201: ApiConversationInfo}, *BODY, 404, 409, 503)
async def start_conversation() -> Response:
    """201 with the new conversation; 200 with the existing one when `conversation_id`
    names a conversation that exists (nothing is changed then)."""
    request = await parse_body(ApiStartConversationRequest)
    _check_sources(request)
    request.workspace.working_dir = await resolve_working_dir(
        request.workspace.working_dir, app().settings
    )
    sup = supervisor()
    if request.conversation_id is not None and (found := lookup(request.conversation_id)):
        return json_response(info(*found), 200)
    await _check_parent(request)
    await app().sdk_loader.wait_ready()
    agent, launched_profile = await _build_agent(request)
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
    secrets = agent_launch.allowed_secrets(
        launched_profile,
        api_bridge.build_secrets(request.secrets, ("body", "secrets"), secrets_cipher),
    )
    hook_config = api_bridge.build_hook_config(request.hook_config, ("body", "hook_config"))
    plugins = await trio.to_thread.run_sync(
        api_bridge.build_plugins, request.plugins, ("body", "plugins")
    )
    title_llm = await _title_llm(request)
    conversation_id = request.conversation_id or uuid.uuid4()
    repo = await _make_worktree(request, conversation_id.hex)
    if repo is None and app().settings.git_init_working_dirs:
        await git.init_outside_repositories(Path(request.workspace.working_dir))
    message = (
        sdk_bridge.to_message(request.initial_message.content) if request.initial_message else None
    )
    stored = _stored_request(request, agent, policy, analyzer, hook_config)
    stored["launched_agent_profile"] = launched_profile
    # As the SDK dumps them: inline URL credentials masked (a `${VAR}` of the secrets stays).
    stored["plugins"] = [plugin.model_dump(mode="json") for plugin in plugins or []] or None
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


async def _set_title(conversation: Conversation, title: str) -> None:
    await change_record(conversation.record, conversation, {"title": title})
