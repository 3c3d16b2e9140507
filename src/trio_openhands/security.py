"""Session API keys and CORS.

When keys are configured, every route but the open ones needs `X-Session-API-Key`; several
keys may be valid at once so that they can be rotated. Comparison is constant-time.
Browsers may pass the key to a WebSocket as `?session_api_key=`, since they cannot set headers.
"""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from quart import Quart, Response, request

from trio_openhands.errors import json_error

if TYPE_CHECKING:
    from collections.abc import Iterable

API_KEY_HEADER = "X-Session-API-Key"
OPEN_PATHS = frozenset(
    {"/alive", "/health", "/ready", "/server_info", "/", "/docs", "/openapi.json", "/redocs"}
)
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def key_is_valid(candidate: str | None, keys: Iterable[str]) -> bool:
    """Constant-time check against every configured key (no early exit on a match)."""
    if candidate is None:
        return False
    encoded = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(encoded, key.encode())
    return matched


def origin_is_allowed(origin: str, configured: Iterable[str]) -> bool:
    """Any localhost/127.0.0.1 origin (any port), plus configured origins (`*` allows all)."""
    parts = urlsplit(origin)
    if parts.scheme in ("http", "https") and parts.hostname is not None:
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if host in _LOCAL_HOSTS or parts.hostname in _LOCAL_HOSTS:
            return True
    for allowed in configured:
        if allowed == "*" or allowed.rstrip("/") == origin.rstrip("/"):
            return True
        if allowed.startswith("regex:") and re.fullmatch(allowed.removeprefix("regex:"), origin):
            return True
    return False


def install_security(
    app: Quart, session_api_keys: tuple[str, ...], cors_origins: tuple[str, ...]
) -> None:
    @app.before_request
    async def _guard() -> Response | None:  # pyright: ignore[reportUnusedFunction]
        origin = request.headers.get("Origin")
        if (
            request.method == "OPTIONS"
            and origin
            and "Access-Control-Request-Method" in request.headers
        ):
            if not origin_is_allowed(origin, cors_origins):
                return json_error(400, "Disallowed CORS origin")
            response = Response("", status=204)
            response.headers["Access-Control-Allow-Methods"] = (
                "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            )
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "*"
            )
            response.headers["Access-Control-Max-Age"] = "600"
            return response  # CORS headers proper are added by _cors below.
        needs_key = session_api_keys and not _is_open(request.path)
        if needs_key and not key_is_valid(request.headers.get(API_KEY_HEADER), session_api_keys):
            return json_error(401, "Unauthorized")
        return None

    @app.after_request
    async def _cors(response: Response) -> Response:  # pyright: ignore[reportUnusedFunction]
        origin = request.headers.get("Origin")
        if origin and origin_is_allowed(origin, cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers.add("Vary", "Origin")
        return response


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.rstrip("/") in OPEN_PATHS
