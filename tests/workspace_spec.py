"""Requests that reach every bash, file and git operation, for tests/test_openapi.py's check that
real answers match the spec (kept here, beside the workspace tests, so that the spec test
only calls it)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import trio

from tests.test_workspace_git import commit, git

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import httpx

    Call = Callable[..., Awaitable[httpx.Response]]


async def reach_workspace_operations(call: Call, workspace: Path, conversation_id: str) -> None:
    """`workspace` is the working directory of the /api conversation `conversation_id`."""
    await trio.Path(workspace).mkdir(parents=True, exist_ok=True)
    await git(workspace, "init", "-q", "-b", "main")
    sha = await commit(workspace, {"a.txt": "a\n"}, "first")
    (workspace / "a.txt").write_text("b\n")
    here, file = str(workspace), str(workspace / "a.txt")
    conv = {"conversation_id": conversation_id}
    unknown = {"conversation_id": str(uuid.uuid4())}
    upload: dict[str, Any] = {"files": {"file": ("u", b"uploaded")}}

    await call("post", "/api/file/upload", 200, params={"path": f"{here}/u.txt"}, **upload)
    await call("post", "/api/file/upload", 400, params={"path": "rel"}, **upload)
    await call("post", "/api/file/upload", 422, **upload)
    await call("post", "/api/file/upload", 415, params={"path": here}, json={})
    scoped = "/api/conversations/{conversation_id}"
    await call("post", scoped + "/file/upload", 200, conv, params={"path": "s.txt"}, **upload)
    await call("post", scoped + "/file/upload", 422, conv, params={"path": "/etc/x"}, **upload)
    await call("post", scoped + "/file/upload", 404, unknown, **upload)
    await call("get", "/api/file/download", 200, params={"path": file})
    await call("get", "/api/file/download", 404, params={"path": f"{here}/missing"})
    await call("get", "/api/file/download", 400, params={"path": here})
    await call("get", scoped + "/file/download", 200, conv, params={"path": "a.txt"})
    await call("get", scoped + "/file/download", 404, unknown)
    await call("post", "/api/file/create_directory", 200, params={"path": f"{here}/d"})
    await call("post", "/api/file/create_directory", 400, params={"path": file})
    await call("post", scoped + "/file/create_directory", 200, conv, params={"path": "e"})
    await call("post", scoped + "/file/create_directory", 422, conv, params={"path": "/"})
    await call("get", "/api/file/home", 200)
    await call("get", "/api/file/home", 422, params={"include_hidden": "perhaps"})
    await call("get", "/api/file/search_subdirs", 200, params={"path": here, "limit": 1})
    await call("get", "/api/file/search_subdirs", 404, params={"path": f"{here}/missing"})
    await call("get", "/api/file/archive", 200, params={"path": here, "base_ref": "HEAD"})
    await call("get", "/api/file/archive", 200, params={"path": here, "format": "tar.gz"})
    await call("get", "/api/file/archive", 422, params={"path": here, "format": "rar"})
    await call("get", scoped + "/file/archive", 200, conv)
    await call("get", scoped + "/file/archive", 404, unknown)
    trajectory = "/api/file/download-trajectory/{trajectory_id}"
    await call("get", trajectory, 200, {"trajectory_id": conversation_id})
    await call("get", trajectory, 404, {"trajectory_id": str(uuid.uuid4())})
    await call("get", trajectory, 422, {"trajectory_id": "x"})
    scoped_trajectory = scoped + "/file/download-trajectory/{trajectory_id}"
    await call("get", scoped_trajectory, 200, {**conv, "trajectory_id": conversation_id})
    await call("get", scoped_trajectory, 422, {**conv, "trajectory_id": str(uuid.uuid4())})

    for prefix, ids in (("/api", {}), (scoped, conv)):
        await call("get", prefix + "/git/changes", 200, ids, params={"path": here})
        await call("get", prefix + "/git/changes", 422, ids, params={"path": here, "ref": "-x"})
        await call("get", prefix + "/git/diff", 200, ids, params={"path": file})
        await call("get", prefix + "/git/diff", 400, ids, params={"path": file, "ref": "nope"})
        await call("get", prefix + "/git/commits", 200, ids, params={"path": here})
        await call("get", prefix + "/git/commits", 422, ids, params={"path": here, "limit": 0})
        one = prefix + "/git/commits/{sha}/changes"
        await call("get", one, 200, {**ids, "sha": sha}, params={"path": here})
        await call("get", one, 400, {**ids, "sha": "abcdef1"}, params={"path": here})
    await call("get", "/api/git/changes", 400, params={"path": "/"})
    await call("get", "/api/git/changes", 404, params={"path": f"{here}/missing"})
    await call("get", scoped + "/git/changes", 404, unknown)

    for prefix, ids in (("/api", {}), (scoped, conv)):
        bash = prefix + "/bash"
        done = await call("post", bash + "/execute_bash_command", 200, ids, json={"command": "pwd"})
        assert done.json()["exit_code"] == 0
        await call("post", bash + "/execute_bash_command", 422, ids, json={"command": ""})
        started = await call(
            "post", bash + "/start_bash_command", 200, ids, json={"command": "true"}
        )
        command = {**ids, "command_id": started.json()["id"]}
        await call("post", bash + "/start_bash_command", 422, ids, json={"timeout": 0})
        found = await call("get", bash + "/bash_events/search", 200, ids, params={"limit": 1})
        await call("get", bash + "/bash_events/search", 422, ids, params={"kind__eq": "Nope"})
        await call("get", bash + "/bash_events/search", 400, ids, params={"page_id": "nope"})
        event = {**ids, "event_id": found.json()["items"][0]["id"]}
        await call("get", bash + "/bash_events/{event_id}", 200, event)
        await call(
            "get", bash + "/bash_events/{event_id}", 404, {**ids, "event_id": str(uuid.uuid4())}
        )
        await call("get", bash + "/bash_events", 200, ids, params={"event_ids": event["event_id"]})
        stop = bash + "/bash_commands/{command_id}/stop"
        await call("post", stop, 200, command)
        await call("post", stop, 404, {**ids, "command_id": str(uuid.uuid4())})
        await call("post", stop, 422, {**ids, "command_id": "x"})
        cleared = await call("delete", bash + "/bash_events", 200, ids)
        assert cleared.json()["cleared_count"] >= 2
    await call("get", scoped + "/bash/bash_events/search", 404, unknown)
