"""JSON errors everywhere: the app never answers with an HTML page or a traceback.

Shapes follow the reference server (FastAPI): `{"detail": "..."}` for plain errors and
`{"detail": [{"loc", "msg", "type"}, ...]}` for 422 validation errors.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from quart import Quart, Response, jsonify
from werkzeug.exceptions import HTTPException

from trio_openhands.core.errors import ApiError

log = logging.getLogger(__name__)


def json_error(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"detail": detail})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:  # pyright: ignore[reportUnusedFunction]
        return json_error(error.status, error.detail, error.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:  # pyright: ignore[reportUnusedFunction]
        status = error.code or 500
        headers: dict[str, str] = {}
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return json_error(status, error.description or error.name, headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:  # pyright: ignore[reportUnusedFunction]
        error_id = uuid.uuid4().hex
        log.error("unhandled error %s", error_id, exc_info=error)
        response = jsonify({"detail": "Internal Server Error", "error_id": error_id})
        response.status_code = 500
        return response
