"""Launching an agent as the SDK's launch code does: an agent profile's references (LLM
profile, MCP servers, skills, meta-profile) resolved against the stores this server holds,
then any agent finalized for the runtime its conversations run in (this process, with no
browser) with the request's launch additions. A preview never raises for a dangling
reference (the diagnostics report it); a launch does, as `launch_failure` answers it.

Blocking: resolve inside `ProfileStores.use_all`, which hands over the three profile stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from trio_openhands.core.errors import ApiError, Conflict, NotFound, ValidationFailed
from trio_openhands.core.validation import errors_from
from trio_openhands.services import skills

if TYPE_CHECKING:
    from uuid import UUID

    from openhands.sdk.launch import LaunchStores
    from openhands.sdk.launch.finalize import LaunchedAgent
    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.llm.meta_profile_store import MetaProfileStore
    from openhands.sdk.profiles import AgentProfileStore
    from openhands.sdk.utils.cipher import Cipher

    from trio_openhands.stores.settings_store import ServerSettings

PROFILE_LOC = ("body", "agent_profile_id")


def launch_stores(
    settings: ServerSettings,
    cipher: Cipher,
    llm_profiles: LLMProfileStore,
    agent_profiles: AgentProfileStore,
    meta_profiles: MetaProfileStore,
) -> LaunchStores:
    """The SDK's view of what a launch reads: this server's profile stores, the MCP servers
    and critic key of the stored agent settings, the public and user skills."""
    from openhands.sdk.launch import LaunchStores

    agent = settings.agent_settings
    verification = getattr(agent, "verification", None)
    return LaunchStores(
        llm_profiles=llm_profiles,
        llm_profile_names=lambda: [name.removesuffix(".json") for name in llm_profiles.list()],
        mcp_config=getattr(agent, "mcp_config", None) or {},
        skills=skills.profile_skills,
        public_skill_names=skills.public_skill_names,
        critic_api_key=getattr(verification, "critic_api_key", None),
        agent_profiles=agent_profiles,
        meta_profiles=meta_profiles,
        cipher=cipher,
    )


def blocking_preview(profile: Any, stores: LaunchStores, settings: ServerSettings) -> Any:
    """The SDK's `AgentProfileDiagnostics` for `profile` (its `resolved_settings` redacted),
    tools probed in this process, as a launch here would run them."""
    from openhands.sdk.launch import LaunchRuntime, preview_launch

    context = getattr(settings.agent_settings, "agent_context", None)
    return preview_launch(
        profile,
        stores,
        LaunchRuntime(browser_available=False),
        load_memory=context is not None and bool(context.load_memory),
        check_usable=True,
    )


def blocking_resolve(profile_id: UUID, stores: LaunchStores, additions: Any) -> Any:
    """The SDK's `ResolvedLaunch` of the stored profile `profile_id`: every reference copied
    in, so nothing more is read from the stores. Its errors are turned by `launch_failure`."""
    from openhands.sdk.launch import resolve

    llm_profile_ref = additions.llm_profile_ref if additions is not None else None
    return resolve(profile_id, stores, llm_profile_ref=llm_profile_ref)


def blocking_finalize(source: Any, additions: Any, *, load_memory: bool) -> LaunchedAgent:
    """The agent a conversation starts with, as the SDK's launch builds it here (no browser):
    the launch additions (suffix, skills) applied, the clock of its context set to now."""
    from openhands.sdk.launch import AgentLaunchError, LaunchRuntime, finalize

    runtime = LaunchRuntime(browser_available=False)
    try:
        return finalize(source, runtime, additions=additions, load_memory=load_memory)
    except AgentLaunchError as error:
        raise ValidationFailed(launch_problem(error)) from None


def parsed_additions(raw: dict[str, Any] | None, has_profile: bool) -> Any:
    """The request's `agent_launch_additions` as the SDK's model; `llm_profile_ref` only
    goes with `agent_profile_id`, as the SDK's request says."""
    from openhands.sdk.conversation.request import AgentLaunchAdditions

    if raw is None:
        return None
    loc = ("body", "agent_launch_additions")
    try:
        additions = AgentLaunchAdditions.model_validate(raw)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, loc)) from None
    if additions.llm_profile_ref and not has_profile:
        raise ValidationFailed.single(
            (*loc, "llm_profile_ref"), "`llm_profile_ref` requires `agent_profile_id`"
        )
    return additions


def launch_failure(error: Exception) -> ApiError | None:
    """The SDK's launch errors as answers: an unknown profile 404; a launch that cannot be
    made as asked (dangling references, a bad override) 422 naming `agent_profile_id`, the
    SDK's detail in `ctx`; a busy store 503; a store that cannot be read 409, as unreadable
    settings are. None: not a launch error."""
    from openhands.sdk.launch import AgentLaunchError, LaunchStoreError
    from openhands.sdk.profiles.resolver import ProfileNotFound

    if isinstance(error, ProfileNotFound):
        return NotFound("No agent profile has this id")
    if isinstance(error, AgentLaunchError):
        return ValidationFailed(launch_problem(error))
    if isinstance(error, LaunchStoreError):
        if error.retryable:
            return ApiError(503, str(error), {"Retry-After": "1"})
        return Conflict(str(error))
    return None


def launch_problem(error: Any) -> list[dict[str, Any]]:
    """An `AgentLaunchError` as a 422's list, the SDK's own detail (its code, the dangling
    references) kept in `ctx` for a client that reads them."""
    problem = {"loc": list(PROFILE_LOC), "msg": str(error), "type": error.code}
    return [{**problem, "ctx": error.to_detail()}]


def allowed_secrets[T](
    launched_profile: dict[str, Any] | None, secrets: dict[str, T]
) -> dict[str, T]:
    """The secrets a conversation launched from a profile may hold: those its `secret_refs`
    names (the list kept at launch), all of them when it has none."""
    refs = (launched_profile or {}).get("secret_refs")
    if refs is None:
        return secrets
    return {name: value for name, value in secrets.items() if name in refs}
