"""A keyless server on loopback against the web pages its user visits: cross-site requests
(CSRF), DNS rebinding and cross-site WebSockets. Each attack is sent as a browser would send
it, to the real server, and nothing may run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.conftest import LiveServer, llm_settings, start_server, test_settings
from trio_openhands.settings import Settings
from trio_openhands.testing.fake_llm import FakeLLM, tool_call
from trio_openhands.web.security import host_is_allowed

if TYPE_CHECKING:
    from pathlib import Path

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


async def raw_exchange(server: LiveServer, request: bytes) -> bytes:
    """Send raw bytes (headers no client library would send) and read the first answer."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            return await stream.receive_some(65536)


def attack_body(fake_llm: FakeLLM, marker_file: Path) -> dict[str, Any]:
    """What a hostile page posts: its own LLM, a terminal, and a first message that runs."""
    tag = fake_llm.script("pwn", [tool_call("terminal", {"command": f"touch {marker_file}"})])
    return {
        "llm": llm_settings(fake_llm),
        "tools": [{"name": "terminal"}],
        "initial_message": {"role": "user", "content": [{"type": "text", "text": f"go {tag}"}]},
    }


async def assert_nothing_ran(server: LiveServer, fake_llm: FakeLLM, marker_file: Path) -> None:
    listed = await server.client.get("/conversations/search")
    assert listed.json()["items"] == []
    assert fake_llm.requests == []
    assert not await trio.Path(marker_file).exists()


@pytest.mark.parametrize(
    "headers",
    [
        # A CORS "simple" request: no preflight, the browser sends it as is.
        {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},  # some browsers omit Origin on simple requests
        {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "multipart/form-data; boundary=x", "Origin": "null"},
        # JSON needs a preflight, which a foreign origin fails; the request itself is refused
        # too, in case a browser or proxy skips it.
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_a_cross_site_page_cannot_start_a_conversation(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path, headers: dict[str, str]
) -> None:
    marker_file = tmp_path / "pwned.txt"
    body = json.dumps(attack_body(fake_llm, marker_file))
    for path in ("/conversations", "/api/conversations"):
        response = await server.client.post(path, content=body, headers=headers)
        assert response.status_code in (403, 415), response.text
        assert response.headers["content-type"] == "application/json"
        assert "detail" in response.json()
    await assert_nothing_ran(server, fake_llm, marker_file)


async def test_refusals_name_the_reason(server: LiveServer) -> None:
    text_plain = await server.client.post(
        "/conversations", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert text_plain.status_code == 415
    assert "application/json" in text_plain.json()["detail"]
    foreign = await server.client.post(
        "/conversations", json={}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert "https://evil.example" in foreign.json()["detail"]
    # A body-less control from a foreign page is refused as well (pause, delete, ...).
    conversation_id = "0" * 32
    for method in ("POST", "DELETE"):
        path = f"/api/conversations/{conversation_id}" + ("/pause" if method == "POST" else "")
        refused = await server.client.request(
            method, path, headers={"Origin": "http://evil.example"}
        )
        assert refused.status_code == 403, (method, refused.text)


async def test_allowed_origins_and_non_browser_clients_still_work(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    body = {"llm": llm_settings(fake_llm)}
    for headers in (
        {},  # curl, the SDK: no Origin
        {"Origin": "http://localhost:3001"},  # the web UI on another local port
        {"Origin": server.url},  # a page this server served (e.g. /docs)
        {"Origin": "http://localhost:3001", "Sec-Fetch-Site": "same-site"},
    ):
        response = await server.client.post("/conversations", json=body, headers=headers)
        assert response.status_code == 201, (headers, response.text)
    # GET is not state-changing: the answer is simply not readable by a foreign page (no
    # Access-Control-Allow-Origin for it).
    read = await server.client.get("/alive", headers={"Origin": "http://evil.example"})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
    # An empty POST needs no Content-Type.
    assert (await server.client.post("/conversations")).status_code == 422


async def test_a_valid_key_lets_a_configured_origin_in(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, session_api_keys=("k1",)))
    try:
        body = {"llm": llm_settings(fake_llm)}
        headers = {"Origin": "https://ui.example", "X-Session-API-Key": "k1"}
        response = await server.client.post("/conversations", json=body, headers=headers)
        assert response.status_code == 201, response.text
        no_key = await server.client.post(
            "/conversations", json=body, headers={"Origin": "https://ui.example"}
        )
        assert no_key.status_code == 401
    finally:
        await server.aclose()


async def test_dns_rebinding_gets_no_answer(server: LiveServer, fake_llm: FakeLLM) -> None:
    """A page at evil.example whose name now resolves to 127.0.0.1 sends `Host: evil...`."""
    created = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    assert created.status_code == 201
    port = server.url.rsplit(":", 1)[1]
    for path in ("/alive", "/conversations/search", "/api/conversations/search"):
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            response = await server.client.get(path, headers={"Host": host})
            assert response.status_code == 421, (path, host)
            assert created.json()["id"] not in response.text
            assert "detail" in response.json()
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "app.localhost"):
            response = await server.client.get(path, headers={"Host": host})
            assert response.status_code == 200, (path, host)


async def test_configured_host_names_are_served(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(
        nursery, test_settings(tmp_path, allowed_hosts=("Agents.Example.com",))
    )
    try:
        ok = await server.client.get("/alive", headers={"Host": "agents.example.com:443"})
        assert ok.status_code == 200
        refused = await server.client.get("/alive", headers={"Host": "other.example.com"})
        assert refused.status_code == 421
    finally:
        await server.aclose()


def test_host_rules_by_binding() -> None:
    loopback = Settings(host="127.0.0.1")
    assert host_is_allowed("127.0.0.1:8000", loopback)
    assert host_is_allowed("127.0.0.2", loopback)
    assert not host_is_allowed("10.0.0.5:8000", loopback)
    assert not host_is_allowed("evil.example", loopback)
    assert not host_is_allowed("[::1", loopback)  # unparsable
    everywhere = Settings(host="0.0.0.0")
    assert host_is_allowed("agents.example.com", everywhere)  # behind a proxy: any name
    pinned = Settings(host="0.0.0.0", allowed_hosts=("agents.example.com",))
    assert host_is_allowed("agents.example.com:8443", pinned)
    assert not host_is_allowed("evil.example", pinned)
    assert host_is_allowed("anything", Settings(allowed_hosts=("*",)))


async def test_cross_site_websockets_are_refused(server: LiveServer, fake_llm: FakeLLM) -> None:
    created = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    conversation_id = created.json()["id"]
    for path in (
        f"/conversations/{conversation_id}/events/socket",
        f"/sockets/events/{conversation_id}",
    ):
        url = server.ws_url(path)
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://evil.example")]):
                pass
        assert rejected.value.status_code == 403
        handshake = (
            f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await raw_exchange(server, handshake.encode())).startswith(b"HTTP/1.1 421")
        async with open_websocket_url(
            url, extra_headers=[(b"Origin", b"http://localhost:3001")]
        ) as socket:
            assert not socket.closed  # accepted


async def test_preflight_from_a_foreign_origin_is_refused(server: LiveServer) -> None:
    preflight = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    refused = await server.client.options("/conversations", headers=preflight)
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    allowed = await server.client.options(
        "/conversations", headers={**preflight, "Origin": "http://localhost:3001"}
    )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3001"


async def test_options_without_preflight_is_an_empty_204(server: LiveServer) -> None:
    response = await server.client.options("/conversations/search")
    assert response.status_code == 204
    assert "GET" in response.headers["allow"]
    assert "content-type" not in response.headers
    assert response.content == b""


async def test_routing_errors_come_before_the_content_type_check(server: LiveServer) -> None:
    """A wrong method or path is named as such, whatever the body's type."""
    plain = {"Content-Type": "text/plain"}
    wrong_method = await server.client.post("/alive", content=b"x", headers=plain)
    assert wrong_method.status_code == 405
    unknown = await server.client.post("/no/such/route", content=b"x", headers=plain)
    assert unknown.status_code == 404
