"""The reference server's LLM profiles (`/api/profiles...`): named LLM settings, stored by
the SDK's own profile store (stores/profile_stores.py: under the conversations directory,
or shared by every instance through the database), keys encrypted with the server secret.
Activating one makes it the stored agent settings' LLM."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request
from quart_schema import document_request

from trio_openhands.core import agent_settings, llm_catalog
from trio_openhands.core.errors import Conflict
from trio_openhands.web.api.settings import load_profile_llm, read_settings, store, update_settings
from trio_openhands.web.api.settings_models import (
    ProfileActivated,
    ProfileDetail,
    ProfileList,
    ProfileMutation,
    ProfileValidation,
    RenameProfile,
    SaveProfile,
    ValidateProfile,
)
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

if TYPE_CHECKING:
    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.profiles import AgentProfileStore

    from trio_openhands.stores.settings_store import ServerSettings

blueprint = Blueprint("api_profiles", __name__)

MAX_PROFILES = 50


def _name(name: str) -> str:
    return agent_settings.check_profile_name(name, ("path", "name"))


@blueprint.get("/api/profiles")
@responses(ProfileList, 409)
async def list_profiles() -> Response:
    settings = await read_settings()
    summaries = await store().profiles.use(lambda llm_profiles, _: llm_profiles.list_summaries())
    return json_response({"profiles": summaries, "active_profile": settings.active_profile})


@blueprint.get("/api/profiles/<name>")
@responses(ProfileDetail, 400, 404, 422)
async def get_profile(name: str) -> Response:
    """`X-Expose-Secrets` as on `/api/settings`; without it the key is null and
    `api_key_set` says whether there is one."""
    mode = agent_settings.expose_mode(request.headers.get("X-Expose-Secrets"))
    await app().sdk_loader.wait_ready()
    llm = await load_profile_llm(_name(name))
    cipher = await store().cipher()
    config = llm.model_dump(mode="json", context=agent_settings.dump_context(mode, cipher))
    if mode is None:
        config["api_key"] = None
    api_key_set = llm.api_key is not None and bool(llm.api_key.get_secret_value().strip())
    return json_response({"name": name, "config": config, "api_key_set": api_key_set})


@blueprint.post("/api/profiles/<name>")
@document_request(SaveProfile)
@responses({201: ProfileMutation}, 409, *BODY)
async def save_profile(name: str) -> Response:
    """Create or overwrite; a key sent back as a Fernet token of this server is decrypted
    first. 409 past 50 profiles."""
    _name(name)
    body = await parse_body(SaveProfile)
    await app().sdk_loader.wait_ready()
    cipher = await store().cipher()
    llm = llm_catalog.build_llm(body.llm, cipher, ("body", "llm"))

    def save(profiles: LLMProfileStore, _: object) -> None:
        from openhands.sdk.llm.llm_profile_store import ProfileLimitExceeded

        try:
            profiles.save(
                name,
                llm,
                include_secrets=body.include_secrets,
                cipher=cipher,
                max_profiles=MAX_PROFILES,
            )
        except ProfileLimitExceeded:
            raise Conflict(
                f"Profile limit reached ({MAX_PROFILES}). Delete a profile before saving a new one."
            ) from None

    await store().profiles.use(save)
    return json_response({"name": name, "message": f"Profile '{name}' saved"}, 201)


@blueprint.post("/api/profiles/<name>/validate")
@document_request(ValidateProfile)
@responses(ProfileValidation, *BODY)
async def validate_profile(name: str) -> Response:
    """One short completion with these settings (no retry, 15 s at most): the provider's
    own error if it fails. Nothing is saved."""
    _name(name)
    body = await parse_body(ValidateProfile)
    await app().sdk_loader.wait_ready()
    cipher = await store().cipher()
    llm = llm_catalog.build_llm(body.llm, cipher, ("body", "llm"))
    result = await trio.to_thread.run_sync(llm_catalog.blocking_ping, llm, abandon_on_cancel=True)
    return json_response(result)


def _set_active_if(current: ServerSettings, old: str, new: str | None) -> ServerSettings:
    if current.active_profile is None or current.active_profile.removesuffix(".json") != old:
        return current
    return current.replace(active_profile=new)


@blueprint.delete("/api/profiles/<name>")
@responses(ProfileMutation, 409, 422)
async def delete_profile(name: str) -> Response:
    """Idempotent; 409 while an agent profile refers to it. Clears `active_profile`."""
    _name(name)
    await app().sdk_loader.wait_ready()

    def delete(llm_profiles: LLMProfileStore, agent_profiles: AgentProfileStore) -> None:
        from openhands.sdk.profiles import ProfileReferenced, delete_llm_profile

        try:
            delete_llm_profile(agent_profiles, llm_profiles, name)
        except ProfileReferenced as error:
            raise Conflict(str(error)) from None

    await store().profiles.use(delete)
    await update_settings(lambda current: (_set_active_if(current, name, None), None))
    return json_response({"name": name, "message": f"Profile '{name}' deleted"})


@blueprint.post("/api/profiles/<name>/rename")
@document_request(RenameProfile)
@responses(ProfileMutation, 404, 409, *BODY)
async def rename_profile(name: str) -> Response:
    """Agent profiles that refer to it follow; so does `active_profile`."""
    new_name = await rename_body(name)

    def rename(llm_profiles: LLMProfileStore, agent_profiles: AgentProfileStore) -> None:
        from openhands.sdk.profiles import rename_llm_profile

        try:
            rename_llm_profile(agent_profiles, llm_profiles, name, new_name)
        except FileNotFoundError:
            raise agent_settings.profile_not_found(name) from None
        except FileExistsError:
            raise Conflict(f"Profile '{new_name}' already exists") from None

    await store().profiles.use(rename)
    if name != new_name:
        await update_settings(lambda current: (_set_active_if(current, name, new_name), None))
    return renamed("Profile", name, new_name)


async def rename_body(name: str) -> str:
    """A rename's two names checked (the path's, then the body's); the SDK loaded."""
    _name(name)
    new_name = (await parse_body(RenameProfile)).new_name
    await app().sdk_loader.wait_ready()
    return new_name


def renamed(kind: str, name: str, new_name: str) -> Response:
    if name == new_name:
        return json_response({"name": name, "message": f"{kind} '{name}' unchanged (same name)"})
    return json_response({"name": new_name, "message": f"{kind} '{name}' renamed to '{new_name}'"})


@blueprint.post("/api/profiles/<name>/activate")
@responses(ProfileActivated, 400, 404, 409, 422)
async def activate_profile(name: str) -> Response:
    """The profile's LLM becomes the agent settings' LLM (an ACP agent has none: only the
    pointer moves), and `active_profile` names it."""
    _name(name)
    llm = await load_profile_llm(name)

    def activate(current: ServerSettings) -> tuple[ServerSettings, bool]:
        applied = (
            hasattr(current.agent_settings, "llm") and current.agent_settings.agent_kind != "acp"
        )
        agent: Any = current.agent_settings
        if applied:
            agent = agent.model_copy(update={"llm": llm})
        return current.replace(agent_settings=agent, active_profile=name), applied

    applied = await update_settings(activate)
    message = f"Profile '{name}' activated" + (
        " and applied to current settings" if applied else ""
    )
    return json_response({"name": name, "message": message, "llm_applied": applied})
