"""The workspace session cookie and the static server of a conversation's working directory:
a browser frame gets the files with the cookie alone, and the cookie opens nothing else."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tests.conftest import LiveServer, llm_settings
from tests.test_openapi import KEY, keyed_server

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.testing.fake_llm import FakeLLM

COOKIE = "oh_workspace_session_key"


__all__ = ["keyed_server"]  # the spec test's fixture


async def create(server: LiveServer, fake_llm: FakeLLM, working_dir: Path, key: str) -> str:
    agent = {"kind": "Agent", "llm": {**llm_settings(fake_llm), "usage_id": "agent"}}
    body = {
        "agent": agent,
        "workspace": {"kind": "LocalWorkspace", "working_dir": str(working_dir)},
    }
    headers = {"X-Session-API-Key": key}
    answer = await server.client.post("/api/conversations", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def test_the_cookie_opens_the_workspace_files_only(
    keyed_server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "index.html").write_text("<h1>index</h1>")
    (work / "report.html").write_text("<p>report</p>")
    (work / "sub" / "plot.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("not for the web")
    (work / "escape").symlink_to(tmp_path)
    conversation = await create(keyed_server, fake_llm, work, KEY)
    client = keyed_server.client
    files = f"/api/conversations/{conversation}/workspace"

    assert (await client.get(f"{files}/report.html")).status_code == 401
    started = await client.post("/api/auth/workspace-session", headers={"X-Session-API-Key": KEY})
    assert started.status_code == 204
    cookie = started.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={KEY};")
    for attribute in ("HttpOnly", "Path=/api/conversations", "SameSite=None", "Secure"):
        assert attribute in cookie
    assert "Partitioned" in cookie  # 127.0.0.1 is a secure context for browsers

    with_cookie = {"Cookie": f"{COOKIE}={KEY}"}
    report = await client.get(f"{files}/report.html", headers=with_cookie)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert report.text == "<p>report</p>"
    assert (await client.get(files, headers=with_cookie)).text == "<h1>index</h1>"
    plot = await client.get(f"{files}/sub/plot.svg", headers=with_cookie)
    assert plot.headers["content-type"].startswith("image/svg+xml")
    missing = await client.get(f"{files}/sub", headers=with_cookie)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No index.html in directory"}
    assert (await client.get(f"{files}/nope.txt", headers=with_cookie)).status_code == 404
    outside = await client.get(f"{files}/escape/secret.txt", headers=with_cookie)
    assert outside.status_code == 400
    unknown = f"/api/conversations/{uuid.uuid4()}/workspace/report.html"
    assert (await client.get(unknown, headers=with_cookie)).status_code == 404

    # Everywhere else the cookie is no key: no reading, and above all no writing.
    assert (
        await client.get(f"/api/conversations/{conversation}", headers=with_cookie)
    ).status_code == 401
    message = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    posted = await client.post(
        f"/api/conversations/{conversation}/events", json=message, headers=with_cookie
    )
    assert posted.status_code == 401
    wrong = {"Cookie": f"{COOKIE}=wrong"}
    assert (await client.get(f"{files}/report.html", headers=wrong)).status_code == 401

    ended = await client.delete("/api/auth/workspace-session", headers={"X-Session-API-Key": KEY})
    assert ended.status_code == 204
    assert ended.headers["set-cookie"].startswith(f"{COOKIE}=;")
    assert "Max-Age=0" in ended.headers["set-cookie"]


async def test_a_server_without_keys_serves_the_files(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("a")
    conversation = await create(server, fake_llm, work, "")
    answer = await server.client.get(f"/api/conversations/{conversation}/workspace/a.txt")
    assert answer.status_code == 200
    assert answer.text == "a"
    assert (await server.client.post("/api/auth/workspace-session")).status_code == 204
