"""Who may talk to the server: session keys, hosts, browser origins, body types, CORS.

When keys are configured, every route but the open ones needs `X-Session-API-Key`; several
keys may be valid at once so that they can be rotated. Comparison is constant-time.
Browsers may pass the key to a WebSocket as `?session_api_key=`, since they cannot set headers.

A server with no key is still protected from the web pages its user visits:
- *DNS rebinding*: bound to loopback, only loopback names (and `allowed_hosts`) are valid in
  `Host` (421 otherwise), so a page whose name was re-pointed at 127.0.0.1 gets no answer.
- *Cross-site requests*: a state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket
  from a browser page of a foreign origin (`Origin`, or `Sec-Fetch-Site: cross-site`) is
  refused with 403 unless it carries a valid key. Same-origin and allowed origins pass.
- *Simple requests*: a body must be `application/json` (415 otherwise), so an HTML form or a
  `text/plain` fetch, which browsers send without a CORS preflight, cannot smuggle JSON in.
  The one exception is a view marked `@accepts_multipart` (the file upload), which also
  takes `multipart/form-data`; the origin check above still applies to it.
"""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from quart import Quart, Response, request, websocket

from trio_openhands.web.docs import ASSET_PATHS as DOCS_ASSETS
from trio_openhands.web.hosts import host_is_allowed, is_loopback_name
from trio_openhands.web.json_errors import json_error

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from quart.wrappers import BaseRequestWebsocket
    from werkzeug.datastructures import Headers

    from trio_openhands.settings import Settings

API_KEY_HEADER = "X-Session-API-Key"
API_KEY_QUERY = "session_api_key"
# api/auth.py's cookie: a session key a browser sends with a conversation's workspace files
# (iframes and images send no headers), honoured on those GET routes and nowhere else.
WORKSPACE_COOKIE = "oh_workspace_session_key"
WORKSPACE_FILES = re.compile(r"/api/conversations/[^/]+/workspace(/.*)?")
OPEN_PATHS = frozenset(
    {"/alive", "/health", "/ready", "/server_info", "/", "/docs", "/openapi.json"}
    | DOCS_ASSETS  # the /docs page's script and style
)
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART_ATTRIBUTE = "accepts_multipart"


def accepts_multipart[F: Callable[..., Any]](view: F) -> F:
    """Mark a view that takes a `multipart/form-data` body (`_guard` refuses it elsewhere)."""
    setattr(view, MULTIPART_ATTRIBUTE, True)
    return view


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
    try:
        hostname = parts.hostname
    except ValueError:  # an unparsable netloc such as "http://[x"
        return False
    if parts.scheme in ("http", "https") and hostname is not None and is_loopback_name(hostname):
        return True
    for allowed in configured:
        if allowed == "*" or allowed.rstrip("/") == origin.rstrip("/"):
            return True
        if allowed.startswith("regex:") and re.fullmatch(allowed.removeprefix("regex:"), origin):
            return True
    return False


def cross_site_origin(connection: BaseRequestWebsocket, cors_origins: Iterable[str]) -> str | None:
    """The foreign origin a browser says this request comes from, or None if it is ours."""
    origin = connection.headers.get("Origin")
    if origin is None:
        # Browsers that omit Origin (some same-origin GETs) still tell where it came from.
        site = connection.headers.get("Sec-Fetch-Site")
        return "a cross-site page" if site == "cross-site" else None
    if origin_is_allowed(origin, cors_origins):
        return None
    try:
        if urlsplit(origin).netloc == connection.host and connection.host:
            return None  # same origin: a page this server served (e.g. /docs)
    except ValueError:
        pass
    return origin


def _has_body(headers: Headers) -> bool:
    length = headers.get("Content-Length")
    return (length is not None and length.strip() not in ("", "0")) or (
        "chunked" in headers.get("Transfer-Encoding", "").lower()
    )


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def install_security(app: Quart, settings: Settings) -> None:
    keys, cors_origins = settings.session_api_keys, settings.cors_origins

    def refuse_host(connection: BaseRequestWebsocket) -> Response | None:
        if host_is_allowed(connection.headers.get("Host", ""), settings):
            return None
        return json_error(
            421, "Misdirected request: this server does not answer for that Host header"
        )

    @app.before_request
    async def _guard() -> Response | None:  # pyright: ignore[reportUnusedFunction]
        if (refused := refuse_host(request)) is not None:
            return refused
        origin = request.headers.get("Origin")
        if (
            request.method == "OPTIONS"
            and origin
            and "Access-Control-Request-Method" in request.headers
        ):
            return _preflight(origin, cors_origins)
        has_valid_key = key_is_valid(request.headers.get(API_KEY_HEADER), keys) or (
            request.method == "GET"
            and WORKSPACE_FILES.fullmatch(request.path) is not None
            and key_is_valid(request.cookies.get(WORKSPACE_COOKIE), keys)
        )
        if keys and not has_valid_key and not _is_open(request.path):
            return json_error(401, "Unauthorized")
        if request.method not in STATE_CHANGING_METHODS or has_valid_key:
            return None
        if (foreign := cross_site_origin(request, cors_origins)) is not None:
            return json_error(403, f"Cross-origin request refused from {foreign}")
        if (
            request.routing_exception is None
            and _has_body(request.headers)
            and not _is_json(request.mimetype)
            and not _multipart_allowed(app)
        ):
            return json_error(415, "Unsupported Media Type: the body must be application/json")
        return None

    @app.before_websocket
    async def _guard_websocket() -> Response | None:  # pyright: ignore[reportUnusedFunction]
        if (refused := refuse_host(websocket)) is not None:
            return refused
        presented = websocket.headers.get(API_KEY_HEADER) or websocket.args.get(API_KEY_QUERY)
        if key_is_valid(presented, keys):
            return None
        if (foreign := cross_site_origin(websocket, cors_origins)) is not None:
            return json_error(403, f"Cross-origin WebSocket refused from {foreign}")
        return None

    @app.after_request
    async def _cors(response: Response) -> Response:  # pyright: ignore[reportUnusedFunction]
        origin = request.headers.get("Origin")
        if origin and origin_is_allowed(origin, cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers.add("Vary", "Origin")
        return response


def _multipart_allowed(app: Quart) -> bool:
    """A multipart/form-data body sent to a view marked `@accepts_multipart`."""
    if request.mimetype != "multipart/form-data" or request.endpoint is None:
        return False
    view = app.view_functions.get(request.endpoint)
    return getattr(view, MULTIPART_ATTRIBUTE, False) is True


def _preflight(origin: str, cors_origins: Iterable[str]) -> Response:
    if not origin_is_allowed(origin, cors_origins):
        return json_error(400, "Disallowed CORS origin")
    response = Response("", status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = request.headers.get(
        "Access-Control-Request-Headers", "*"
    )
    response.headers["Access-Control-Max-Age"] = "600"
    return response  # CORS headers proper are added by _cors.


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.rstrip("/") in OPEN_PATHS
