"""Everything that touches the OpenHands SDK's own types, in one place.

Imports of `openhands.*` happen inside the functions: this module is imported at start-up,
the SDK only later (see `sdk_loader`). Functions named `blocking_*` must run in a worker
thread (they take the SDK's state lock or touch the disk).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.models import ContentPart, ImagePart, StartConversationRequest
from trio_openhands.core.validation import errors_from

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable
    from pathlib import Path

    from openhands.sdk import LLM, LocalConversation, Message
    from openhands.sdk.event import Event
    from openhands.sdk.io import FileStore

REDACTED = "**********"
# The subprocess terminal starts in ~30 ms; tmux costs ~230 ms and a tmux server each.
DEFAULT_TOOL_PARAMS: dict[str, dict[str, Any]] = {"terminal": {"terminal_type": "subprocess"}}


def build_llm(spec: dict[str, Any], default_api_key: str | None) -> LLM:
    """The SDK's LLM settings from the request, with the server's key when it gives none."""
    from openhands.sdk import LLM

    values = {"usage_id": "agent", **spec}
    if not values.get("api_key") and default_api_key:
        values["api_key"] = default_api_key
    try:
        return LLM.model_validate(values)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, ("body", "llm"))) from None


def redact_mcp_config(mcp_config: dict[str, Any]) -> dict[str, Any]:
    """MCP servers as shown and stored by us: their `env` and `headers` values redacted.
    The SDK keeps the real values, encrypted with the server secret, in its own state."""
    shown: dict[str, Any] = {}
    for name, server in mcp_config.items():
        if not isinstance(server, dict):
            shown[name] = server
            continue
        shown[name] = {
            key: (
                {k: REDACTED for k in value}
                if key in ("env", "headers") and isinstance(value, dict)
                else value
            )
            for key, value in server.items()
        }
    return shown


def build_agent(request: StartConversationRequest, llm: LLM) -> Any:
    from openhands.sdk import Agent, AgentContext, Tool

    tools = [
        Tool(name=tool.name, params={**DEFAULT_TOOL_PARAMS.get(tool.name, {}), **tool.params})
        for tool in request.tools
    ]
    try:
        context = (
            AgentContext.model_validate(request.agent_context) if request.agent_context else None
        )
        return Agent(llm=llm, tools=tools, mcp_config=request.mcp_config, agent_context=context)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, ("body",))) from None


def make_cipher(secret_key: str) -> Any:
    from openhands.sdk.utils.cipher import Cipher

    return Cipher(secret_key=secret_key)


def blocking_open_conversation(
    *,
    conversation_id: uuid.UUID,
    agent: Any | None,
    workspace_dir: Path,
    conversations_dir: Path,
    max_iterations: int,
    cipher: Any,
    on_event: Callable[[Event], None],
    keep_state_update: Callable[[Event], bool],
    confirmation_mode: bool | None,
    hook_config: dict[str, Any] | None = None,
    plugins: list[dict[str, Any]] | None = None,
    file_store: FileStore | None = None,
    on_token: Callable[[Any], None] | None = None,
    profile_store_dir: Path | None = None,
) -> LocalConversation:
    """Create a conversation, or restore it from disk when `agent` is None.

    State changes (`ConversationStateUpdateEvent`s) that `keep_state_update` keeps go
    through the SDK's own event chain, as the reference server wires them: persisted with
    the other events, then handed to `on_event`, so a client that re-reads the log sees
    what a live subscriber saw. `hook_config` (checked at create) is given at every open,
    as the SDK does not restore it from disk: its hooks run on the first message or run.
    `plugins` (the SDK's `PluginSource` dumps) too: the SDK fetches and loads them then.
    `file_store` (the conversation's folder, e.g. a `GroupCommitFileStore`) replaces the
    SDK's own `LocalFileStore` of the same folder. `on_token` gets the tokens of an LLM
    with `stream: true` (without a token callback the SDK does not stream).
    `profile_store_dir` holds the LLM profiles the agent may switch to (the SDK's default
    directory otherwise)."""
    from openhands.sdk import LocalConversation
    from openhands.sdk.hooks import HookConfig
    from openhands.sdk.plugin import PluginSource
    from openhands.sdk.security.confirmation_policy import AlwaysConfirm

    conversation = LocalConversation(
        agent=agent,
        workspace=str(workspace_dir),
        persistence_dir=str(conversations_dir),
        file_store=file_store,
        conversation_id=conversation_id,
        callbacks=[on_event],
        token_callbacks=[on_token] if on_token else None,
        visualizer=None,
        max_iteration_per_run=max_iterations,
        cipher=cipher,
        delete_on_close=False,
        hook_config=HookConfig.model_validate(hook_config) if hook_config else None,
        plugins=[PluginSource.model_validate(plugin) for plugin in plugins] if plugins else None,
        profile_store_dir=profile_store_dir,
    )
    conversation.state.set_on_state_change(
        partial(_log_state_change, conversation, keep_state_update)
    )
    if confirmation_mode:
        conversation.set_confirmation_policy(AlwaysConfirm())
    return conversation


def is_plugin_failure(error: BaseException) -> bool:
    """Whether the SDK could not fetch or load a conversation's plugins (it does that at
    the first message or run)."""
    from openhands.sdk.plugin import PluginFetchError

    return isinstance(error, PluginFetchError)


def blocking_report_run_failure(conversation: LocalConversation, error: BaseException) -> bool:
    """A run that raised before the SDK's own error handling (a plugin that would not
    load, an agent that could not start) is reported as the reference reports it: a
    `ConversationErrorEvent` with its detail, and the status `error`. False when the SDK
    had reported it already (its `ConversationRunError`)."""
    from openhands.sdk.conversation.exceptions import ConversationRunError
    from openhands.sdk.conversation.state import ConversationExecutionStatus
    from openhands.sdk.event.conversation_error import ConversationErrorEvent

    if isinstance(error, ConversationRunError):
        return False
    event = ConversationErrorEvent(
        source="environment", code=type(error).__name__, detail=str(error)
    )
    with conversation.state:
        _emit(conversation, event)
        conversation.state.execution_status = ConversationExecutionStatus.ERROR
    return True


def blocking_fork(
    source: LocalConversation,
    fork_id: uuid.UUID,
    *,
    tags: dict[str, str] | None,
    reset_metrics: bool,
    from_event_id: str | None,
) -> Any:
    """The SDK's own fork of `source` (its events, HEAD, skills and agent state copied into
    the fork's folder, beside the source's), closed again: the supervisor opens the folder
    as one of its conversations. Returns the fork's agent, its key exposed (the SDK saved
    it without our cipher). A `ValueError` for an unknown `from_event_id`."""
    fork = source.fork(
        conversation_id=fork_id,
        tags=tags,
        reset_metrics=reset_metrics,
        from_event_id=from_event_id,
    )
    agent = fork.agent
    fork.delete_on_close = False
    fork.close()
    return agent


def _log_state_change(
    conversation: LocalConversation, keep: Callable[[Event], bool], event: Event
) -> None:
    if keep(event):
        _emit(conversation, event)


def _emit(conversation: LocalConversation, event: Event) -> None:
    """Through the SDK's own event chain (persisted, then our callback), its lock held."""
    # Looked up at each call: the SDK replaces `_on_event` when it sets up hooks.
    conversation._on_event(event)  # pyright: ignore[reportPrivateUsage]


def blocking_log_state_update(
    conversation: LocalConversation, keep: Callable[[Event], bool], key: str, value: Any
) -> None:
    """Record a state the server settled (a run's status) or changed outside the SDK (a
    title, tags) as the SDK records its own: a `ConversationStateUpdateEvent`, persisted."""
    with conversation.state:
        log_state_change(conversation, keep, key, value)


def log_state_change(
    conversation: LocalConversation, keep: Callable[[Event], bool], key: str, value: Any
) -> None:
    """`blocking_log_state_update` from where the state lock is held already."""
    from openhands.sdk.event import ConversationStateUpdateEvent

    _log_state_change(conversation, keep, ConversationStateUpdateEvent(key=key, value=value))


def log_completion(
    conversation: LocalConversation, filename: str, data: str, model: str, usage_id: str
) -> None:
    """An LLM call's completion log as the SDK client takes it (the state lock held)."""
    from openhands.sdk.event.llm_completion_log import LLMCompletionLogEvent

    event = LLMCompletionLogEvent(
        filename=filename, log_data=data, model_name=model, usage_id=usage_id
    )
    _emit(conversation, event)


def logged_status_of(event: Event) -> str | None:
    """The status an `execution_status` update carries; None for any other event."""
    if getattr(event, "key", None) != "execution_status":
        return None
    value = getattr(event, "value", None)
    return str(getattr(value, "value", value))


def to_message(content: list[ContentPart]) -> Message:
    from openhands.sdk import ImageContent, Message, TextContent

    parts: list[TextContent | ImageContent] = []
    for part in content:
        if isinstance(part, ImagePart):
            parts.append(ImageContent(image_urls=part.image_urls))
        else:
            parts.append(TextContent(text=part.text, cache_prompt=part.cache_prompt))
    return Message(role="user", content=parts)


def serialize_event(event: Event) -> str:
    """The one serialization of an event, shared by REST pages and socket frames."""
    return event.model_dump_json()


def status_of(conversation: LocalConversation) -> str:
    """Lock-free read of the live execution status (the SDK documents it as safe)."""
    return str(conversation.state.execution_status.value)


def metrics_of(conversation: LocalConversation) -> dict[str, Any]:
    metrics = conversation.conversation_stats.get_combined_metrics()
    usage = metrics.accumulated_token_usage
    return {
        "accumulated_cost": metrics.accumulated_cost,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
    }


def drop_event_caches(conversation: LocalConversation) -> None:
    """After `close()`: drop the SDK's in-memory copies of the events (its event cache, the
    cached view, the file store's cache of written files). A closed SDK conversation is a
    web of reference cycles that only a full cyclic collection frees, which a busy process
    may not run for a long while; without this, each big message stays in memory until
    then. Private attributes of openhands-sdk 1.58: if they move, this does nothing, and
    tests/test_memory.py fails."""
    from openhands.sdk.context.view.view import View

    state = conversation.state
    cache = getattr(getattr(state, "_events", None), "_event_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    if isinstance(getattr(state, "_view", None), View):
        state._view = View()  # pyright: ignore[reportPrivateUsage]
    file_cache = getattr(getattr(state, "_fs", None), "cache", None)
    if file_cache is not None and callable(getattr(file_cache, "clear", None)):
        file_cache.clear()


def blocking_recover_interrupted_run(conversation: LocalConversation) -> None:
    """A conversation restored as `running` was cut off by a crash: make it resumable.

    The SDK writes each event file at once but saves its HEAD (`leaf_event_id`) lazily, so
    a tool call logged just before a crash sits past HEAD, where the next run would neither
    execute nor report it. Move HEAD to the newest event when it descends from HEAD, let the
    SDK add an error observation for every action left without a result (the agent and the
    client both see it), and mark the conversation paused.
    """
    from openhands.sdk.conversation.state import ConversationExecutionStatus
    from openhands.sdk.event import ConversationStateUpdateEvent

    state = conversation.state
    with state:
        events = [e for e in state.events if not isinstance(e, ConversationStateUpdateEvent)]
        if events and state.leaf_event_id is not None and events[-1].id != state.leaf_event_id:
            parents = {e.id: e.parent_id for e in events}
            cursor: str | None = events[-1].id
            while cursor is not None and cursor != state.leaf_event_id:
                cursor = parents.get(cursor)
            if cursor == state.leaf_event_id:
                state.leaf_event_id = events[-1].id
        conversation._emit_orphaned_action_errors()  # pyright: ignore[reportPrivateUsage]
        state.execution_status = ConversationExecutionStatus.PAUSED
