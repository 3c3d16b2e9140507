"""The reference server's workspace session (`POST|DELETE /api/auth/workspace-session`): a
cookie holding the caller's session key, so that a browser can load a conversation's
workspace files (workspace_static.py) in an `<iframe>` or `<img>`, which cannot send the
`X-Session-API-Key` header. security.py honours that cookie on those GET routes only: every
other route still needs the header, so the cookie adds no cross-site request forgery.

The cookie is `HttpOnly`, `SameSite=None` and scoped to `/api/conversations`; `Secure` (and
`Partitioned`, for third-party frames) when the request came over HTTPS, or to a loopback
host, which browsers treat as secure.
"""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, request

from trio_openhands.web.openapi import responses
from trio_openhands.web.security import API_KEY_HEADER, WORKSPACE_COOKIE

blueprint = Blueprint("api_auth", __name__)

COOKIE_PATH = "/api/conversations"
COOKIE_MAX_AGE = 10 * 365 * 24 * 3600  # browsers cap it at about 400 days
SECURE_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class NoContent(BaseModel):
    """Done; no body."""


def _secure_context() -> bool:
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if (scheme or request.scheme) == "https":
        return True
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.lower() in SECURE_HOSTS


def _cookie(value: str, max_age: int) -> Response:
    response = Response("", status=204)
    del response.headers["Content-Type"]
    secure = _secure_context()
    response.set_cookie(
        WORKSPACE_COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="None",
        partitioned=secure,  # browsers drop Partitioned without Secure
    )
    return response


@blueprint.post("/api/auth/workspace-session")
@responses({204: NoContent})
async def start_workspace_session() -> Response:
    """Set the cookie to the session key this request carries (checked by security.py)."""
    return _cookie(request.headers.get(API_KEY_HEADER, ""), COOKIE_MAX_AGE)


@blueprint.delete("/api/auth/workspace-session")
@responses({204: NoContent})
async def end_workspace_session() -> Response:
    """Clear the cookie (same name, path and attributes, expired)."""
    return _cookie("", 0)
