"""The SDK's settings model at work: diffs applied to stored settings, agents built from
settings, secrets shown as a client asks, the schemas a UI draws its forms from.

Imports of `openhands.*` happen inside the functions (the SDK loads in the background).
Every error is a 422 naming the field, its message and type only: the input, which can be
a key, is never echoed.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from trio_openhands.core.errors import ApiError, NotFound, ValidationFailed
from trio_openhands.core.validation import errors_from

if TYPE_CHECKING:
    from collections.abc import Mapping

    from openhands.sdk import LLM
    from openhands.sdk.agent.base import AgentBase
    from openhands.sdk.llm.meta_profile_store import MetaProfile
    from openhands.sdk.utils.cipher import Cipher

    from trio_openhands.stores.settings_store import ServerSettings

type Loc = tuple[str | int, ...]
ExposeMode = Literal["encrypted", "plaintext"] | None
VARIANT_TAGS = frozenset({"openhands", "llm", "acp"})
# The SDK's PROFILE_NAME_PATTERN (tests/test_profiles_api.py checks they agree).
PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PROFILE_NAME_RE = re.compile(PROFILE_NAME)
_KEEP: Any = object()  # `with_meta_profile`: the agent settings' own copy stays


def expose_mode(header: str | None) -> ExposeMode:
    """`X-Expose-Secrets`: absent (redacted), `encrypted` (or the legacy `true`), `plaintext`."""
    value = (header or "").strip().lower()
    if not value:
        return None
    if value in ("encrypted", "true"):
        return "encrypted"
    if value == "plaintext":
        return "plaintext"
    raise ApiError(400, "X-Expose-Secrets must be 'encrypted' or 'plaintext'")


def dump_context(mode: ExposeMode, cipher: Cipher) -> dict[str, Any]:
    return {} if mode is None else {"expose_secrets": mode, "cipher": cipher}


def _settings_errors(error: Exception, loc: Loc) -> ValidationFailed:
    if not isinstance(error, ValidationError):
        return ValidationFailed.single(loc, "Invalid settings: " + type(error).__name__)
    found = errors_from(error)
    for item in found:  # the union's variant tag is not a field of the request
        if item["loc"] and item["loc"][0] in VARIANT_TAGS:
            item["loc"] = item["loc"][1:]
        item["loc"] = [*loc, *item["loc"]]
    return ValidationFailed(found)


def validated_agent_settings(data: Mapping[str, Any], cipher: Cipher | None, loc: Loc) -> Any:
    """A client's `agent_settings` (schema version 9), Fernet tokens decrypted when `cipher`."""
    from openhands.sdk.settings import validate_agent_settings

    try:
        return validate_agent_settings(dict(data), context={"cipher": cipher} if cipher else None)
    except Exception as error:  # the SDK's validators raise more than ValidationError
        raise _settings_errors(error, loc) from None


def settings_response(settings: ServerSettings, mode: ExposeMode, cipher: Cipher) -> dict[str, Any]:
    """GET /api/settings' body: secrets redacted unless the client asked otherwise."""
    return {
        "agent_settings": settings.agent_settings.model_dump(
            mode="json", context=dump_context(mode, cipher)
        ),
        "conversation_settings": settings.conversation_settings.model_dump(mode="json"),
        "llm_api_key_is_set": settings.llm_api_key_is_set,
        "active_profile": settings.active_profile,
        "active_agent_profile_id": settings.active_agent_profile_id,
        "active_meta_profile": settings.active_meta_profile,
        "misc_settings": settings.misc_settings,
    }


def deep_merge(base: dict[str, Any], overlay: Mapping[str, Any], nested: bool = False) -> dict:
    """Nested maps merge; a null inside a nested map deletes that entry; a null on a
    top-level field stays, so that validation refuses it rather than reset the field."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None and nested:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, nested=True)
        else:
            merged[key] = value
    return merged


def apply_patch(
    settings: ServerSettings,
    patch: Mapping[str, Any],
    cipher: Cipher,
    profile_llm: LLM | None,
    meta_profile: MetaProfile | None = None,
) -> ServerSettings:
    """PATCH /api/settings' diffs on the stored settings, all validated before any applies.

    `agent_settings_diff` is the SDK's merge patch (a change of `agent_kind` starts from
    that variant's defaults); `profile_llm`, when an `active_profile` is set without an
    `llm` in the diff, becomes the agent's LLM; `meta_profile`, the one `active_meta_profile`
    names, is copied into the agent settings: the SDK's routing tool reads meta-profiles
    from its own default directory, not this server's store, so it needs the copy."""
    from openhands.sdk.settings import ConversationSettings, apply_agent_settings_diff

    changes: dict[str, Any] = {}
    agent_diff = dict(patch.get("agent_settings_diff") or {})
    if profile_llm is not None and "llm" not in agent_diff:
        agent_diff["llm"] = profile_llm.model_dump(mode="json", context={"expose_secrets": True})
    if agent_diff or "agent_settings_diff" in patch:
        try:
            changes["agent_settings"] = apply_agent_settings_diff(
                settings.agent_settings, agent_diff, context={"cipher": cipher}
            )
        except Exception as error:  # the SDK's validators raise more than ValidationError
            raise _settings_errors(error, ("body", "agent_settings_diff")) from None
    if (conversation_diff := patch.get("conversation_settings_diff")) is not None:
        merged = deep_merge(
            settings.conversation_settings.model_dump(mode="json"), conversation_diff
        )
        try:
            changes["conversation_settings"] = ConversationSettings.from_persisted(merged)
        except Exception as error:  # the SDK's validators raise more than ValidationError
            raise _settings_errors(error, ("body", "conversation_settings_diff")) from None
    if (misc_diff := patch.get("misc_settings_diff")) is not None:
        changes["misc_settings"] = deep_merge(settings.misc_settings, misc_diff)
    for pointer in ("active_profile", "active_agent_profile_id"):
        if pointer in patch:
            changes[pointer] = patch[pointer]
    settings = settings.replace(**changes)
    if "active_meta_profile" in patch:
        name = patch["active_meta_profile"]  # None: as the reference, the copy stays, unused
        return with_meta_profile(settings, name, inline=meta_profile if name else _KEEP)
    if not _can_route(settings):
        return settings.replace(active_meta_profile=None)  # the agent became ACP
    return settings


def _can_route(settings: ServerSettings) -> bool:
    """Whether agents built from these settings can have the SDK's routing tool (not ACP)."""
    return "active_meta_profile" in type(settings.agent_settings).model_fields


def with_meta_profile(
    settings: ServerSettings, name: str | None, inline: Any = _KEEP
) -> ServerSettings:
    """The active meta-profile set (None: cleared) and carried into the agent settings, which
    is what attaches the SDK's routing tool to an agent built from them; `inline`, a
    `MetaProfile` or None, replaces the copy the agent settings hold. An agent that cannot
    route (ACP) gets no pointer: the settings never claim a router no conversation uses."""
    if not _can_route(settings):
        return settings.replace(active_meta_profile=None)
    update: dict[str, Any] = {
        "active_meta_profile": name,
        "enable_classify_and_switch_llm_tool": name is not None,
    }
    if inline is not _KEEP:
        update["meta_profile"] = inline
    agent = settings.agent_settings.model_copy(update=update)
    return settings.replace(agent_settings=agent, active_meta_profile=name)


def blocking_agent_from_settings(agent_settings: Any) -> AgentBase:
    """The SDK's own construction of an agent from settings (tools, MCP, condenser...)."""
    try:
        return agent_settings.create_agent()
    except Exception as error:  # the SDK's validators raise more than ValidationError
        raise _settings_errors(error, ("body", "agent_settings")) from None


@functools.cache
def agent_schema() -> dict[str, Any]:
    from openhands.sdk.settings import export_agent_settings_schema

    return export_agent_settings_schema().model_dump(mode="json")


@functools.cache
def conversation_schema() -> dict[str, Any]:
    from openhands.sdk.settings import ConversationSettings

    return ConversationSettings.export_schema().model_dump(mode="json")


def check_profile_name(name: str, loc: Loc) -> str:
    """The SDK's rule for the names of LLM, agent and meta-profiles, checked without
    importing it: a request may come while it still loads."""
    if not _PROFILE_NAME_RE.match(name):
        raise ValidationFailed.single(
            loc,
            "A profile name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            "string_pattern_mismatch",
        )
    return name


def profile_not_found(name: str) -> NotFound:
    return NotFound(f"Profile '{name}' not found")
