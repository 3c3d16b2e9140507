"""The `/api` dialect's bodies turned into SDK objects, each error a 422 naming its field.

Imports of `openhands.*` happen inside the functions, as in `sdk_bridge`: call these once
the SDK is loaded. `build_agent` may import tool modules: run it in a worker thread.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.sdk_bridge import DEFAULT_TOOL_PARAMS
from trio_openhands.core.validation import errors_from

if TYPE_CHECKING:
    from collections.abc import Mapping

    from openhands.sdk import Agent
    from openhands.sdk.secret import SecretValue
    from openhands.sdk.security.analyzer import SecurityAnalyzerBase
    from openhands.sdk.security.confirmation_policy import ConfirmationPolicyBase

log = logging.getLogger(__name__)

type Loc = tuple[str | int, ...]

# `tool_module_qualnames` name modules for the server to import so that it knows a tool.
# Importing runs code: only the SDK's and openhands-tools' own packages are imported.
IMPORTABLE_TOOL_PACKAGES = ("openhands.tools.", "openhands.sdk.")


def _validation_errors(error: Exception, loc: Loc) -> ValidationFailed:
    if isinstance(error, ValidationError):
        return ValidationFailed(errors_from(error, loc))
    return ValidationFailed.single(loc, str(error))


def build_agent(
    spec: dict[str, Any], default_api_key: str | None, tool_module_qualnames: Mapping[str, str]
) -> Agent:
    """Blocking: the client's `agent` (an SDK `Agent` dump) as an SDK Agent.

    The server's defaults fill what the client left out: its LLM key when the agent has
    none, and tool parameters that depend on the server's machine (the subprocess
    terminal rather than tmux). Every tool must be known here, or the first run would fail
    on it: unknown ones are imported from `tool_module_qualnames` when they belong to the
    SDK's packages, else rejected.
    """
    from openhands.sdk import Agent

    kind = spec.get("kind", "Agent")
    if kind != "Agent":
        raise ValidationFailed.single(
            ("body", "agent", "kind"), f"only agents of kind 'Agent' are served, not {kind!r}"
        )
    data = {**spec, "kind": "Agent"}
    if isinstance(data.get("llm"), dict):
        llm = dict(data["llm"])
        if not llm.get("api_key") and default_api_key:
            llm["api_key"] = default_api_key
        data["llm"] = llm
    if isinstance(data.get("tools"), list):
        data["tools"] = [_with_server_defaults(tool) for tool in data["tools"]]
    try:
        agent = Agent.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, ("body", "agent")) from None
    for index, tool in enumerate(agent.tools):
        _ensure_tool_registered(tool.name, tool_module_qualnames, index)
    return agent


def _with_server_defaults(tool: Any) -> Any:
    if isinstance(tool, dict) and isinstance(tool.get("name"), str):
        defaults = DEFAULT_TOOL_PARAMS.get(tool["name"], {})
        return {**tool, "params": {**defaults, **(tool.get("params") or {})}}
    return tool


def _ensure_tool_registered(name: str, qualnames: Mapping[str, str], index: int) -> None:
    from openhands.sdk.tool.registry import list_registered_tools

    if name in list_registered_tools():
        return
    module = qualnames.get(name)
    if module is not None and module.startswith(IMPORTABLE_TOOL_PACKAGES):
        try:
            importlib.import_module(module)
        except ImportError as error:
            log.warning("tool %r: importing %s failed: %s", name, module, error)
    if name not in list_registered_tools():
        known = ", ".join(sorted(list_registered_tools()))
        raise ValidationFailed.single(
            ("body", "agent", "tools", index, "name"),
            f"unknown tool {name!r}; this server knows: {known}",
        )


def build_confirmation_policy(data: dict[str, Any], loc: Loc) -> ConfirmationPolicyBase:
    from openhands.sdk.security.confirmation_policy import ConfirmationPolicyBase

    try:
        return ConfirmationPolicyBase.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, loc) from None


def build_security_analyzer(data: dict[str, Any] | None, loc: Loc) -> SecurityAnalyzerBase | None:
    from openhands.sdk.security.analyzer import SecurityAnalyzerBase

    if data is None:
        return None
    try:
        return SecurityAnalyzerBase.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, loc) from None


def build_secrets(raw: Mapping[str, str | dict[str, Any]], loc: Loc) -> dict[str, SecretValue]:
    """`"v"`, `{"value": "v"}`, or a `SecretSource` dump with its `kind`."""
    from openhands.sdk.secret import SecretSource

    secrets: dict[str, SecretValue] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            secrets[name] = value
        elif "kind" in value:
            try:
                secrets[name] = SecretSource.model_validate(value)
            except (ValidationError, ValueError, TypeError) as error:
                raise _validation_errors(error, (*loc, name)) from None
        elif isinstance(value.get("value"), str):
            secrets[name] = value["value"]
        else:
            raise ValidationFailed.single(
                (*loc, name), 'a secret is a string, {"value": ...} or a SecretSource with a kind'
            )
    return secrets


def redacted_json(model: BaseModel | None) -> dict[str, Any] | None:
    """An SDK object as the record keeps it: the SDK's serializers redact its secrets."""
    return None if model is None else model.model_dump(mode="json")


def final_response(event_jsons: list[tuple[str, str, str]]) -> str:
    """The agent's last answer (its finish message, or its last plain message), as the
    SDK's `get_agent_final_response` finds it; `event_jsons` are (kind, source, json),
    newest first, already narrowed to the agent's actions and messages."""
    from openhands.sdk.conversation.response_utils import get_agent_final_response
    from openhands.sdk.event import Event

    for kind, source, text in event_jsons:
        if source != "agent" or kind not in ("ActionEvent", "MessageEvent"):
            continue
        if kind == "ActionEvent" and json.loads(text).get("tool_name") != "finish":
            continue  # other tools' actions need their modules to be parsed, and don't count
        return get_agent_final_response([Event.model_validate_json(text)])
    return ""
