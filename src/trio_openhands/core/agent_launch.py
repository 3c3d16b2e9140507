"""What launching an agent profile would build, as the SDK's launch code says: the profile's
references (LLM profile, MCP servers, skills, meta-profile) resolved against the stores this
server holds, then finalized for the runtime its conversations run in (this process, with
no browser). A preview never raises for a dangling reference: the diagnostics report it.

Blocking: run inside `ProfileStores.use_all`, which hands over the three profile stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trio_openhands.services import skills

if TYPE_CHECKING:
    from openhands.sdk.launch import LaunchStores
    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.llm.meta_profile_store import MetaProfileStore
    from openhands.sdk.profiles import AgentProfileStore
    from openhands.sdk.utils.cipher import Cipher

    from trio_openhands.stores.settings_store import ServerSettings


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
