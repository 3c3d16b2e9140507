"""The reference server's tool listing (`GET /api/tools/`): the names of the tools an agent
on this server can use, the SDK's registry as this server filled it.

The reference registers every tool the SDK ships (browser, Gemini and planning tools too)
at import; here the registry holds the tools this server loads (terminal, file editor, task
tracker, and any other `openhands.tools` module a conversation named), so the list says
what would run.
"""

from __future__ import annotations

import trio
from pydantic import RootModel
from quart import Blueprint, Response

from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import responses

blueprint = Blueprint("api_tools", __name__)


class ToolNames(RootModel[list[str]]):
    """The registered tools' names, sorted."""


def _registered() -> list[str]:
    from openhands.sdk.tool.registry import list_registered_tools

    return sorted(list_registered_tools())


@blueprint.get("/api/tools/")
@blueprint.get("/api/tools")
@responses(ToolNames)
async def list_tools() -> Response:
    await app().sdk_loader.wait_ready()
    return json_response(await trio.to_thread.run_sync(_registered))
