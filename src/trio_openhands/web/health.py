"""Routes that need no conversation: liveness, readiness, server information."""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version

from quart import Blueprint, Response

from trio_openhands.core.models import KNOWN_TOOLS
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import Alive, Readiness, ServerInfo, responses

blueprint = Blueprint("server", __name__)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@blueprint.get("/alive")
@blueprint.get("/health")
@responses(Alive)
async def alive() -> Response:
    return json_response({"status": "ok"})


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
            "version": _version("trio-openhands"),
            "sdk_version": _version("openhands-sdk"),
            "tools_version": _version("openhands-tools"),
            "python_version": platform.python_version(),
            "uptime": round(time.monotonic() - application.started_at, 3),
            "sdk_ready": application.sdk_loader.ready,
            "usable_tools": sorted(KNOWN_TOOLS),
            "statistics": stats,
        }
    )
