"""The `/docs` page's Swagger UI script and style, served from the `swagger-ui-py` package.

quart-schema's page loads them from a public CDN, so on a machine without internet it
stays blank; here they come from this server (`configure` points the page at them), which
serves them without a key, as it serves `/docs`. The page itself stays quart-schema's.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response
from quart_schema import hide

if TYPE_CHECKING:
    from quart import Quart

blueprint = Blueprint("docs_assets", __name__)

SCRIPT_PATH = "/docs/swagger-ui-bundle.js"
STYLE_PATH = "/docs/swagger-ui.css"
ASSET_PATHS = frozenset({SCRIPT_PATH, STYLE_PATH})
_CONTENT_TYPES = {
    SCRIPT_PATH: "text/javascript; charset=utf-8",
    STYLE_PATH: "text/css; charset=utf-8",
}


def configure(app: Quart) -> None:
    """Point quart-schema's Swagger page at the assets served here."""
    app.config.update(
        QUART_SCHEMA_SWAGGER_JS_URL=SCRIPT_PATH, QUART_SCHEMA_SWAGGER_CSS_URL=STYLE_PATH
    )


async def _asset(path: str) -> Response:
    # importlib.resources finds the package's own files, wherever it is installed (a wheel,
    # the standalone executable's bundle); read in a thread: 1.5 MB.
    name = path.rsplit("/", 1)[1]
    source = files("swagger_ui") / "static" / name
    body = await trio.to_thread.run_sync(source.read_bytes)
    response = Response(body, content_type=_CONTENT_TYPES[path])
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@blueprint.get(SCRIPT_PATH)
@hide
async def swagger_script() -> Response:
    return await _asset(SCRIPT_PATH)


@blueprint.get(STYLE_PATH)
@hide
async def swagger_style() -> Response:
    return await _asset(STYLE_PATH)
