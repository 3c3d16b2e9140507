"""Conversation controls beyond run and pause: a side question, condensation, moving HEAD,
another LLM, another ACP model, a marketplace plugin.

Each is the SDK's own `LocalConversation` method. They block (an LLM call, the state lock),
so each runs in a worker thread owned by the conversation's scope (`Conversation.run_owned`):
a delete or shutdown does not wait for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trio_openhands.core.errors import ApiError, Conflict, NotFound

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation


async def ask_agent(conversation: Conversation, question: str) -> str:
    """The conversation's LLM answers a side question; nothing is logged or changed."""
    sdk = conversation.sdk
    assert sdk is not None
    return await conversation.run_owned(sdk.ask_agent, question)


async def condense(conversation: Conversation) -> None:
    """Force a condensation of the history (one agent step that runs the condenser)."""
    sdk = conversation.sdk
    assert sdk is not None
    condenser = sdk.agent.condenser
    if condenser is None:
        raise Conflict("Cannot condense conversation: No condenser configured")
    if not condenser.handles_condensation_requests():
        raise Conflict(
            "Cannot condense conversation: Condenser "
            f"{type(condenser).__name__} does not handle condensation requests"
        )
    await conversation.run_owned(sdk.condense)


async def navigate(conversation: Conversation, event_id: str | None) -> None:
    """Move HEAD to `event_id` (None: the empty tree); every branch stays in the log."""
    sdk = conversation.sdk
    assert sdk is not None
    if event_id is not None and conversation.log.get(event_id) is None:
        raise NotFound(f"Unknown event_id: {event_id}")
    await conversation.run_owned(sdk.navigate_to, event_id)


async def switch_llm(conversation: Conversation, llm: Any) -> None:
    """Install another LLM on the agent (the SDK logs the new `agent` as a state update)."""
    sdk = conversation.sdk
    assert sdk is not None
    await conversation.run_owned(sdk.switch_llm, llm)


async def switch_acp_model(conversation: Conversation, model: str) -> None:
    """The model of an ACP agent; the SDK refuses any other agent (a 400)."""
    sdk = conversation.sdk
    assert sdk is not None
    try:
        await conversation.run_owned(sdk.switch_acp_model, model)
    except ValueError as error:
        raise ApiError(400, str(error)) from None


async def load_plugin(conversation: Conversation, plugin_ref: str) -> None:
    """A plugin of the agent's registered marketplaces (its skills, MCP servers, hooks),
    fetched and added by the SDK: 404 for an unknown plugin or marketplace, 400 for any
    other refusal (no marketplace registered, a fetch that failed), as the reference."""
    from openhands.sdk.marketplace.registry import (
        MarketplaceNotFoundError,
        PluginNotFoundError,
        PluginResolutionError,
    )
    from openhands.sdk.plugin import PluginFetchError

    sdk = conversation.sdk
    assert sdk is not None
    try:
        await conversation.run_owned(sdk.load_plugin, plugin_ref)
    except (PluginNotFoundError, MarketplaceNotFoundError) as error:
        raise NotFound(str(error)) from None
    except (PluginResolutionError, PluginFetchError, FileNotFoundError, ValueError) as error:
        raise ApiError(400, str(error)) from None
