"""`/docs` works without internet: every script and style the page names is served here
(from the swagger-ui-py package), without a key, with its content type."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.test_openapi import keyed_server

if TYPE_CHECKING:
    from tests.conftest import LiveServer

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


__all__ = ["keyed_server"]  # the spec test's fixture


async def test_docs_page_loads_only_assets_this_server_serves(keyed_server: LiveServer) -> None:
    client = keyed_server.client  # no key sent: the page and its assets are open
    page = await client.get("/docs")
    assert page.status_code == 200
    html = page.text
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert sources, html
    for source in sources:
        assert not urlsplit(source).netloc, f"{source}: not served by this server"
    expected = {
        "/docs/swagger-ui-bundle.js": ("text/javascript", "SwaggerUIBundle"),
        "/docs/swagger-ui.css": ("text/css", ".swagger-ui"),
    }
    assert set(sources) == set(expected)
    for source, (content_type, marker) in expected.items():
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert asset.headers["content-type"].split(";")[0] == content_type
        assert marker in asset.text
    # The bundled Swagger UI is a 5.x one: it renders the OpenAPI 3.1 this server serves.
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    script = (await client.get("/docs/swagger-ui-bundle.js")).text
    assert re.search(r'"5\.\d+\.\d+"', script)
    assert (await client.get("/redocs")).status_code in (401, 404)  # no CDN page left


async def test_docs_assets_stay_out_of_the_spec(keyed_server: LiveServer) -> None:
    spec = (await keyed_server.client.get("/openapi.json")).json()
    assert not [path for path in spec["paths"] if path.startswith("/docs")]
