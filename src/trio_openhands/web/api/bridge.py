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
from trio_openhands.core.sdk_log_levels import git_failures_as_warnings
from trio_openhands.core.validation import errors_from

if TYPE_CHECKING:
    from collections.abc import Mapping

    from openhands.sdk import Agent
    from openhands.sdk.plugin import PluginSource
    from openhands.sdk.secret import SecretValue
    from openhands.sdk.security.analyzer import SecurityAnalyzerBase
    from openhands.sdk.security.confirmation_policy import ConfirmationPolicyBase
    from openhands.sdk.utils.cipher import Cipher

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
    spec: dict[str, Any],
    default_api_key: str | None,
    tool_module_qualnames: Mapping[str, str],
    cipher: Cipher | None = None,
) -> Agent:
    """Blocking: the client's `agent` (an SDK `Agent` dump) as an SDK Agent.

    The server's defaults fill what the client left out: its LLM key when the agent has
    none, and tool parameters that depend on the server's machine (the subprocess
    terminal rather than tmux). Every tool must be known here, or the first run would fail
    on it: unknown ones are imported from `tool_module_qualnames` when they belong to the
    SDK's packages, else rejected. With `cipher` (`secrets_encrypted`), secret values that
    are Fernet tokens of this server are decrypted.
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
        agent = Agent.model_validate(data, context={"cipher": cipher} if cipher else None)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, ("body", "agent")) from None
    for index, tool in enumerate(agent.tools):
        _ensure_tool_registered(tool.name, tool_module_qualnames, index)
    return agent


def tool_modules(
    agent: Agent, given: Mapping[str, str], client_tools: list[dict[str, Any]]
) -> dict[str, str]:
    """The `tool_module_qualnames` a conversation keeps and shows: the client's, and the
    module of every other tool the server resolved by name (not the client tools, which
    the client registers itself). A client attaching later imports these modules before it
    reads the events, or a `TerminalAction` made where the creator never said which module
    the terminal is in would be an unknown kind to it."""
    from openhands.sdk.tool.registry import get_tool_module_qualnames

    registered = get_tool_module_qualnames()
    client_tool_names = {spec.get("name") for spec in client_tools}
    modules = dict(given)
    for tool in agent.tools:
        module = registered.get(tool.name)
        if module is not None and tool.name not in client_tool_names:
            modules.setdefault(tool.name, module)
    return modules


def build_agent_from_settings(
    settings: dict[str, Any],
    default_api_key: str | None,
    tool_module_qualnames: Mapping[str, str],
    cipher: Cipher | None,
) -> Agent:
    """Blocking: the web UI's `agent_settings` (the SDK's settings, schema version 9) made
    into an agent by the SDK itself, then given the server's defaults as `build_agent`."""
    from trio_openhands.core import agent_settings

    loc = ("body", "agent_settings")
    validated = agent_settings.validated_agent_settings(settings, cipher, loc)
    if validated.agent_kind != "openhands":
        raise ValidationFailed.single(
            (*loc, "agent_kind"),
            f"only 'openhands' agents are served, not {validated.agent_kind!r}",
            "not_supported",
        )
    # As the reference launches where no browser can run: the browser tool set is left out.
    from openhands.sdk.tool.defaults import launch_tool_specs

    tools = launch_tool_specs(validated.tools, browser_available=False)
    validated = validated.model_copy(update={"tools": tools})
    agent: Any = agent_settings.blocking_agent_from_settings(validated)
    return with_server_defaults(agent, default_api_key, tool_module_qualnames, (*loc, "tools"))


def with_server_defaults(
    agent: Agent, default_api_key: str | None, tool_module_qualnames: Mapping[str, str], loc: Loc
) -> Agent:
    """Blocking: an agent the SDK built (from settings or a profile) given the server's
    defaults as `build_agent` gives them; each tool must be known here."""
    from pydantic import SecretStr

    changes: dict[str, Any] = {"tools": [_with_server_defaults(t) for t in agent.tools]}
    if agent.llm.api_key is None and default_api_key:
        changes["llm"] = agent.llm.model_copy(update={"api_key": SecretStr(default_api_key)})
    agent = agent.model_copy(update=changes)
    for index, tool in enumerate(agent.tools):
        _ensure_tool_registered(tool.name, tool_module_qualnames, index, loc)
    return agent


def add_client_tools(agent: Agent, specs: list[dict[str, Any]]) -> Agent:
    """Blocking: `client_tools` (the SDK's `ClientToolSpec`s) registered and given to the
    agent. The client runs them: the agent's call is an ActionEvent on the socket, and the
    SDK acknowledges it at once. A restored conversation registers them again itself."""
    from openhands.sdk.tool.client_tool import ClientToolSpec, register_client_tools

    parsed: list[ClientToolSpec] = []
    for index, spec in enumerate(specs):
        try:
            parsed.append(ClientToolSpec.model_validate(spec))
        except (ValidationError, ValueError, TypeError) as error:
            raise _validation_errors(error, ("body", "client_tools", index)) from None
    try:
        tools = register_client_tools(parsed)
    except ValueError as error:  # a duplicate, or the name of a tool of the server
        raise ValidationFailed.single(("body", "client_tools"), str(error)) from None
    known = {tool.name for tool in agent.tools}
    added = [tool for tool in tools if tool.name not in known]
    return agent.model_copy(update={"tools": [*agent.tools, *added]}) if added else agent


def _with_server_defaults(tool: Any) -> Any:
    if isinstance(tool, dict) and isinstance(tool.get("name"), str):
        defaults = DEFAULT_TOOL_PARAMS.get(tool["name"], {})
        return {**tool, "params": {**defaults, **(tool.get("params") or {})}}
    return tool


def _ensure_tool_registered(
    name: str, qualnames: Mapping[str, str], index: int, loc: Loc = ("body", "agent", "tools")
) -> None:
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
            (*loc, index, "name"),
            f"unknown tool {name!r}; this server knows: {known}",
        )


# The TypeScript client's policy objects (`new AlwaysConfirm()` sends `{"type": "always"}`)
# and the SDK policy each stands for; its `tool_based` and `composite` have none.
_TYPESCRIPT_POLICY_KINDS = {"never": "NeverConfirm", "always": "AlwaysConfirm"}
_TYPESCRIPT_RISK_LEVELS = ("low", "medium", "high", "unknown")


def build_confirmation_policy(data: dict[str, Any], loc: Loc) -> ConfirmationPolicyBase:
    """The SDK's policy from its JSON (`kind`), or from the TypeScript client's (`type`)."""
    from openhands.sdk.security.confirmation_policy import ConfirmationPolicyBase

    if "kind" not in data and "type" in data:
        data = _from_typescript_policy(data, loc)
    try:
        return ConfirmationPolicyBase.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, loc) from None


def _from_typescript_policy(data: dict[str, Any], loc: Loc) -> dict[str, Any]:
    """`{"type": ...}` as the SDK's JSON. Its `risk_based` confirms at or above the threshold
    and counts an unknown risk as medium: `ConfirmRisky` with `confirm_unknown` to match."""
    kind = data["type"]
    if kind in _TYPESCRIPT_POLICY_KINDS:
        return {"kind": _TYPESCRIPT_POLICY_KINDS[kind]}
    if kind == "risk_based":
        threshold = data.get("threshold", "medium")
        if threshold not in _TYPESCRIPT_RISK_LEVELS:
            raise ValidationFailed.single(
                (*loc, "threshold"),
                f"threshold must be one of {', '.join(_TYPESCRIPT_RISK_LEVELS)}",
            )
        threshold = "medium" if threshold == "unknown" else threshold
        return {
            "kind": "ConfirmRisky",
            "threshold": threshold.upper(),
            "confirm_unknown": threshold != "high",
        }
    raise ValidationFailed.single(
        (*loc, "type"),
        "the server applies the SDK's policies (kind NeverConfirm, AlwaysConfirm, ConfirmRisky);"
        " of the TypeScript client's types it takes never, always and risk_based",
    )


def build_hook_config(data: dict[str, Any] | None, loc: Loc) -> dict[str, Any] | None:
    """The SDK's `HookConfig` (snake_case or Claude Code's PascalCase keys), as the JSON the
    record keeps and every open of the conversation gives back to the SDK; None if empty."""
    from openhands.sdk.hooks import HookConfig

    if not data:
        return None
    try:
        config = HookConfig.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, loc) from None
    return None if config.is_empty() else config.model_dump(mode="json", by_alias=True)


def build_plugins(data: list[dict[str, Any]] | None, loc: Loc) -> list[PluginSource] | None:
    """Blocking: the SDK's `PluginSource`s, each fetched once here (into the SDK's plugin
    cache) so that a source that cannot be had is a 422 naming it now, not a failure at the
    first message. A source with `${VAR}` placeholders, which the SDK fills from the
    conversation's secrets when it loads it, is only checked for shape."""
    from openhands.sdk.plugin import PluginFetchError, PluginSource, fetch_plugin_with_resolution

    if not data:
        return None
    plugins: list[PluginSource] = []
    for index, item in enumerate(data):
        try:
            plugin = PluginSource.model_validate(item)
        except (ValidationError, ValueError, TypeError) as error:
            raise _validation_errors(error, (*loc, index)) from None
        if "${" not in plugin.source and "${" not in (plugin.ref or ""):
            try:
                with git_failures_as_warnings():  # the caller's source: a 422, not our error
                    fetch_plugin_with_resolution(
                        source=plugin.source, ref=plugin.ref, repo_path=plugin.repo_path
                    )
            except PluginFetchError as error:
                log.warning("plugin %s could not be fetched: %s", plugin.source, error)
                raise ValidationFailed.single((*loc, index, "source"), str(error)) from None
        plugins.append(plugin)
    return plugins


def build_security_analyzer(data: dict[str, Any] | None, loc: Loc) -> SecurityAnalyzerBase | None:
    from openhands.sdk.security.analyzer import SecurityAnalyzerBase

    if data is None:
        return None
    try:
        return SecurityAnalyzerBase.model_validate(data)
    except (ValidationError, ValueError, TypeError) as error:
        raise _validation_errors(error, loc) from None


def build_secrets(
    raw: Mapping[str, str | dict[str, Any]], loc: Loc, cipher: Cipher | None = None
) -> dict[str, SecretValue]:
    """`"v"`, `{"value": "v"}`, or a `SecretSource` dump with its `kind`; with `cipher`
    (`secrets_encrypted`), values that are Fernet tokens of this server are decrypted."""
    from openhands.sdk.secret import SecretSource

    secrets: dict[str, SecretValue] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            secrets[name] = _decrypted(value, cipher)
        elif "kind" in value:
            try:
                context = {"cipher": cipher} if cipher else None
                secrets[name] = SecretSource.model_validate(value, context=context)
            except (ValidationError, ValueError, TypeError) as error:
                raise _validation_errors(error, (*loc, name)) from None
        elif isinstance(value.get("value"), str):
            secrets[name] = _decrypted(value["value"], cipher)
        else:
            raise ValidationFailed.single(
                (*loc, name), 'a secret is a string, {"value": ...} or a SecretSource with a kind'
            )
    return secrets


def _decrypted(value: str, cipher: Cipher | None) -> str:
    if cipher is None:
        return value
    from openhands.sdk.utils.pydantic_secrets import decrypt_str_with_cipher_or_keep

    return decrypt_str_with_cipher_or_keep(cipher, value)


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
