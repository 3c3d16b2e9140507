"""What an `/api` client sees of a conversation: its ConversationInfo, and the
`ConversationStateUpdateEvent` frames its socket gets (the `full_state` snapshot on
subscribing and after every run, single-field updates).

A loaded conversation is described from the SDK's live state, read without its lock: a
run may hold the lock for a whole tool call, and GET must not wait for it. A dump that
meets a container changing size on an SDK thread is retried. The SDK's serializers redact
the LLM key and secret values. A stored conversation that is not loaded is
described from what the server kept of its creation request, so that listing
conversations never loads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trio_openhands.core.sdk_bridge import REDACTED

if TYPE_CHECKING:
    from pathlib import Path

    from openhands.sdk import LocalConversation
    from openhands.sdk.conversation.state import ConversationState

    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.conversation_record import ConversationRecord

DUMP_ATTEMPTS = 3
FULL_STATE_KEY = "full_state"  # the SDK's openhands.sdk.event.conversation_state.FULL_STATE_KEY
# The reference's local runtime: conversations run in the server's process, so their
# runtime is always there and a stopped one can resume.
RUNTIME_INFO = {"runtime_status": "available", "can_resume": True, "runtime_error": None}


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def conversation_info(
    record: ConversationRecord,
    loaded: Conversation | None,
    *,
    conversations_dir: Path,
    include_skills: bool = False,
) -> dict[str, Any]:
    """The reference's ConversationInfo: the SDK's ConversationState (events aside) plus
    what the server keeps (title, tags, times, the creation options the client reads back,
    its runtime's availability), and ours: `event_count`, `waiting_for_run_slot`."""
    if loaded is not None and loaded.sdk is not None:
        info = _live_state(loaded.sdk)
        info["execution_status"] = loaded.status
        info["event_count"] = len(loaded.log)
        info["waiting_for_run_slot"] = loaded.waiting_for_slot
    else:
        info = _stored_state(record, conversations_dir)
    request = record.request
    info.update(
        id=str(record.id),
        title=record.title,
        tags=record.tags,
        created_at=utc_text(record.created_at),
        updated_at=utc_text(record.updated_at),
        max_iterations=request.get("max_iterations", 500),
        stuck_detection=request.get("stuck_detection", True),
        client_tools=request.get("client_tools", []),
        tool_module_qualnames=request.get("tool_module_qualnames", {}),
        plugins=request.get("plugins"),
        parent_conversation_id=request.get("parent_conversation_id"),
        sub_conversation_ids=[],
        forked_from_conversation_id=request.get("forked_from_conversation_id"),
        forked_from_event_id=request.get("forked_from_event_id"),
        runtime_info=dict(RUNTIME_INFO),
        launched_agent_profile=request.get("launched_agent_profile"),
        metrics=None,  # as the reference's local server: the figures are in `stats`
        # An ACP agent's model picker; native agents (the only kind served) have none.
        current_model_id=None,
        available_models=[],
        supports_runtime_model_switch=False,
    )
    if info.get("hook_config") is None:  # the SDK sets its own at the first message or run
        info["hook_config"] = request.get("hook_config")
    if not include_skills:
        info["agent"] = _without_skills(info.get("agent"))
    return info


def _live_state(sdk: LocalConversation) -> dict[str, Any]:
    state = sdk.state
    for _ in range(DUMP_ATTEMPTS - 1):
        try:
            return _dump(state)
        except RuntimeError:  # a container changed size mid-dump on another thread: retry
            pass
    return _dump(state)


def _dump(state: ConversationState) -> dict[str, Any]:
    # `use_snapshot`: per-LLM totals instead of every call's metrics (the SDK's own choice
    # for the socket), so the size stays flat however long the conversation.
    return state.model_dump(mode="json", context={"use_snapshot": True})


def _stored_state(record: ConversationRecord, conversations_dir: Path) -> dict[str, Any]:
    request = record.request
    confirmation_policy = request.get("confirmation_policy") or {
        "kind": "AlwaysConfirm" if request.get("confirmation_mode") else "NeverConfirm"
    }
    working_dir = (request.get("workspace") or {}).get("working_dir")
    return {
        "agent": request.get("agent") or _agent_of_seed_request(request),
        "workspace": {"kind": "LocalWorkspace", "working_dir": working_dir},
        "persistence_dir": str(conversations_dir / record.id.hex),
        "execution_status": record.status,
        "confirmation_policy": confirmation_policy,
        "security_analyzer": request.get("security_analyzer"),
        "activated_knowledge_skills": [],
        "invoked_skills": [],
        "stats": {"usage_to_metrics": {}},
        "secret_registry": {"secret_sources": {}},
        "hook_config": None,  # the record's, below
        "last_user_message_id": None,
        "leaf_event_id": None,
    }


def _agent_of_seed_request(request: dict[str, Any]) -> dict[str, Any]:
    """A conversation started on the seed paths, as an `Agent` dump."""
    llm = dict(request.get("llm") or {})
    if request.get("has_api_key"):
        llm["api_key"] = REDACTED
    return {
        "kind": "Agent",
        "llm": llm,
        "tools": request.get("tools", []),
        "mcp_config": request.get("mcp_config", {}),
        "agent_context": request.get("agent_context"),
    }


def _without_skills(agent: Any) -> Any:
    """Skills can be large: the reference leaves them out unless `include_skills=true`."""
    if not isinstance(agent, dict):
        return agent
    context = agent.get("agent_context")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(context, dict) or not context.get("skills"):  # pyright: ignore[reportUnknownMemberType]
        return agent  # pyright: ignore[reportUnknownVariableType]
    return {**agent, "agent_context": {**context, "skills": []}}


def state_update_frame(key: str, value: Any) -> str:
    """A `ConversationStateUpdateEvent` frame, as the SDK makes them."""
    from openhands.sdk.event import ConversationStateUpdateEvent

    return ConversationStateUpdateEvent(key=key, value=value).model_dump_json()


def full_state_frame(conversation: Conversation, conversations_dir: Path) -> str:
    info = conversation_info(conversation.record, conversation, conversations_dir=conversations_dir)
    return state_update_frame(FULL_STATE_KEY, info)
