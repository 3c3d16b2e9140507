"""The foundation: health, readiness, server info, JSON errors, auth, CORS, the CLI."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import trio
from quart.typing import TestClientProtocol as QuartClient

from tests.conftest import start_cli_server, start_server, test_settings
from trio_openhands.interpreter import GC_YOUNG_THRESHOLD, GIL_SWITCH_INTERVAL_SECONDS
from trio_openhands.web.app import OpenHandsApp, create_app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[OpenHandsApp]:
    application = create_app(test_settings(tmp_path, preload_sdk=False))
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: OpenHandsApp) -> QuartClient:
    return app.test_client()


async def test_alive_health_and_server_info(client: QuartClient) -> None:
    for path in ("/alive", "/health"):
        response = await client.get(path)
        assert response.status_code == 200
        assert await response.get_json() == {"status": "ok"}
    info = await (await client.get("/server_info")).get_json()
    assert info["sdk_version"] == "1.58.2"
    # `version` is the reference API we implement: clients gate features on it (the web UI
    # refuses a backend below 1.28.0, the TypeScript client's hooks need 1.23.0).
    assert info["version"] == "1.58.2"
    assert info["server_name"] == "trio-openhands"
    assert info["server_version"] == version("trio-openhands")
    assert "idempotent_conversation_create_v1" in info["capabilities"]
    assert info["uptime"] >= 0
    assert info["usable_tools"] == ["file_editor", "task_tracker", "terminal"]


async def test_ready_waits_for_the_sdk(app: OpenHandsApp, client: QuartClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 503
    assert (await response.get_json())["status"] == "initializing"
    await app.sdk_loader.load()
    response = await client.get("/ready")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ready"}


async def test_errors_are_json(app: OpenHandsApp, client: QuartClient) -> None:
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.content_type == "application/json"
    assert "detail" in await missing.get_json()

    wrong_method = await client.put("/alive")
    assert wrong_method.status_code == 405
    assert "detail" in await wrong_method.get_json()

    malformed = await client.post(
        "/conversations", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert (await malformed.get_json())["detail"][0]["loc"] == ["body"]

    missing_field = await client.post("/conversations", json={"tools": []})
    assert missing_field.status_code == 422
    assert (await missing_field.get_json())["detail"][0]["loc"] == ["body", "llm"]

    too_big = await client.post(
        "/conversations",
        data=b"x" * (17 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
    assert "detail" in await too_big.get_json()


async def test_unexpected_errors_are_json_without_traceback(
    app: OpenHandsApp, client: QuartClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/test-only/boom")  # pyright: ignore[reportArgumentType]
    async def boom() -> None:  # pyright: ignore[reportUnusedFunction]
        raise RuntimeError("secret internals")

    response = await client.get("/test-only/boom")
    assert response.status_code == 500
    body = await response.get_json()
    assert body["detail"] == "Internal Server Error"
    assert "secret internals" not in str(body)
    assert body["error_id"] in caplog.text
    assert "secret internals" in caplog.text  # the log line carries the traceback


async def test_docs_and_openapi(client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    assert "/conversations" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "openapi.json" in (await docs.get_data(as_text=True))


async def test_session_api_keys(tmp_path: Path) -> None:
    application = create_app(
        test_settings(tmp_path, preload_sdk=False, session_api_keys=("first", "second"))
    )
    async with application.test_app():
        client = application.test_client()
        assert (await client.get("/alive")).status_code == 200  # open routes stay open
        assert (await client.get("/server_info")).status_code == 200
        search = "/conversations/search"
        no_key = await client.get(search)
        assert no_key.status_code == 401
        assert await no_key.get_json() == {"detail": "Unauthorized"}
        assert (await client.get(search, headers={"X-Session-API-Key": "wrong"})).status_code == 401
        assert (await client.get(search, headers={"X-Session-API-Key": "first"})).status_code == 200
        assert (
            await client.get(search, headers={"X-Session-API-Key": "second"})
        ).status_code == 200
        # The query parameter is for browsers' WebSockets only, not for REST.
        assert (
            await client.get(search, query_string={"session_api_key": "first"})
        ).status_code == 401


async def test_cors(tmp_path: Path) -> None:
    application = create_app(
        test_settings(tmp_path, preload_sdk=False, cors_origins=("https://app.example",))
    )
    async with application.test_app():
        client = application.test_client()
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "https://app.example"):
            response = await client.options(
                "/conversations", headers={"Origin": origin, **preflight}
            )
            assert response.status_code == 204, origin
            assert response.headers["Access-Control-Allow-Origin"] == origin
            simple = await client.get("/alive", headers={"Origin": origin})
            assert simple.headers["Access-Control-Allow-Origin"] == origin
        foreign = await client.options(
            "/conversations", headers={"Origin": "https://evil.example", **preflight}
        )
        assert foreign.status_code == 400
        assert "Access-Control-Allow-Origin" not in foreign.headers
        simple = await client.get("/alive", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in simple.headers


async def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = await start_cli_server(tmp_path)
    process = server.process
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/alive")).json() == {"status": "ok"}
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            code = await process.wait()
        assert code == 0
        assert time.monotonic() - started < 2.0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_refuses_to_serve_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "trio_openhands.cli", "--host", "0.0.0.0", "--port", "0"]
    environment = {**os.environ, "OPENHANDS_CONVERSATIONS_DIR": str(tmp_path / "c")}
    environment.pop("SESSION_API_KEY", None)
    with trio.fail_after(30):
        refused = await trio.run_process(
            command, env=environment, capture_stdout=True, capture_stderr=True, check=False
        )
    assert refused.returncode == 2
    assert b"refusing to serve 0.0.0.0 without a session key" in refused.stderr
    assert not (tmp_path / "c").exists()  # it stopped before touching anything


async def test_cli_serves_beyond_loopback_when_told(tmp_path: Path) -> None:
    server = await start_cli_server(tmp_path, args=["--host", "0.0.0.0"], OPENHANDS_ALLOW_OPEN="1")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/alive")).status_code == 200
    finally:
        server.process.kill()
        await server.process.wait()


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_openhands.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in (
        "--host",
        "--port",
        "--conversations-dir",
        "--workspace-dir",
        "--session-api-key",
        "--cors-origin",
        "--log-level",
        "--allow-open",
    ):
        assert flag in result.stdout


def test_urls_are_built_though_their_builders_are_compiled_late(tmp_path: Path) -> None:
    """web/lazy_rules.py: a rule's URL builder is compiled at its first use, and builds what
    werkzeug's own would (path variables quoted, unknown values as a query)."""
    app = create_app(test_settings(tmp_path))
    urls = app.url_map.bind("localhost")
    built = urls.build("conversations.get_conversation", {"raw_id": "a b", "x": "1"})
    assert built == "/conversations/a%20b/?x=1"  # werkzeug picks the rule with the slash
    assert urls.build("conversations.get_conversation", {"raw_id": "c"}) == "/conversations/c/"
    assert urls.build("swagger_ui") == "/docs"


def serving_tuned() -> bool:
    return (sys.getswitchinterval(), gc.get_threshold()[0]) == (
        GIL_SWITCH_INTERVAL_SECONDS,
        GC_YOUNG_THRESHOLD,
    )


async def test_the_interpreter_is_tuned_while_serving(tmp_path: Path) -> None:
    """Serving sets a short switch interval (the Trio thread gets the GIL back sooner after
    each system call) and a larger young generation (fewer full collections), and the last
    server to stop gives the process its own back."""
    before = (sys.getswitchinterval(), gc.get_threshold())
    assert not serving_tuned()
    async with trio.open_nursery() as nursery:
        first = await start_server(nursery, test_settings(tmp_path / "one"))
        second = await start_server(nursery, test_settings(tmp_path / "two"))
        assert (await first.client.get("/alive")).status_code == 200
        assert serving_tuned()
        first.stop.set()
        await first.stopped.wait()
        assert serving_tuned()  # the second still serves
        second.stop.set()
        await second.stopped.wait()
        await first.client.aclose()
        await second.client.aclose()
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
