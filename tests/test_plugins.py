"""The plugins routes over HTTP: the plugins an agent would load (the user's, installed ones,
the project's) with what each holds, and the user's installed plugins; nothing fetched."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.test_skills import write_skill

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LiveServer

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


def write_plugin(directory: Path, name: str, description: str = "") -> Path:
    """A Claude Code style plugin: `.claude-plugin/plugin.json` and one skill."""
    root = directory / name
    (root / ".claude-plugin").mkdir(parents=True, exist_ok=True)
    manifest = {"name": name, "version": "1.0.0", "description": description or name}
    (root / ".claude-plugin" / "plugin.json").write_text(json.dumps(manifest))
    write_skill(root / "skills", f"{name}-skill", f"From {name}.")
    return root


async def test_available_plugins(server: LiveServer, home: Path, tmp_path: Path) -> None:
    write_plugin(home / ".agents" / "plugins", "mine", "The user's")
    write_plugin(home / ".openhands" / "plugins", "shared", "The user's version")
    project = server.settings.workspace_dir / "proj"
    write_plugin(project / ".agents" / "plugins", "shared", "The project's version")

    answer = await server.client.post("/api/plugins", json={"project_dir": "proj"})
    assert answer.status_code == 200, answer.text
    by_name = {plugin["name"]: plugin for plugin in answer.json()["plugins"]}
    assert set(by_name) == {"mine", "shared"}
    assert by_name["shared"]["description"] == "The project's version"
    mine = by_name["mine"]
    assert mine["version"] == "1.0.0"
    assert mine["skills"] == [{"name": "mine-skill", "description": "mine-skill skill"}]
    assert mine["files"] == [".claude-plugin/plugin.json", "skills/mine-skill/SKILL.md"]
    assert mine["path"] == str(home / ".agents" / "plugins" / "mine")

    only_project = {"load_user": False, "project_dir": str(project)}
    plugins = (await server.client.post("/api/plugins", json=only_project)).json()["plugins"]
    assert [plugin["name"] for plugin in plugins] == ["shared"]
    bad = await server.client.post("/api/plugins", json={"load_project": 3})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "load_project"]


async def test_installed_plugins(server: LiveServer, home: Path, tmp_path: Path) -> None:
    client = server.client
    source = write_plugin(tmp_path / "sources", "helper", "Helps")
    installed = await client.post("/api/plugins/install", json={"source": str(source)})
    assert installed.status_code == 200, installed.text
    info = installed.json()
    assert info["name"] == "helper"
    assert info["enabled"] is True
    assert info["skills"] == [{"name": "helper-skill", "description": "helper-skill skill"}]
    assert info["install_path"].startswith(str(home / ".openhands" / "plugins" / "installed"))
    assert (await client.get("/api/plugins/installed")).json() == {"plugins": [info]}
    assert (await client.get("/api/plugins/installed/helper")).json() == info
    assert (
        await client.post("/api/plugins/install", json={"source": str(source)})
    ).status_code == 409

    listed = (await client.post("/api/plugins", json={})).json()["plugins"]
    assert [plugin["name"] for plugin in listed] == ["helper"]  # installed: a user plugin
    off = await client.patch("/api/plugins/installed/helper", json={"enabled": False})
    assert off.json() == {"name": "helper", "enabled": False}
    assert (await client.post("/api/plugins", json={})).json()["plugins"] == []

    refreshed = await client.post("/api/plugins/installed/helper/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["plugin"]["name"] == "helper"
    remote = await client.post("/api/plugins/install", json={"source": "github:o/r"})
    assert remote.status_code == 501
    assert (
        await client.post("/api/plugins/fetch", json={"source": "github:o/r"})
    ).status_code == 501
    assert (await client.get("/api/plugins/marketplace")).status_code == 501

    gone = await client.delete("/api/plugins/installed/helper")
    assert gone.json() == {"message": "Plugin 'helper' uninstalled"}
    missing = await client.get("/api/plugins/installed/helper")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Plugin 'helper' is not installed"}
    bad = await client.get("/api/plugins/installed/Not_A_Name")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "plugin_name"]
