"""The reference's `POST /api/hooks`: a project's hooks (`.openhands/hooks.json`), which a
client may then send in a create's `hook_config`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from quart import Blueprint, Response

from trio_openhands.core.working_dirs import check_working_dir_text
from trio_openhands.services import hooks
from trio_openhands.web.api.installed import run_sdk
from trio_openhands.web.common import json_response, project_dir
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_optional_body

blueprint = Blueprint("api_hooks", __name__)


class HooksRequest(BaseModel):
    project_dir: Annotated[str, AfterValidator(check_working_dir_text)] | None = Field(
        default=None, description="Relative: in the server's workspace directory"
    )


class Hooks(BaseModel):
    """The SDK's `HookConfig`; null when the project has none (or no `project_dir`)."""

    hook_config: dict[str, Any] | None


@blueprint.post("/api/hooks")
@responses(Hooks, *BODY)
async def load_hooks() -> Response:
    """Every field is optional, so the body is too (no body: no project, no hooks)."""
    body = await parse_optional_body(HooksRequest)
    if (directory := project_dir(body.project_dir)) is None:
        return json_response({"hook_config": None})
    return json_response({"hook_config": await run_sdk(hooks.project_hooks, directory)})
