"""The reference's conversation controls: `ask_agent`, `condense`, `navigate`, `switch_llm`.

Thin: parse, call `core.controls` (the SDK's own methods, owned by the conversation's
scope), answer in the reference's shapes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response
from quart_schema import document_request

from trio_openhands.core import controls, sdk_bridge
from trio_openhands.web.api.conversations import info, loaded, success
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, LOADS, ApiConversationInfo, Success, responses
from trio_openhands.web.request_parsing import parse_body

blueprint = Blueprint("api_controls", __name__)


class AskAgentRequest(BaseModel):
    question: str = Field(description="The question to ask the agent")


class AskAgentResponse(BaseModel):
    """The answer; the conversation is left as it was."""

    response: str


class NavigateRequest(BaseModel):
    event_id: str | None = Field(default=None, description="The new HEAD; null: empty tree")


class LlmSettings(BaseModel):
    """The SDK's LLM settings (checked by the SDK); `model` first, whose checks a non-string
    would crash."""

    model_config = ConfigDict(extra="allow")

    model: str


class SwitchLlmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: LlmSettings


@blueprint.post("/api/conversations/<raw_id>/ask_agent")
@document_request(AskAgentRequest)
@responses(AskAgentResponse, *BODY, *LOADS)
async def ask_agent(raw_id: str) -> Response:
    """A side question answered by the conversation's LLM; nothing logged or changed."""
    request = await parse_body(AskAgentRequest)
    conversation = await loaded(raw_id)
    return json_response({"response": await controls.ask_agent(conversation, request.question)})


@blueprint.post("/api/conversations/<raw_id>/condense")
@responses(Success, 409, *LOADS)
async def condense(raw_id: str) -> Response:
    """Force a condensation; 409 when the agent has no condenser that takes requests."""
    conversation = await loaded(raw_id)
    await controls.condense(conversation)
    return success()


@blueprint.post("/api/conversations/<raw_id>/navigate")
@document_request(NavigateRequest)
@responses(ApiConversationInfo, *BODY, *LOADS)
async def navigate(raw_id: str) -> Response:
    """Move HEAD to an event of the log (404 for an unknown one): the agent's next run sees
    that branch; the conversation after the move."""
    request = await parse_body(NavigateRequest)
    conversation = await loaded(raw_id)
    await controls.navigate(conversation, request.event_id)
    return json_response(info(conversation.record, conversation))


@blueprint.post("/api/conversations/<raw_id>/switch_llm")
@document_request(SwitchLlmRequest)
@responses(Success, *BODY, *LOADS)
async def switch_llm(raw_id: str) -> Response:
    """Another LLM for the agent from now on (the server's key when it carries none); the
    SDK logs the new `agent` as a state update, its key redacted."""
    request = await parse_body(SwitchLlmRequest)
    conversation = await loaded(raw_id)
    llm = sdk_bridge.build_llm(request.llm.model_dump(), app().settings.llm_api_key)
    await controls.switch_llm(conversation, llm)
    return success()
