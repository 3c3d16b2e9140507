"""The reference server's VS Code routes, answered as the reference answers them when VS
Code is disabled: this server never runs a VS Code (OpenVSCode) server.

`status` says so (`enabled: false`), `url` is a 503, as in the reference; both host-wide
and scoped to a conversation.
"""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response

from trio_openhands.core.errors import ApiError
from trio_openhands.web.api.workspace import conversation_root
from trio_openhands.web.common import json_response
from trio_openhands.web.openapi import LOADS, responses

blueprint = Blueprint("api_vscode", __name__)

DISABLED = "VS Code is not part of this server (trio-openhands runs no VS Code server)"


class VSCodeStatus(BaseModel):
    """Whether a VS Code server runs: never here."""

    running: bool
    enabled: bool
    message: str | None = None


class VSCodeUrl(BaseModel):
    """The reference's answer when VS Code runs (this server answers 503)."""

    url: str | None


def _status() -> Response:
    return json_response({"running": False, "enabled": False, "message": DISABLED})


@blueprint.get("/api/vscode/status")
@responses(VSCodeStatus)
async def vscode_status() -> Response:
    return _status()


@blueprint.get("/api/conversations/<raw_id>/vscode/status")
@responses(VSCodeStatus, *LOADS)
async def vscode_conversation_status(raw_id: str) -> Response:
    await conversation_root(raw_id)  # 404 for an unknown conversation
    return _status()


@blueprint.get("/api/vscode/url")
@responses(VSCodeUrl, 503)
async def vscode_url() -> Response:
    raise ApiError(503, DISABLED)


@blueprint.get("/api/conversations/<raw_id>/vscode/url")
@responses(VSCodeUrl, *LOADS)
async def vscode_conversation_url(raw_id: str) -> Response:
    await conversation_root(raw_id)
    raise ApiError(503, DISABLED)
