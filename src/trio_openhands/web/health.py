"""Routes that need no conversation: liveness, readiness, server information.

`/server_info`'s `version` is the reference server's API version we implement, since the
official clients gate features on it (the web UI refuses a backend below 1.28.0); our own
name and version have fields of their own.
"""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version

from quart import Blueprint, Response

from trio_openhands.core.models import KNOWN_TOOLS
from trio_openhands.web.common import app, json_response
from trio_openhands.web.liveness import ALIVE
from trio_openhands.web.openapi import responses
from trio_openhands.web.response_bodies import Alive, Readiness, ServerInfo

blueprint = Blueprint("server", __name__)

# The openhands-agent-server release whose API this server implements (see README).
REFERENCE_API_VERSION = "1.58.2"
# The reference's capability flags that hold here: a create with an existing
# `conversation_id` answers that conversation; the workspace routes are served scoped to a
# conversation (`/api/conversations/{id}/bash|file|git/...`).
CAPABILITIES = ("conversation_runtime_routes_v1", "idempotent_conversation_create_v1")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@blueprint.get("/alive")
@blueprint.get("/health")
@responses(Alive)
async def alive() -> Response:
    return json_response(ALIVE)


@blueprint.get("/ready")
@responses({200: Readiness, 503: Readiness})
async def ready() -> Response:
    loader = app().sdk_loader
    if loader.ready and app().supervisor_ready:
        return json_response({"status": "ready"})
    if loader.error is not None:
        return json_response(
            {"status": "failed", "detail": "the OpenHands SDK could not be imported"}, 503
        )
    return json_response({"status": "initializing", "detail": "importing the OpenHands SDK"}, 503)


@blueprint.get("/server_info")
@blueprint.get("/")
@responses(ServerInfo)
async def server_info() -> Response:
    application = app()
    stats = application.supervisor.statistics() if application.supervisor_ready else {}
    return json_response(
        {
            "title": "trio-openhands",
            "version": REFERENCE_API_VERSION,
            "server_name": "trio-openhands",
            "server_version": _version("trio-openhands"),
            "sdk_version": _version("openhands-sdk"),
            "tools_version": _version("openhands-tools"),
            "python_version": platform.python_version(),
            "uptime": round(time.monotonic() - application.started_at, 3),
            "sdk_ready": application.sdk_loader.ready,
            "usable_tools": sorted(KNOWN_TOOLS),
            "conversation_runtime": "local",
            "available_conversation_runtimes": [],
            "capabilities": list(CAPABILITIES),
            "docs": "/docs",
            "statistics": stats,
        }
    )
