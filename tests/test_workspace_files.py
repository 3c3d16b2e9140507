"""The file routes of the workspace API, through the official Python `RemoteWorkspace` (as
a user of the SDK calls them) and through plain HTTP for the rest and the 4xx answers."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
import zipfile
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from openhands.sdk.workspace import RemoteWorkspace

from tests.conftest import STORE_INDEPENDENT, LiveServer, llm_settings, start_server, test_settings
from trio_openhands.testing.fake_llm import FakeLLM

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


def remote_workspace(server: LiveServer, working_dir: Path, **extra: Any) -> RemoteWorkspace:
    return RemoteWorkspace(host=server.url, working_dir=str(working_dir), **extra)


async def blocking(call: Any, *args: Any) -> Any:
    """The client's calls block: run them in a worker thread, bounded."""
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(partial(call, *args))


async def start_api_conversation(server: LiveServer, fake_llm: FakeLLM, working_dir: Path) -> str:
    """An /api-dialect conversation working in `working_dir` (no message: no LLM call)."""
    body = {
        "agent": {"kind": "Agent", "llm": {**llm_settings(fake_llm), "usage_id": "agent"}},
        "workspace": {"working_dir": str(working_dir), "kind": "LocalWorkspace"},
    }
    response = await server.client.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def detail_loc(response: httpx.Response) -> list[Any]:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]["loc"]


# -- through the official client ------------------------------------------------------------


@STORE_INDEPENDENT
async def test_remote_workspace_round_trips_text_binary_and_10_mb(
    server: LiveServer, tmp_path: Path
) -> None:
    workspace = remote_workspace(server, tmp_path / "remote")
    contents = {
        "notes/text.txt": "héllo, wörld\nline two\r\n".encode(),
        "bin/all-bytes.bin": bytes(range(256)) * 64,
        "big/ten.bin": os.urandom(10 * 1024 * 1024),
        "empty": b"",
    }
    local = tmp_path / "local"
    local.mkdir()
    for name, data in contents.items():
        remote = tmp_path / "remote" / name
        if name.startswith("big/"):  # from a local file, the other way the client uploads
            source = local / "ten.bin"
            source.write_bytes(data)
            result = await blocking(workspace.file_upload, source, remote)
        else:
            result = await blocking(workspace.file_upload, data, remote)
        assert result.success, result.error
        assert result.file_size == len(data)
        assert remote.read_bytes() == data  # parents created
        back = local / "back" / name
        result = await blocking(workspace.file_download, remote, back)
        assert result.success, result.error
        assert back.read_bytes() == data
    # An upload replaces the file, keeping its mode; no temporary file is left beside it.
    target = tmp_path / "remote" / "notes" / "text.txt"
    target.chmod(0o640)
    result = await blocking(workspace.file_upload, b"new", target)
    assert result.success
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["text.txt"]


@STORE_INDEPENDENT
async def test_remote_workspace_download_of_a_missing_file_is_a_404(
    server: LiveServer, tmp_path: Path
) -> None:
    workspace = remote_workspace(server, tmp_path)
    result = await blocking(workspace.file_download, tmp_path / "nope.txt", tmp_path / "out")
    assert not result.success
    assert "404" in (result.error or "")
    assert not (tmp_path / "out").exists()
    answer = await server.client.get("/api/file/download", params={"path": str(tmp_path / "x")})
    assert answer.status_code == 404
    assert answer.json() == {"detail": "File not found"}


async def test_remote_workspace_with_a_runtime_conversation_uses_the_scoped_routes(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    conversation_id = await start_api_conversation(server, fake_llm, root)
    workspace = remote_workspace(server, root, runtime_conversation_id=conversation_id)
    result = await blocking(workspace.file_upload, b"scoped", root / "in" / "a.txt")
    assert result.success, result.error
    assert (root / "in" / "a.txt").read_bytes() == b"scoped"
    result = await blocking(workspace.file_download, root / "in" / "a.txt", tmp_path / "b")
    assert result.success
    assert (tmp_path / "b").read_bytes() == b"scoped"
    outside = await blocking(workspace.file_upload, b"no", tmp_path / "outside.txt")
    assert not outside.success
    assert "422" in (outside.error or "")
    assert not (tmp_path / "outside.txt").exists()


# -- upload and download over HTTP ----------------------------------------------------------


@STORE_INDEPENDENT
async def test_upload_and_download_refuse_bad_paths_and_bodies(
    server: LiveServer, tmp_path: Path
) -> None:
    client = server.client
    upload = "/api/file/upload"
    file = {"file": ("x", b"data")}
    (tmp_path / "a-file").write_bytes(b"")
    (tmp_path / "a-dir").mkdir()
    cases = {
        "relative": ("rel/x.txt", 400, "Path must be absolute"),
        "a directory": (str(tmp_path / "a-dir"), 400, "Path is a directory"),
        "under a file": (
            str(tmp_path / "a-file" / "x"),
            400,
            "A parent of the path is not a directory",
        ),
    }
    for name, (path, status, detail) in cases.items():
        answer = await client.post(upload, params={"path": path}, files=file)
        assert (answer.status_code, answer.json()) == (status, {"detail": detail}), name
    assert detail_loc(await client.post(upload, files=file)) == ["query", "path"]
    nul = await client.post(upload, params={"path": "/tmp/a\x00b"}, files=file)
    assert detail_loc(nul) == ["query", "path"]
    other_part = {"other": ("x", b"data")}
    answer = await client.post(upload, params={"path": str(tmp_path / "y")}, files=other_part)
    assert detail_loc(answer) == ["body", "file"]
    assert not (tmp_path / "y").exists()
    broken = {"Content-Type": "multipart/form-data; boundary=xyz"}
    answer = await client.post(
        upload, params={"path": str(tmp_path / "y")}, content=b"--xyz\r\nno end", headers=broken
    )
    assert detail_loc(answer) == ["body", "file"]
    answer = await client.post(upload, params={"path": str(tmp_path / "y")}, json={"a": 1})
    assert answer.status_code == 415
    left = sorted(p.name for p in await trio.Path(tmp_path).iterdir() if p.name != "conversations")
    assert left == ["a-dir", "a-file"]  # nothing written

    download = "/api/file/download"
    for path, status in (("rel", 400), (str(tmp_path / "a-dir"), 400), ("/dev/null", 400)):
        answer = await client.get(download, params={"path": path})
        assert answer.status_code == status, (path, answer.text)
    answer = await client.get(download, params={"path": str(tmp_path / "a-file")})
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith('attachment; filename="a-file"')


@pytest.fixture
async def small_upload_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = test_settings(tmp_path, max_upload_bytes=1000, body_timeout=0.5)
    live = await start_server(nursery, settings)
    try:
        yield live
    finally:
        await live.aclose()


@STORE_INDEPENDENT
async def test_an_upload_over_the_limit_is_a_413_and_leaves_the_old_file(
    small_upload_server: LiveServer, tmp_path: Path
) -> None:
    client = small_upload_server.client
    target = tmp_path / "kept.txt"
    target.write_bytes(b"old")
    params = {"path": str(target)}
    answer = await client.post("/api/file/upload", params=params, files={"file": b"x" * 1000})
    assert answer.json() == {"success": True, "file_size": 1000}
    target.write_bytes(b"old")
    # Declared too large: refused before a byte is read.
    answer = await client.post("/api/file/upload", params=params, files={"file": b"x" * 200_000})
    assert answer.status_code == 413

    # Not declared (chunked): refused once the file passes the limit.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        for _ in range(10):
            yield b"y" * 500
        yield b"\r\n--b--\r\n"

    answer = await client.post(
        "/api/file/upload",
        params=params,
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert answer.status_code == 413, answer.text
    assert target.read_bytes() == b"old"
    files = [p.name for p in await trio.Path(tmp_path).iterdir() if p.name != "conversations"]
    assert files == ["kept.txt"]


@STORE_INDEPENDENT
async def test_an_upload_that_stops_arriving_is_a_408(
    small_upload_server: LiveServer, tmp_path: Path
) -> None:
    """Each chunk must come within the body timeout (0.5 s here), however long the whole:
    a client that stops sending half-way gets a 408 and its connection closed."""
    port = int(small_upload_server.url.rsplit(":", 1)[1])
    target = tmp_path / "slow.bin"
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nab'
    head = (
        f"POST /api/file/upload?path={target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n"
    )
    received = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head.encode() + part)  # ... and nothing more
            while chunk := await stream.receive_some():  # until the server closes
                received += chunk
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"connection: close" in received.lower()
    assert not target.exists()
    assert not list(await trio.Path(tmp_path).glob(".slow.bin.*"))  # its temporary file gone


@STORE_INDEPENDENT
async def test_a_large_upload_is_streamed_past_the_json_body_limit(
    server: LiveServer, tmp_path: Path
) -> None:
    """20 MiB is past the 16 MiB every other body is bounded by (which still holds)."""
    data = os.urandom(20 * 1024 * 1024)
    target = tmp_path / "twenty.bin"
    answer = await server.client.post(
        "/api/file/upload", params={"path": str(target)}, files={"file": ("t", data)}
    )
    assert answer.json() == {"success": True, "file_size": len(data)}
    assert target.read_bytes() == data
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as own:
        huge = await own.post(
            "/api/conversations",
            content=b"{" * (17 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
    assert huge.status_code == 413


@STORE_INDEPENDENT
async def test_other_routes_still_refuse_multipart(server: LiveServer) -> None:
    answer = await server.client.post("/api/conversations", files={"file": b"{}"})
    assert answer.status_code == 415
    answer = await server.client.post("/api/file/create_directory?path=/tmp/x", files={"f": b""})
    assert answer.status_code == 415


# -- directories ------------------------------------------------------------------------------


@STORE_INDEPENDENT
async def test_create_directory_home_and_search_subdirs(server: LiveServer, tmp_path: Path) -> None:
    client = server.client
    made = tmp_path / "a" / "b"
    for _ in range(2):  # idempotent
        answer = await client.post("/api/file/create_directory", params={"path": str(made)})
        assert answer.json() == {"success": True}
    assert made.is_dir()
    (tmp_path / "f").write_text("")
    for path in ("rel", str(tmp_path / "f"), str(tmp_path / "f" / "under")):
        answer = await client.post("/api/file/create_directory", params={"path": path})
        assert answer.status_code == 400, path

    home = (await client.get("/api/file/home")).json()
    assert home["home"] == str(await trio.Path.home())
    assert home["locations"] == [{"label": "/", "path": "/"}]
    assert all(not entry["label"].startswith(".") for entry in home["favorites"])

    listed = tmp_path / "list"
    for name in ("beta", "Alpha", "alpha", "gamma", ".hidden"):
        (listed / name).mkdir(parents=True)
    (listed / "file.txt").write_text("")
    (listed / "link").symlink_to(listed / "beta")
    search = "/api/file/search_subdirs"
    first = (await client.get(search, params={"path": str(listed), "limit": 2})).json()
    assert [item["name"] for item in first["items"]] == ["Alpha", "alpha"]
    assert first["items"][0]["path"] == str(listed / "Alpha")
    assert first["next_page_id"] == "beta"
    (listed / "beta").rmdir()  # gone between two pages: the next page starts after it
    rest = (await client.get(search, params={"path": str(listed), "page_id": "beta"})).json()
    assert ([item["name"] for item in rest["items"]], rest["next_page_id"]) == (["gamma"], None)
    hidden = await client.get(search, params={"path": str(listed), "include_hidden": "true"})
    assert next(item["name"] for item in hidden.json()["items"]) == ".hidden"
    statuses = [
        (await client.get(search, params=params)).status_code
        for params in (
            {"path": "rel"},
            {"path": str(listed / "missing")},
            {"path": str(listed / "file.txt")},
            {"path": str(listed), "limit": 0},
            {},
        )
    ]
    assert statuses == [400, 404, 400, 422, 422]


# -- archives -------------------------------------------------------------------------------


async def git(cwd: Path, *args: str) -> str:
    result = await trio.run_process(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_stdout=True,
    )
    return result.stdout.decode().strip()


@STORE_INDEPENDENT
async def test_archive_as_tarball_and_as_git_patch(server: LiveServer, tmp_path: Path) -> None:
    project = tmp_path / "project-x"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print(1)\n")
    (project / "node_modules" / "dep").mkdir(parents=True)
    (project / "node_modules" / "dep" / "index.js").write_text("x")
    (project / "secret.key").write_text("s")
    (project / "escape").symlink_to("/etc")
    params: dict[str, Any] = {"path": str(project), "format": "tar.gz", "exclude": "*.key"}
    answer = await server.client.get("/api/file/archive", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/gzip"
    assert 'filename="project-x.tar.gz"' in answer.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("project-x/archive_manifest.json"))  # type: ignore[arg-type]
    assert names == {
        "project-x",
        "project-x/src",
        "project-x/src/main.py",
        "project-x/archive_manifest.json",
    }
    assert manifest["file_count"] == 1

    answer = await server.client.get("/api/file/archive", params={"path": str(project)})
    assert answer.status_code == 400
    assert "Not a git repository" in answer.json()["detail"]

    await git(project, "init", "-q", "-b", "main")
    (project / ".gitignore").write_text("node_modules/\n")
    await git(project, "add", "-A")
    await git(project, "commit", "-q", "-m", "first")
    head = await git(project, "rev-parse", "HEAD")
    (project / "src" / "main.py").write_text("print(2)\n")
    (project / "new.txt").write_text("new\n")
    # No origin: the automatic base is the empty tree, so the patch holds every file.
    full = await server.client.get("/api/file/archive", params={"path": str(tmp_path)})
    assert full.status_code == 200, full.text  # the one repository below is archived
    assert "+++ b/.gitignore" in full.text
    assert "x-archive-base-commit" not in full.headers
    params = {"path": str(project), "base_ref": "HEAD", "exclude": "*.key"}
    answer = await server.client.get("/api/file/archive", params=params)
    patch = answer.text
    assert "+print(2)" in patch
    assert "new.txt" in patch
    assert "secret.key" not in patch
    assert ".gitignore" not in patch
    assert 'filename="project-x.patch"' in answer.headers["content-disposition"]
    assert answer.headers["content-type"].startswith("text/x-patch")
    assert answer.headers["x-archive-base-commit"] == head
    assert answer.headers["x-archive-base-ref"] == "HEAD"
    assert answer.headers["x-archive-head-commit"] == head
    assert answer.headers["x-archive-branch"] == "main"
    porcelain = await git(project, "status", "--porcelain")  # its own index untouched
    assert porcelain.splitlines() == ["M src/main.py", "?? new.txt"]
    for params, status in (
        ({"path": str(project), "base_ref": "-x"}, 422),
        ({"path": str(project), "base_ref": "nope"}, 400),
        ({"path": str(project), "format": "zip"}, 422),
        ({"path": str(project / "missing")}, 404),
        ({"path": "rel"}, 400),
    ):
        answer = await server.client.get("/api/file/archive", params=params)
        assert answer.status_code == status, (params, answer.text)


async def test_trajectory_zip_holds_the_stored_conversation_without_secrets(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    conversation_id = await start_api_conversation(server, fake_llm, tmp_path / "w")
    hex_id = uuid.UUID(conversation_id).hex
    message = {"role": "user", "content": [{"type": "text", "text": "zipped"}], "run": False}
    posted = await server.client.post(f"/api/conversations/{conversation_id}/events", json=message)
    assert posted.status_code == 200, posted.text
    answer = await server.client.get(f"/api/file/download-trajectory/{conversation_id}")
    assert answer.status_code == 200, answer.text
    assert f'filename="{hex_id}.zip"' in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        names = archive.namelist()
        state = json.loads(archive.read(f"{hex_id}/base_state.json"))
        everything = b"".join(archive.read(name) for name in names if not name.endswith("/"))
        # The SDK's layout, a file per event, whatever the store keeps them in.
        zipped = [
            json.loads(archive.read(name))["id"]
            for name in sorted(names)
            if name.startswith(f"{hex_id}/events/event-")
        ]
    assert f"{hex_id}/meta.json" in names
    assert not [name for name in names if name.endswith(".pack")]
    search = f"/api/conversations/{conversation_id}/events/search"
    logged = (await server.client.get(search, params={"limit": 100})).json()["items"]
    # What was logged when the ZIP was made (an auto-title's update may come after it).
    assert zipped == [event["id"] for event in logged][: len(zipped)]
    message_ids = [event["id"] for event in logged if event["kind"] == "MessageEvent"]
    assert message_ids
    assert set(message_ids) <= set(zipped)
    assert state["agent"]["llm"]["api_key"] == "**********"
    assert b"test-key" not in everything
    assert b"gAAAAA" not in everything
    unknown = await server.client.get(f"/api/file/download-trajectory/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert detail_loc(await server.client.get("/api/file/download-trajectory/x")) == [
        "path",
        "trajectory_id",
    ]


async def test_scoped_file_routes_default_to_the_working_directory(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    conversation_id = await start_api_conversation(server, fake_llm, root)
    scoped = f"/api/conversations/{conversation_id}/file"
    client = server.client
    answer = await client.post(f"{scoped}/upload", params={"path": "d/x.txt"}, files={"file": b"1"})
    assert answer.json() == {"success": True, "file_size": 1}
    assert (root / "d" / "x.txt").read_bytes() == b"1"
    answer = await client.get(f"{scoped}/download", params={"path": str(root / "d" / "x.txt")})
    assert answer.content == b"1"
    answer = await client.post(f"{scoped}/create_directory", params={"path": "e/f"})
    assert answer.status_code == 200
    assert (root / "e" / "f").is_dir()
    (root / "out").symlink_to(tmp_path)
    for path in ("../elsewhere", str(tmp_path / "x"), "out/x"):
        answer = await client.get(f"{scoped}/download", params={"path": path})
        assert detail_loc(answer) == ["query", "path"], path
    assert (await client.get(f"{scoped}/download")).status_code == 400  # a directory
    tarball = await client.get(f"{scoped}/archive", params={"format": "tar.gz"})
    with tarfile.open(fileobj=io.BytesIO(tarball.content)) as tar:
        assert "ws/d/x.txt" in tar.getnames()
    trajectory = await client.get(f"{scoped}/download-trajectory/{conversation_id}")
    assert trajectory.status_code == 200
    other = await client.get(f"{scoped}/download-trajectory/{uuid.uuid4()}")
    assert detail_loc(other) == ["path", "trajectory_id"]
    unknown = f"/api/conversations/{uuid.uuid4()}/file/download"
    assert (await client.get(unknown, params={"path": "x"})).status_code == 404
    malformed = await client.get("/api/conversations/nope/file/download")
    assert detail_loc(malformed) == ["path", "conversation_id"]
