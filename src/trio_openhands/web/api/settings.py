"""The reference server's `/api/settings` routes: the settings a UI edits, their schemas, and
the custom secrets (values readable one at a time, as an SDK `LookupSecret` does; never in a
listing). Everything is stored in `stores/settings_store.py`, encrypted at rest."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request

from trio_openhands.core import agent_settings
from trio_openhands.core.errors import ApiError, Conflict, NotFound, ValidationFailed
from trio_openhands.stores.settings_store import SettingsUnreadable, StoredSecret
from trio_openhands.web.api.settings_models import (
    SECRET_NAME,
    Deleted,
    SecretCreate,
    SecretItem,
    SecretsList,
    SecretsQuery,
    SecretValue,
    SettingsBody,
    SettingsPatch,
    SettingsSchema,
)
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body, parse_query

if TYPE_CHECKING:
    from collections.abc import Callable

    from openhands.sdk.profiles import AgentProfileStore

    from trio_openhands.stores.settings_store import ServerSettings, SettingsStore

blueprint = Blueprint("api_settings", __name__)

SECRET_NAME_RE = re.compile(SECRET_NAME)
UNREADABLE = (
    "The settings file cannot be read with this server's secret: restore the secret it was "
    "written with (OH_SECRET_KEY or the key file)"
)
NOTHING_TO_CHANGE = (
    "At least one of agent_settings_diff, conversation_settings_diff, misc_settings_diff, "
    "active_profile, active_agent_profile_id or active_meta_profile must be given"
)


def store() -> SettingsStore:
    return app().settings_store


async def read_settings() -> ServerSettings:
    await app().sdk_loader.wait_ready()
    try:
        return await store().read()
    except SettingsUnreadable:
        raise Conflict(UNREADABLE) from None


async def update_settings[T](change: Callable[[ServerSettings], tuple[ServerSettings, T]]) -> T:
    await app().sdk_loader.wait_ready()
    try:
        return await store().update(change)
    except SettingsUnreadable:
        raise Conflict(UNREADABLE) from None


# -- settings ------------------------------------------------------------------------------


@blueprint.get("/api/settings")
@responses(SettingsBody, 400, 409)
async def get_settings() -> Response:
    """`X-Expose-Secrets`: absent, secrets are redacted; `encrypted`, Fernet tokens the
    server decrypts when they come back (`secrets_encrypted`); `plaintext`, the values."""
    mode = agent_settings.expose_mode(request.headers.get("X-Expose-Secrets"))
    settings = await read_settings()
    cipher = await store().cipher()
    return json_response(agent_settings.settings_response(settings, mode, cipher))


@blueprint.patch("/api/settings")
@document_request(SettingsPatch)
@responses(SettingsBody, 400, 404, 409, *BODY)
async def patch_settings() -> Response:
    """Merge the diffs and set the pointers, all or nothing; secrets are not shown back.
    `active_profile` also makes that LLM profile the agent's LLM, unless the diff has one."""
    changes = (await parse_body(SettingsPatch)).changes()
    if not changes:
        raise ApiError(400, NOTHING_TO_CHANGE)
    await app().sdk_loader.wait_ready()
    cipher = await store().cipher()
    profile_llm = None
    if (name := changes.get("active_profile")) and "llm" not in (
        changes.get("agent_settings_diff") or {}
    ):
        profile_llm = await load_profile_llm(name)
    profile_id = changes.get("active_agent_profile_id")
    if profile_id is not None and await agent_profile_name(profile_id) is None:
        raise NotFound(f"Agent profile with id '{profile_id}' not found")
    meta_profile = None
    if (meta := changes.get("active_meta_profile")) is not None:
        from trio_openhands.web.api.meta_profiles import load_meta_profile  # it imports this

        meta_profile = await load_meta_profile(meta)

    def change(current: ServerSettings) -> tuple[ServerSettings, ServerSettings]:
        new = agent_settings.apply_patch(current, changes, cipher, profile_llm, meta_profile)
        return new, new

    new = await update_settings(change)
    return json_response(agent_settings.settings_response(new, None, cipher))


async def load_profile_llm(name: str) -> Any:
    """An LLM profile's LLM with its key (decrypted), or a 404."""
    cipher = await store().cipher()
    try:
        return await store().profiles.use(lambda profiles, _: profiles.load(name, cipher=cipher))
    except FileNotFoundError:
        raise agent_settings.profile_not_found(name) from None
    except ValueError as error:
        raise ApiError(400, str(error)) from None


async def agent_profile_name(profile_id: str) -> str | None:
    """The name of the agent profile with this id, None when there is none."""
    return await store().profiles.use(lambda _, profiles: profiles.name_for_id(profile_id))


@blueprint.get("/api/settings/agent-schema")
@responses(SettingsSchema)
async def get_agent_schema() -> Response:
    """The SDK's schema of agent settings (both variants, sections tagged by `variant`)."""
    await app().sdk_loader.wait_ready()
    return json_response(await trio.to_thread.run_sync(agent_settings.agent_schema))


@blueprint.get("/api/settings/conversation-schema")
@responses(SettingsSchema)
async def get_conversation_schema() -> Response:
    """The SDK's schema of conversation settings."""
    await app().sdk_loader.wait_ready()
    return json_response(await trio.to_thread.run_sync(agent_settings.conversation_schema))


# -- secrets -------------------------------------------------------------------------------


def _secret_name(name: str) -> str:
    if not SECRET_NAME_RE.match(name):
        raise ValidationFailed.single(
            ("path", "name"),
            "A secret name starts with a letter and has 1-64 letters, digits or underscores",
            "string_pattern_mismatch",
        )
    return name


@blueprint.get("/api/settings/secrets")
@document_querystring(SecretsQuery)
@responses(SecretsList, 404, 409, 422)
async def list_secrets() -> Response:
    """Names and descriptions; `agent_profile_id` keeps only the names that profile uses."""
    query = parse_query(SecretsQuery)
    settings = await read_settings()
    allowed: set[str] | None = None
    if query.agent_profile_id is not None:

        def secret_refs(_: object, profiles: AgentProfileStore) -> list[str] | None:
            name = profiles.name_for_id(query.agent_profile_id or "")
            if name is None:
                raise NotFound("Agent profile not found")
            return profiles.load(name).secret_refs

        refs = await store().profiles.use(secret_refs)
        allowed = None if refs is None else set(refs)
    items = [
        {"name": name, "description": secret.description}
        for name, secret in settings.secrets.items()
        if allowed is None or name in allowed
    ]
    return json_response({"secrets": items})


@blueprint.put("/api/settings/secrets")
@document_request(SecretCreate)
@responses(SecretItem, 409, *BODY)
async def put_secret() -> Response:
    """Create or replace one secret; its value is encrypted before it reaches the disk."""
    secret = await parse_body(SecretCreate)
    if not secret.value.strip() or secret.value == "**********":
        raise ValidationFailed.single(
            ("body", "value"), "A secret's value must not be empty or redacted", "value_error"
        )

    def change(current: ServerSettings) -> tuple[ServerSettings, None]:
        stored = StoredSecret(secret.value, secret.description)
        return current.replace(secrets={**current.secrets, secret.name: stored}), None

    await update_settings(change)
    return json_response({"name": secret.name, "description": secret.description})


@blueprint.get("/api/settings/secrets/<name>")
@responses(SecretValue, 404, 409, 422)
async def get_secret(name: str) -> Response:
    """The value itself, as `text/plain` (an SDK `LookupSecret` resolves it here)."""
    settings = await read_settings()
    secret = settings.secrets.get(_secret_name(name))
    if secret is None:
        raise NotFound("Secret not found")
    return Response(secret.value, content_type="text/plain; charset=utf-8")


@blueprint.delete("/api/settings/secrets/<name>")
@responses(Deleted, 404, 409, 422)
async def delete_secret(name: str) -> Response:
    _secret_name(name)

    def change(current: ServerSettings) -> tuple[ServerSettings, bool]:
        if name not in current.secrets:
            return current, False
        return current.replace(
            secrets={k: v for k, v in current.secrets.items() if k != name}
        ), True

    if not await update_settings(change):
        raise NotFound("Secret not found")
    return json_response({"deleted": True})
