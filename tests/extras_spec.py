"""Requests that reach every skills, plugins, tools, workspaces, VS Code, auth and MCP
operation, for tests/test_openapi.py's check that real answers match the spec (kept here,
beside those routes' tests, so that the spec test only calls it)."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING

import trio

from tests.test_plugins import write_plugin
from tests.test_skills import write_skill

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    import httpx

    Call = Callable[..., Awaitable[httpx.Response]]

# The path parameters of these operations, for the keyed server's 401 round.
PATH_IDS = {"skill_name": "x", "plugin_name": "x", "file_path": "x", "settings_key": "x"}


@contextlib.contextmanager
def own_home(home: Path) -> Iterator[None]:
    """Install into a home of this test's, not the suite's."""
    saved = os.environ["HOME"]
    os.environ["HOME"] = str(home)
    try:
        yield
    finally:
        os.environ["HOME"] = saved


async def reach_extras_operations(
    call: Call, scratch: Path, workspace: Path, conversation_id: str
) -> None:
    """`workspace` is the working directory of the /api conversation `conversation_id`."""
    home = scratch / "extras-home"
    home.mkdir()
    with own_home(home):
        await _skills(call, scratch)
        await _plugins(call, scratch)
    await _small_ones(call, conversation_id)
    await _workspaces(call)
    await _workspace_files(call, workspace, conversation_id)
    await _mcp(call)


async def _mcp(call: Call) -> None:
    one = "/api/settings/mcp/{settings_key}"
    key, unknown, blank = {"settings_key": "spec"}, {"settings_key": "nope"}, {"settings_key": " "}
    stdio = {"command": "/nonexistent/mcp-server"}
    await call("post", one, 201, key, json=stdio)
    await call("post", one, 409, key, json=stdio)
    await call("post", one, 422, key, json={"command": 3})
    await call("patch", one, 200, key, json={"args": ["-v"]})
    await call("patch", one, 404, unknown, json={"args": []})
    await call("patch", one, 422, key, json={"args": "-v"})
    await call("delete", one, 200, key)
    await call("delete", one, 404, key)
    await call("delete", one, 422, blank)
    await call("post", "/api/mcp/test", 200, json={"server": stdio, "timeout": 5})
    await call("post", "/api/mcp/test", 422, json={"server": {"type": "stdio"}})


async def _small_ones(call: Call, conversation_id: str) -> None:
    conv, unknown = {"conversation_id": conversation_id}, {"conversation_id": str(uuid.uuid4())}
    malformed = {"conversation_id": "nope"}
    await call("get", "/api/tools", 200)
    await call("get", "/api/vscode/status", 200)
    await call("get", "/api/vscode/url", 503)
    scoped = "/api/conversations/{conversation_id}/vscode"
    await call("get", scoped + "/status", 200, conv)
    await call("get", scoped + "/status", 404, unknown)
    await call("get", scoped + "/status", 422, malformed)
    await call("get", scoped + "/url", 503, conv)
    await call("get", scoped + "/url", 404, unknown)
    await call("get", scoped + "/url", 422, malformed)
    await call("post", "/api/auth/workspace-session", 204)
    await call("delete", "/api/auth/workspace-session", 204)


async def _workspaces(call: Call) -> None:
    one = {"id": "/w", "name": "w", "path": "/w", "parentPath": "/"}
    await call("get", "/api/workspaces", 200)
    await call("post", "/api/workspaces", 200, json={"workspaces": [one]})
    await call("post", "/api/workspaces", 422, json={"workspaces": [{"id": "/w"}]})
    await call("delete", "/api/workspaces", 200, params={"path": "/w"})
    await call("delete", "/api/workspaces", 404, params={"path": "/w"})
    await call("delete", "/api/workspaces", 422)
    parent = {"id": "/", "name": "root", "path": "/"}
    await call("post", "/api/workspaces/parents", 200, json={"parents": [parent]})
    await call("post", "/api/workspaces/parents", 422, json={"parents": "/"})
    await call("delete", "/api/workspaces/parents", 200, params={"path": "/"})
    await call("delete", "/api/workspaces/parents", 404, params={"path": "/"})
    await call("delete", "/api/workspaces/parents", 422)


async def _workspace_files(call: Call, workspace: Path, conversation_id: str) -> None:
    conv, unknown = {"conversation_id": conversation_id}, {"conversation_id": str(uuid.uuid4())}
    root = "/api/conversations/{conversation_id}/workspace"
    await call("get", root, 404, conv)  # no index.html yet
    await trio.Path(workspace / "index.html").write_text("<p>hi</p>")
    await call("get", root, 200, conv)
    await call("get", root, 404, unknown)
    await call("get", root, 422, {"conversation_id": "nope"})
    one = root + "/{file_path}"
    await call("get", one, 200, {**conv, "file_path": "index.html"})
    await call("get", one, 404, {**conv, "file_path": "missing.txt"})
    await call("get", one, 404, {**unknown, "file_path": "index.html"})


async def _skills(call: Call, scratch: Path) -> None:
    await call("post", "/api/skills", 200, json={"project_dir": str(scratch)})
    await call("post", "/api/skills", 422, json={"load_user": "maybe"})
    org = {"repository": "o/r", "provider": "github", "org_repo_url": "u", "org_name": "o"}
    await call("post", "/api/skills", 501, json={"org_configs": [org]})
    await call("get", "/api/skills/catalog", 200)
    await call("post", "/api/skills/sync", 501)
    await call("get", "/api/skills/marketplace", 501)
    source = str(write_skill(scratch / "skill-sources", "spec-skill", "Spec."))
    await _installed(call, "skill", source)
    await call("post", "/api/sub-agents", 200, json={"project_dir": str(scratch)})
    await call("post", "/api/sub-agents", 422, json={"load_builtin": "maybe"})


async def _plugins(call: Call, scratch: Path) -> None:
    await call("post", "/api/plugins", 200, json={"project_dir": str(scratch)})
    await call("post", "/api/plugins", 422, json={"load_user": []})
    await call("post", "/api/plugins/fetch", 501, json={"source": "github:o/r"})
    await call("get", "/api/plugins/marketplace", 501)
    await _installed(call, "plugin", str(write_plugin(scratch / "plugin-sources", "spec-plugin")))


async def _installed(call: Call, noun: str, source: str) -> None:
    """The installed-skills or installed-plugins routes, `source` a local one to install."""
    prefix, param = f"/api/{noun}s", f"{noun}_name"
    await call("post", f"{prefix}/install", 200, json={"source": source})
    await call("post", f"{prefix}/install", 409, json={"source": source})
    await call("post", f"{prefix}/install", 400, json={"source": f"{source}-missing"})
    await call("post", f"{prefix}/install", 501, json={"source": "github:o/r"})
    await call("post", f"{prefix}/install", 422, json={"source": ""})
    await call("get", f"{prefix}/installed", 200)
    one = f"{prefix}/installed/{{{param}}}"
    name, unknown, bad = {param: f"spec-{noun}"}, {param: "nope"}, {param: "B"}
    await call("get", one, 200, name)
    await call("get", one, 404, unknown)
    await call("get", one, 422, bad)
    await call("patch", one, 200, name, json={"enabled": False})
    await call("patch", one, 404, unknown, json={"enabled": True})
    await call("patch", one, 422, name, json={"enabled": "perhaps"})
    await call("post", one + "/refresh", 200, name)
    await call("post", one + "/refresh", 404, unknown)
    await call("post", one + "/refresh", 422, bad)
    await call("delete", one, 200, name)
    await call("delete", one, 404, name)
    await call("delete", one, 422, bad)
