"""The reference server's meta-profiles (`/api/meta-profiles...`, the TypeScript client's
`MetaProfilesClient`): named model-routing configurations (a classifier LLM profile and the
classes of task it sends to other LLM profiles), for the SDK's `route_task_to_model` tool.

They hold no secrets: plain JSON in the SDK's own `MetaProfileStore`, beside the LLM and
agent profiles (stores/profile_stores.py: shared by every instance through the database
when there is one). Activating one records it as `active_meta_profile` and copies it into
the stored agent settings, which attaches the routing tool to the agents built from them
(core/agent_settings.py: `with_meta_profile`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import document_request

from trio_openhands.core import agent_settings
from trio_openhands.core.errors import ApiError, Conflict, NotFound, ValidationFailed
from trio_openhands.core.validation import validate
from trio_openhands.web.api.settings import read_settings, store, update_settings
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from openhands.sdk.llm.meta_profile_store import MetaProfile, MetaProfileStore

    from trio_openhands.stores.settings_store import ServerSettings

blueprint = Blueprint("api_meta_profiles", __name__)

MAX_META_PROFILES = 50
BUSY = "Meta-profile store is busy. Please retry."


class MetaProfileClass(BaseModel):
    """A kind of task, and the LLM profile that handles it."""

    description: str
    model: str = Field(description="The LLM profile for tasks of this class.")


class MetaProfileBody(BaseModel):
    """The SDK's `MetaProfile`: `classes` to choose between, or a `prompt_template` (with
    `{{ instance_text }}`) that names the model itself; one of them is needed."""

    classifier_model: str = Field(description="The LLM profile that classifies the task.")
    classes: list[MetaProfileClass] = Field(default_factory=list)
    prompt_template: str | None = None
    model_table: str | None = None


class MetaProfileInfo(BaseModel):
    """A meta-profile in a listing."""

    name: str
    classifier_model: str | None = None
    num_classes: int = 0


class MetaProfileList(BaseModel):
    """Every saved meta-profile, and the active one."""

    meta_profiles: list[MetaProfileInfo]
    active_meta_profile: str | None = None


class MetaProfileDetail(BaseModel):
    """A meta-profile's whole configuration."""

    name: str
    config: MetaProfileBody


class MetaProfileMutation(BaseModel):
    """Saved or deleted."""

    name: str
    message: str


class MetaProfileActivated(MetaProfileMutation):
    """Activated, or not where the agent cannot route."""

    applied: bool = Field(
        default=True, description="False when the agent settings cannot route (ACP)."
    )


def _name(name: str) -> str:
    return agent_settings.check_profile_name(name, ("path", "name"))


async def _use[T](operation: Callable[[MetaProfileStore], T]) -> T:
    await app().sdk_loader.wait_ready()
    try:
        return await store().profiles.use_meta(operation)
    except TimeoutError:  # the SDK store's file lock
        raise ApiError(503, BUSY) from None


async def load_meta_profile(name: str) -> MetaProfile:
    """The saved meta-profile, or a 404."""

    def load(metas: MetaProfileStore) -> MetaProfile:
        try:
            return metas.load(name)
        except FileNotFoundError:
            raise NotFound(f"Meta-profile '{name}' not found") from None
        except ValueError as error:  # a file that no longer validates
            raise ApiError(400, str(error)) from None

    return await _use(load)


@blueprint.get("/api/meta-profiles")
@responses(MetaProfileList, 409, 503)
async def list_meta_profiles() -> Response:
    settings = await read_settings()
    summaries = await _use(lambda metas: metas.list_summaries())
    return json_response(
        {"meta_profiles": summaries, "active_meta_profile": settings.active_meta_profile}
    )


@blueprint.get("/api/meta-profiles/<name>")
@responses(MetaProfileDetail, 400, 404, 422, 503)
async def get_meta_profile(name: str) -> Response:
    meta = await load_meta_profile(_name(name))
    return json_response({"name": name, "config": meta.model_dump(mode="json")})


@blueprint.post("/api/meta-profiles/<name>")
@document_request(MetaProfileBody)
@responses({201: MetaProfileMutation}, 409, 503, *BODY)
async def save_meta_profile(name: str) -> Response:
    """Create or overwrite; 409 past 50 meta-profiles."""
    _name(name)
    body = await parse_body(MetaProfileBody)
    await app().sdk_loader.wait_ready()
    from openhands.sdk.llm.meta_profile_store import MetaProfile

    meta = validate(MetaProfile, body.model_dump(), ("body",))
    if not meta.classes and meta.prompt_template is None:
        raise ValidationFailed.single(
            ("body",), "A meta-profile needs either classes or a prompt_template to route."
        )

    def save(metas: MetaProfileStore) -> None:
        from openhands.sdk.llm.meta_profile_store import MetaProfileLimitExceeded

        try:
            metas.save(name, meta, max_profiles=MAX_META_PROFILES)
        except MetaProfileLimitExceeded:
            raise Conflict(
                f"Meta-profile limit reached ({MAX_META_PROFILES}). "
                "Delete a meta-profile before saving a new one."
            ) from None

    await _use(save)
    return json_response({"name": name, "message": f"Meta-profile '{name}' saved"}, 201)


@blueprint.delete("/api/meta-profiles/<name>")
@responses(MetaProfileMutation, 409, 422, 503)
async def delete_meta_profile(name: str) -> Response:
    """Idempotent. Deleting the active one clears `active_meta_profile`, and the copy the
    agent settings hold."""
    _name(name)
    await _use(lambda metas: metas.delete(name))

    def clear(current: ServerSettings) -> tuple[ServerSettings, None]:
        if current.active_meta_profile != name:
            return current, None
        return agent_settings.with_meta_profile(current, None, inline=None), None

    await update_settings(clear)
    return json_response({"name": name, "message": f"Meta-profile '{name}' deleted"})


@blueprint.post("/api/meta-profiles/<name>/activate")
@responses(MetaProfileActivated, 400, 404, 409, 422, 503)
async def activate_meta_profile(name: str) -> Response:
    """Record it as active and copy it into the agent settings; `applied: false`, and
    nothing recorded, when those settings are an agent that cannot route (ACP)."""
    meta = await load_meta_profile(_name(name))

    def activate(current: ServerSettings) -> tuple[ServerSettings, bool]:
        new = agent_settings.with_meta_profile(current, name, inline=meta)
        return new, new.active_meta_profile == name

    if await update_settings(activate):
        message = f"Meta-profile '{name}' activated"
        return json_response({"name": name, "message": message, "applied": True})
    message = (
        f"Meta-profile '{name}' not activated: the current agent settings cannot route "
        "between models"
    )
    return json_response({"name": name, "message": message, "applied": False})
