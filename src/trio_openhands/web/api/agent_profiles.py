"""The reference server's agent profiles (`/api/agent-profiles...`): named, secret-free
launch specs (the SDK's `AgentProfile`, in its own store: stores/profile_stores.py), and the
`active_agent_profile_id` pointer. Some profile is always active: `default`, built from the
stored agent settings when there is none, as the reference does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from quart import Blueprint, Response, request
from quart_schema import document_request

from trio_openhands.core import agent_launch, agent_settings
from trio_openhands.core.errors import Conflict, NotFound, ValidationFailed
from trio_openhands.core.validation import load_json
from trio_openhands.web.api.profiles import rename_body, renamed
from trio_openhands.web.api.settings import (
    agent_profile_name,
    read_settings,
    store,
    update_settings,
)
from trio_openhands.web.api.settings_models import (
    AgentProfileActivated,
    AgentProfileDetail,
    AgentProfileDiagnostics,
    AgentProfileList,
    MaterializeAgentProfile,
    ProfileMutation,
    RenameProfile,
)
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_optional_body

if TYPE_CHECKING:
    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.llm.meta_profile_store import MetaProfileStore
    from openhands.sdk.profiles import AgentProfileStore

    from trio_openhands.stores.settings_store import ServerSettings

blueprint = Blueprint("api_agent_profiles", __name__)

MAX_AGENT_PROFILES = 50
MAX_ID_LENGTH = 128  # as the reference's path parameter
SEED = "default"


def _name(name: str) -> str:
    return agent_settings.check_profile_name(name, ("path", "name"))


def _seed_llm_profile(settings: ServerSettings, llm_profiles: LLMProfileStore, cipher: Any) -> None:
    """The agent's LLM saved as LLM profile `default`, so that the seeded agent profile's
    reference resolves; only for a configured LLM (a key or an endpoint), never over one."""
    llm = getattr(settings.agent_settings, "llm", None)
    if llm is None or SEED + ".json" in llm_profiles.list():
        return
    has_key = llm.api_key is not None and bool(llm.api_key.get_secret_value().strip())
    if has_key or (llm.base_url or "").strip():
        llm_profiles.save(SEED, llm, include_secrets=True, cipher=cipher)


async def ensure_active() -> None:
    """Point `active_agent_profile_id` at a stored profile, seeding `default` if needed.

    The profiles are looked at (and seeded) first, then the pointer set in a second step
    only if nobody moved it meanwhile (the newer choice stands): never one store's lock
    held while waiting for the other's, which with the database would be two connections
    held by one request."""
    cipher = await store().cipher()
    current = await read_settings()

    def resolve(llm_profiles: LLMProfileStore, profiles: AgentProfileStore) -> str | None:
        from openhands.sdk.profiles import build_seed_profile, save_profile_preserving_identity

        active = current.active_agent_profile_id
        if active is not None and profiles.name_for_id(active) is not None:
            return None
        try:
            profile: Any = profiles.load(SEED)
        except FileNotFoundError:
            if current.agent_settings.agent_kind != "acp" and not current.active_profile:
                _seed_llm_profile(current, llm_profiles, cipher)
            seeded = build_seed_profile(current.agent_settings, current.active_profile)
            profile = save_profile_preserving_identity(
                profiles, seeded, max_profiles=MAX_AGENT_PROFILES
            )
        return str(profile.id)

    if (profile_id := await store().profiles.use(resolve)) is None:
        return

    def point(latest: ServerSettings) -> tuple[ServerSettings, None]:
        if latest.active_agent_profile_id != current.active_agent_profile_id:
            return latest, None
        return latest.replace(active_agent_profile_id=profile_id), None

    await update_settings(point)


@blueprint.get("/api/agent-profiles")
@responses(AgentProfileList, 409)
async def list_agent_profiles() -> Response:
    await app().sdk_loader.wait_ready()
    await ensure_active()
    settings = await store().read()
    summaries = await store().profiles.use(lambda _, profiles: profiles.list_summaries())
    return json_response(
        {"profiles": summaries, "active_agent_profile_id": settings.active_agent_profile_id}
    )


@blueprint.get("/api/agent-profiles/<name>")
@responses(AgentProfileDetail, 404, 422)
async def get_agent_profile(name: str) -> Response:
    _name(name)
    await app().sdk_loader.wait_ready()
    profile = await _load(name)
    return json_response({"name": name, "profile": profile.model_dump(mode="json")})


async def _load(name: str) -> Any:
    try:
        return await store().profiles.use(lambda _, profiles: profiles.load(name))
    except FileNotFoundError:
        raise NotFound(f"Agent profile '{name}' not found") from None


@blueprint.post("/api/agent-profiles/<name>")
@document_request(AgentProfileDetail)
@responses({201: ProfileMutation}, 409, *BODY)
async def save_agent_profile(name: str) -> Response:
    """Create or overwrite (the path names it; an overwrite keeps its id). The body is an
    SDK `AgentProfile` (`kind` `openhands` or `acp`)."""
    _name(name)
    raw = await request.get_data(as_text=False)
    body = load_json(raw) if raw.strip() else None
    if not isinstance(body, dict):
        raise ValidationFailed.single(("body",), "An agent profile is a JSON object", "dict_type")
    await app().sdk_loader.wait_ready()
    from openhands.sdk.profiles import ProfileLimitExceeded, save_profile_preserving_identity

    profile = _validated(body, name, ("body",))

    def save(_: object, profiles: AgentProfileStore) -> None:
        try:
            save_profile_preserving_identity(profiles, profile, max_profiles=MAX_AGENT_PROFILES)
        except ProfileLimitExceeded:
            raise Conflict(
                f"Agent profile limit reached ({MAX_AGENT_PROFILES}). Delete a profile before "
                "saving a new one."
            ) from None

    await store().profiles.use(save)
    return json_response({"name": name, "message": f"Agent profile '{name}' saved"}, 201)


def _validated(data: dict[str, Any], name: str, loc: tuple[str, ...]) -> Any:
    """The SDK's `AgentProfile` from a client's JSON (the path's name), errors at `loc`."""
    from openhands.sdk.profiles import safe_validation_error_detail, validate_agent_profile

    try:
        return validate_agent_profile({**data, "name": name})
    except ValidationError as error:
        detail = safe_validation_error_detail(error)
        raise ValidationFailed(
            [{**item, "loc": [*loc, *item.get("loc", [])]} for item in detail]
        ) from None
    except (ValueError, TypeError):
        raise ValidationFailed.single(loc, "Invalid agent profile") from None


@blueprint.post("/api/agent-profiles/<name>/materialize")
@document_request(MaterializeAgentProfile)
@responses(AgentProfileDiagnostics, 404, *BODY)
async def materialize_agent_profile(name: str) -> Response:
    """A dry run of launching the stored profile, or the body's draft: what the SDK's
    launch would resolve and build here. A dangling reference is in the report (`valid`
    false), not an error; nothing is saved or started."""
    _name(name)
    body = await parse_optional_body(MaterializeAgentProfile)
    await app().sdk_loader.wait_ready()
    draft = None
    if body.profile is not None:
        draft = _validated(body.profile, name, ("body", "profile"))
    settings = await read_settings()
    cipher = await store().cipher()

    def preview(llm: LLMProfileStore, agents: AgentProfileStore, metas: MetaProfileStore) -> Any:
        profile = draft
        if profile is None:
            try:
                profile = agents.load(name)
            except FileNotFoundError:
                raise NotFound(f"Agent profile '{name}' not found") from None
        stores = agent_launch.launch_stores(settings, cipher, llm, agents, metas)
        return agent_launch.blocking_preview(profile, stores, settings)

    diagnostics = await store().profiles.use_all(preview)
    return json_response(diagnostics.model_dump(mode="json"))


@blueprint.delete("/api/agent-profiles/<name>")
@responses(ProfileMutation, 409, 422)
async def delete_agent_profile(name: str) -> Response:
    """Idempotent; when it was the active one, `default` becomes active (seeded again)."""
    _name(name)
    await app().sdk_loader.wait_ready()

    def delete(_: object, profiles: AgentProfileStore) -> str | None:
        found = next((s for s in profiles.list_summaries() if s.get("name") == name), None)
        profiles.delete(name)
        return None if found is None or found.get("id") is None else str(found["id"])

    deleted_id = await store().profiles.use(delete)
    if deleted_id is not None:

        def clear(current: ServerSettings) -> tuple[ServerSettings, None]:
            if current.active_agent_profile_id != deleted_id:
                return current, None
            return current.replace(active_agent_profile_id=None), None

        await update_settings(clear)
        await ensure_active()
    return json_response({"name": name, "message": f"Agent profile '{name}' deleted"})


@blueprint.post("/api/agent-profiles/<name>/rename")
@document_request(RenameProfile)
@responses(ProfileMutation, 404, 409, *BODY)
async def rename_agent_profile(name: str) -> Response:
    """Its id stays, so the active pointer follows."""
    new_name = await rename_body(name)
    try:
        await store().profiles.use(lambda _, profiles: profiles.rename(name, new_name))
    except FileNotFoundError:
        raise NotFound(f"Agent profile '{name}' not found") from None
    except FileExistsError:
        raise Conflict(f"Agent profile '{new_name}' already exists") from None
    return renamed("Agent profile", name, new_name)


@blueprint.post("/api/agent-profiles/<profile_id>/activate")
@responses(AgentProfileActivated, 404, 409, 422)
async def activate_agent_profile(profile_id: str) -> Response:
    """By the profile's id; only the pointer moves (the agent settings stay as they are)."""
    if len(profile_id) > MAX_ID_LENGTH:
        raise ValidationFailed.single(
            ("path", "profile_id"), f"At most {MAX_ID_LENGTH} characters", "string_too_long"
        )
    await app().sdk_loader.wait_ready()
    if await agent_profile_name(profile_id) is None:
        raise NotFound(f"Agent profile with id '{profile_id}' not found")
    await update_settings(
        lambda current: (current.replace(active_agent_profile_id=profile_id), None)
    )
    return json_response(
        {
            "id": profile_id,
            "message": f"Agent profile '{profile_id}' activated",
            "agent_settings_applied": False,
        }
    )
