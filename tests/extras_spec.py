"""Requests that reach every skills, plugins, tools, workspaces, VS Code, auth and MCP
operation, for tests/test_openapi.py's check that real answers match the spec (kept here,
beside those routes' tests, so that the spec test only calls it)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from tests.test_plugins import write_plugin
from tests.test_skills import write_skill

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    import httpx

    Call = Callable[..., Awaitable[httpx.Response]]

# The path parameters of these operations, for the keyed server's 401 round.
PATH_IDS = {"skill_name": "x", "plugin_name": "x"}


@contextlib.contextmanager
def own_home(home: Path) -> Iterator[None]:
    """Install into a home of this test's, not the suite's."""
    saved = os.environ["HOME"]
    os.environ["HOME"] = str(home)
    try:
        yield
    finally:
        os.environ["HOME"] = saved


async def reach_extras_operations(call: Call, scratch: Path) -> None:
    home = scratch / "extras-home"
    home.mkdir()
    with own_home(home):
        await _skills(call, scratch)
        await _plugins(call, scratch)


async def _skills(call: Call, scratch: Path) -> None:
    await call("post", "/api/skills", 200, json={"project_dir": str(scratch)})
    await call("post", "/api/skills", 422, json={"load_user": "maybe"})
    org = {"repository": "o/r", "provider": "github", "org_repo_url": "u", "org_name": "o"}
    await call("post", "/api/skills", 501, json={"org_configs": [org]})
    await call("get", "/api/skills/catalog", 200)
    await call("post", "/api/skills/sync", 501)
    await call("get", "/api/skills/marketplace", 501)
    source = str(write_skill(scratch / "skill-sources", "spec-skill", "Spec."))
    await call("post", "/api/skills/install", 200, json={"source": source})
    await call("post", "/api/skills/install", 409, json={"source": source})
    await call("post", "/api/skills/install", 400, json={"source": f"{source}-missing"})
    await call("post", "/api/skills/install", 501, json={"source": "github:o/r"})
    await call("post", "/api/skills/install", 422, json={})
    await call("get", "/api/skills/installed", 200)
    one = "/api/skills/installed/{skill_name}"
    name, unknown, bad = {"skill_name": "spec-skill"}, {"skill_name": "nope"}, {"skill_name": "B"}
    await call("get", one, 200, name)
    await call("get", one, 404, unknown)
    await call("get", one, 422, bad)
    await call("patch", one, 200, name, json={"enabled": False})
    await call("patch", one, 404, unknown, json={"enabled": False})
    await call("patch", one, 422, name, json={})
    await call("post", one + "/refresh", 200, name)
    await call("post", one + "/refresh", 404, unknown)
    await call("post", one + "/refresh", 422, bad)
    await call("delete", one, 200, name)
    await call("delete", one, 404, name)
    await call("delete", one, 422, bad)


async def _plugins(call: Call, scratch: Path) -> None:
    await call("post", "/api/plugins", 200, json={"project_dir": str(scratch)})
    await call("post", "/api/plugins", 422, json={"load_user": []})
    await call("post", "/api/plugins/fetch", 501, json={"source": "github:o/r"})
    await call("get", "/api/plugins/marketplace", 501)
    source = str(write_plugin(scratch / "plugin-sources", "spec-plugin"))
    await call("post", "/api/plugins/install", 200, json={"source": source})
    await call("post", "/api/plugins/install", 409, json={"source": source})
    await call("post", "/api/plugins/install", 400, json={"source": f"{source}-missing"})
    await call("post", "/api/plugins/install", 501, json={"source": "github:o/r"})
    await call("post", "/api/plugins/install", 422, json={"source": ""})
    await call("get", "/api/plugins/installed", 200)
    one = "/api/plugins/installed/{plugin_name}"
    name, unknown = {"plugin_name": "spec-plugin"}, {"plugin_name": "nope"}
    bad = {"plugin_name": "B"}
    await call("get", one, 200, name)
    await call("get", one, 404, unknown)
    await call("get", one, 422, bad)
    await call("patch", one, 200, name, json={"enabled": True})
    await call("patch", one, 404, unknown, json={"enabled": True})
    await call("patch", one, 422, name, json={"enabled": "perhaps"})
    await call("post", one + "/refresh", 200, name)
    await call("post", one + "/refresh", 404, unknown)
    await call("post", one + "/refresh", 422, bad)
    await call("delete", one, 200, name)
    await call("delete", one, 404, name)
    await call("delete", one, 422, bad)
