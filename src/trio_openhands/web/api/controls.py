"""The reference's conversation controls: `ask_agent`, `condense`, `fork`, `navigate`,
`switch_llm`, `switch_profile`, `switch_acp_model`, `load_plugin`, and the `runtime` that
runs a conversation.

Thin: parse, call `core.controls` (the SDK's own methods, owned by the conversation's
scope), answer in the reference's shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response
from quart_schema import document_querystring, document_request

from trio_openhands.core import controls, fork, sdk_bridge
from trio_openhands.core.agent_settings import PROFILE_NAME
from trio_openhands.core.errors import NotFound
from trio_openhands.web.api.conversations import info, loaded, success
from trio_openhands.web.api.models import API_TAGS_SCHEMA, ApiInfoQuery, StrictUuid, check_tags
from trio_openhands.web.api.settings import load_profile_llm
from trio_openhands.web.api.state import RUNTIME_INFO
from trio_openhands.web.common import app, json_response, parse_conversation_id, supervisor
from trio_openhands.web.openapi import BODY, LOADS, responses
from trio_openhands.web.request_parsing import parse_body, parse_optional_body, parse_query
from trio_openhands.web.response_bodies import ApiConversationInfo, Success

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


class SwitchAcpModelRequest(BaseModel):
    model: str = Field(description="The ACP agent's model")


class RuntimeInfo(BaseModel):
    """Where the conversation runs: here, in the server's process, always available."""

    runtime_status: Literal["available"]
    can_resume: bool
    runtime_error: None = None


class SwitchLlmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: LlmSettings


class SwitchProfileRequest(BaseModel):
    profile_name: str = Field(
        max_length=64, pattern=PROFILE_NAME, description="A saved LLM profile (/api/profiles)"
    )


class LoadPluginRequest(BaseModel):
    plugin_ref: str = Field(
        min_length=1, description="`name` or `name@marketplace` of a registered marketplace"
    )


class ForkRequest(BaseModel):
    """All optional; no body at all is a fork of the whole conversation."""

    model_config = ConfigDict(extra="forbid")

    id: StrictUuid | None = Field(default=None, description="The fork's id; null: a new one")
    title: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] | None = Field(default=None, json_schema_extra=API_TAGS_SCHEMA)
    reset_metrics: bool = Field(default=True, description="false: the source's costs too")
    from_event_id: str | None = Field(
        default=None, description="Copy only the branch up to this event, HEAD there"
    )

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, tags: dict[str, str] | None) -> dict[str, str] | None:
        return check_tags(tags)


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


@blueprint.post("/api/conversations/<raw_id>/fork")
@document_request(ForkRequest)
@document_querystring(ApiInfoQuery)
@responses({201: ApiConversationInfo}, 409, *BODY, *LOADS)
async def fork_conversation(raw_id: str) -> Response:
    """A new conversation with a copy of this one's history (the SDK's `fork`), idle: a
    message or `run` continues it with the source's memory. 404 for an unknown conversation
    or `from_event_id`, 409 for an `id` already taken."""
    query = parse_query(ApiInfoQuery)
    request = await parse_optional_body(ForkRequest)
    source = await loaded(raw_id)
    forked = await fork.fork(
        supervisor(),
        source,
        fork_id=request.id,
        title=request.title,
        tags=request.tags,
        reset_metrics=request.reset_metrics,
        from_event_id=request.from_event_id,
    )
    return json_response(info(forked.record, forked, query.include_skills), 201)


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


@blueprint.post("/api/conversations/<raw_id>/switch_profile")
@document_request(SwitchProfileRequest)
@responses(Success, 400, *BODY, *LOADS)
async def switch_profile(raw_id: str) -> Response:
    """The LLM of a saved profile for the agent from now on, as `switch_llm` (404 for an
    unknown profile, 400 for one that does not load)."""
    request = await parse_body(SwitchProfileRequest)
    conversation = await loaded(raw_id)
    llm = await load_profile_llm(request.profile_name)
    # The SDK's registry key for a profile's LLM, as its own switch_profile uses.
    llm = llm.model_copy(update={"usage_id": f"profile:{request.profile_name}"})
    await controls.switch_llm(conversation, llm)
    return success()


@blueprint.post("/api/conversations/<raw_id>/load_plugin")
@document_request(LoadPluginRequest)
@responses(Success, 400, *BODY, *LOADS)
async def load_plugin(raw_id: str) -> Response:
    """A plugin from the agent's registered marketplaces (`agent_context.
    registered_marketplaces`), added to the running agent by the SDK."""
    request = await parse_body(LoadPluginRequest)
    conversation = await loaded(raw_id)
    await controls.load_plugin(conversation, request.plugin_ref)
    return success()


@blueprint.post("/api/conversations/<raw_id>/switch_acp_model")
@document_request(SwitchAcpModelRequest)
@responses(Success, 400, *BODY, *LOADS)
async def switch_acp_model(raw_id: str) -> Response:
    """The SDK's `switch_acp_model`: a 400 for a conversation whose agent is not ACP (every
    one here: an ACPAgent is refused at create)."""
    request = await parse_body(SwitchAcpModelRequest)
    conversation = await loaded(raw_id)
    await controls.switch_acp_model(conversation, request.model)
    return success()


@blueprint.get("/api/conversations/<raw_id>/runtime")
@responses(RuntimeInfo, *LOADS)
async def runtime(raw_id: str) -> Response:
    """The reference's local runtime answer (`RUNTIME_INFO`). Never loads the conversation."""
    conversation_id = parse_conversation_id(raw_id)
    if conversation_id not in supervisor().records:
        raise NotFound(f"Conversation not found: {conversation_id}")
    return json_response(RUNTIME_INFO)


@blueprint.post("/api/conversations/<raw_id>/runtime/reprovision")
@responses(RuntimeInfo, *LOADS)
async def reprovision_runtime(raw_id: str) -> Response:
    """Nothing to provision for an in-process runtime: the same answer as `runtime`."""
    return await runtime(raw_id)
