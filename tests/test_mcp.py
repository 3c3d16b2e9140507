"""The MCP routes: named servers of the settings created, patched and removed (stored with
the settings, secrets encrypted), and a candidate server tried with the SDK's own client
against a real stdio MCP server (tests/mcp_echo_server.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tests import stored
from tests.conftest import STORE_INDEPENDENT

if TYPE_CHECKING:
    from tests.conftest import LiveServer

ECHO_SERVER = str(Path(__file__).with_name("mcp_echo_server.py"))
STDIO = {"command": sys.executable, "args": [ECHO_SERVER]}


async def test_named_mcp_servers_in_the_settings(server: LiveServer) -> None:
    client = server.client
    url = "/api/settings/mcp/{}"
    remote = {
        "url": "https://mcp.example.invalid/mcp",
        "headers": {"Authorization": "Bearer s3cr3t"},
    }
    created = await client.post(url.format("remote"), json=remote)
    assert created.status_code == 201, created.text
    config = created.json()["agent_settings"]["mcp_config"]
    assert config["remote"]["url"] == remote["url"]
    assert "s3cr3t" not in created.text  # redacted in answers
    assert (await client.post(url.format("remote"), json=remote)).status_code == 409
    assert (await client.post(url.format("local"), json=STDIO)).status_code == 201

    patched = await client.patch(url.format("local"), json={"args": [ECHO_SERVER, "-v"]})
    assert patched.status_code == 200, patched.text
    config = patched.json()["agent_settings"]["mcp_config"]
    assert config["local"]["args"] == [ECHO_SERVER, "-v"]
    assert config["local"]["command"] == sys.executable  # the rest kept
    assert set(config) == {"remote", "local"}

    at_rest = await trio.to_thread.run_sync(stored.document, server.settings, "settings.json")
    assert "gAAAAA" in at_rest
    assert "s3cr3t" not in at_rest  # encrypted at rest
    plain = await client.get("/api/settings", headers={"X-Expose-Secrets": "plaintext"})
    assert "s3cr3t" in plain.text

    removed = await client.delete(url.format("remote"))
    assert removed.status_code == 200
    assert set(removed.json()["agent_settings"]["mcp_config"]) == {"local"}
    for answer in (
        await client.delete(url.format("remote")),
        await client.patch(url.format("remote"), json={"url": "https://x.invalid"}),
    ):
        assert answer.status_code == 404
        assert answer.json() == {"detail": "MCP server 'remote' was not found"}

    bad = await client.patch(url.format("local"), json={"args": "not a list"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "args"]
    assert (await client.post(url.format("x"), json={"nothing": 1})).status_code == 422
    assert (await client.post(url.format("%20"), json=STDIO)).status_code == 422


@STORE_INDEPENDENT
async def test_a_candidate_server_is_tried(server: LiveServer) -> None:
    client = server.client
    body = {
        "server": {"type": "stdio", **STDIO},
        "tool_call": {"name": "echo", "arguments": {"text": "hi"}},
    }
    answer = await client.post("/api/mcp/test", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ok": True,
        "tools": ["echo"],
        "tool_result": {"is_error": False, "text": "echo: hi"},
    }
    native = {"server": {"transport": "stdio", **STDIO}, "tool_call": {"name": "nope"}}
    result = (await client.post("/api/mcp/test", json=native)).json()
    assert result["ok"] is True
    assert result["tool_result"]["is_error"] is True

    broken = {"server": {"command": "/nonexistent/mcp-server"}, "timeout": 5}
    failed = (await client.post("/api/mcp/test", json=broken)).json()
    assert failed["ok"] is False
    assert failed["error_kind"] in ("connection", "unknown")

    invalid = await client.post("/api/mcp/test", json={"server": {"type": "stdio"}})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"][:3] == ["body", "server", "stdio"]
    too_long = await client.post("/api/mcp/test", json={**body, "timeout": 500})
    assert too_long.json()["detail"][0]["loc"] == ["body", "timeout"]
