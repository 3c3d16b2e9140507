"""The reference server's `POST /api/sub-agents` (the TypeScript client's
`SubAgentsClient.getSubAgents`): the sub-agents an agent working in a project could delegate
to. The discovery is the SDK's, in services/sub_agents.py."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from quart import Blueprint, Response

from trio_openhands.core.working_dirs import check_working_dir_text
from trio_openhands.services import sub_agents
from trio_openhands.web.api.installed import run_sdk
from trio_openhands.web.common import json_response, project_dir
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

blueprint = Blueprint("api_sub_agents", __name__)


class SubAgentsRequest(BaseModel):
    """Where to look; a relative `project_dir` lies in the server's workspace directory."""

    load_user: bool = True
    load_project: bool = True
    load_builtin: bool = True
    project_dir: Annotated[str, AfterValidator(check_working_dir_text)] | None = None


class SubAgentInfo(BaseModel):
    """An SDK `AgentDefinition`, every field, with where it was found."""

    name: str
    description: str = ""
    model: str = "inherit"
    color: str | None = None
    tools: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    system_prompt: str = ""
    when_to_use_examples: list[str] = Field(default_factory=list)
    permission_mode: str | None = None
    max_iteration_per_run: int | None = None
    max_budget_per_run: float | None = None
    mcp_config: dict[str, Any] | None = None
    mcp_servers: dict[str, Any] | None = Field(
        default=None, deprecated=True, description="The older name of `mcp_config`."
    )
    profile_store_dir: str | None = None
    hooks: dict[str, Any] | None = None
    condenser: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    level: str | None = None
    source: str | None = None
    is_builtin: bool = False


class SubAgentsResponse(BaseModel):
    """Project, then user, then built-in definitions; the first of a name wins."""

    agents: list[SubAgentInfo]


@blueprint.post("/api/sub-agents")
@responses(SubAgentsResponse, *BODY)
async def list_sub_agents() -> Response:
    """The file-based and built-in sub-agents for a workspace (nothing is registered)."""
    body = await parse_body(SubAgentsRequest)
    sources = sub_agents.SubAgentSources(
        load_user=body.load_user,
        load_project=body.load_project,
        load_builtin=body.load_builtin,
        project_dir=project_dir(body.project_dir),
    )
    return json_response({"agents": await run_sdk(sub_agents.discover, sources)})
