"""The seed dialect's create: the SDK agent built from its request, then started.

The supervisor starts conversations with agents its callers built (`create_with_agent`):
this builds the seed's, for `POST /conversations`; the /api dialect builds its own (web/api/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_openhands.core import sdk_bridge

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.models import StartConversationRequest
    from trio_openhands.core.supervisor import Supervisor


async def create_seed_conversation(
    supervisor: Supervisor, request: StartConversationRequest
) -> Conversation:
    """Build the agent from the request, then start it (and send its initial message)."""
    await supervisor.sdk_loader.wait_ready()
    llm = sdk_bridge.build_llm(request.llm, supervisor.settings.llm_api_key)
    agent = sdk_bridge.build_agent(request, llm)
    stored_request = request.model_dump(mode="json", exclude={"initial_message", "title", "tags"})
    stored_request["llm"] = {k: v for k, v in request.llm.items() if k != "api_key"}
    stored_request["has_api_key"] = bool(request.llm.get("api_key"))
    stored_request["mcp_config"] = sdk_bridge.redact_mcp_config(request.mcp_config)
    conversation, _ = await supervisor.create_with_agent(
        None,
        agent,
        stored_request,
        title=request.title,
        tags=request.tags,
        confirmation_mode=request.confirmation_mode,
    )
    if request.initial_message is not None:
        message = sdk_bridge.to_message(request.initial_message.content)
        await conversation.send_message(message, run=request.initial_message.run)
    return conversation
