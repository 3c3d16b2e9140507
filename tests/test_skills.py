"""The skills routes: what an agent would load (through the official client's
`RemoteWorkspace.load_skills_from_agent_server` and over HTTP), the catalog, and the user's
installed skills; nothing fetched from another host.

Each test has a home of its own (`HOME`), so the user's skills are the ones it writes, and
public skills come from a local copy of the extensions repository (`EXTENSIONS_PATH`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import trio
from openhands.sdk.workspace import RemoteWorkspace

if TYPE_CHECKING:
    from pathlib import Path

    from openhands.sdk.context import AgentContext
    from openhands.sdk.skills import Skill

    from tests.conftest import LiveServer

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


def write_skill(directory: Path, name: str, body: str, description: str = "") -> Path:
    """An AgentSkills skill: `directory/name/SKILL.md`."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    front = f"---\nname: {name}\ndescription: {description or name + ' skill'}\n---\n"
    (folder / "SKILL.md").write_text(front + body + "\n")
    return folder


@pytest.fixture
def extensions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """A local copy of the public extensions repository, with two skills and a marketplace
    that lists one of them."""
    root = tmp_path / "extensions"
    write_skill(root / "skills", "public-tips", "Public advice.")
    write_skill(root / "skills", "unlisted", "Not in the default marketplace.")
    marketplace = {
        "name": "default",
        "owner": {"name": "tests"},
        "plugins": [{"name": "public-tips", "source": "./skills/public-tips"}],
    }
    (root / "marketplaces").mkdir()
    (root / "marketplaces" / "default.json").write_text(json.dumps(marketplace))
    monkeypatch.setenv("EXTENSIONS_PATH", str(root))
    return root


async def test_the_python_client_loads_public_user_and_project_skills(
    server: LiveServer, home: Path, extensions: Path
) -> None:
    write_skill(home / ".agents" / "skills", "user-notes", "The user's notes.")
    write_skill(home / ".openhands" / "skills", "shared", "The user's version.")
    project = server.settings.workspace_dir / "proj"
    write_skill(project / ".agents" / "skills", "shared", "The project's version.")
    (project / "AGENTS.md").write_text("Run the tests with make test.\n")

    def load() -> tuple[list[Skill], AgentContext]:
        workspace = RemoteWorkspace(host=server.url, working_dir=str(project))
        try:
            return workspace.load_skills_from_agent_server()
        finally:
            workspace.client.close()

    skills, context = await trio.to_thread.run_sync(load)
    by_name = {skill.name: skill for skill in skills}
    assert {"public-tips", "user-notes", "shared", "agents"} <= set(by_name)
    assert "unlisted" not in by_name  # the default marketplace selects public skills
    assert "project's version" in by_name["shared"].content  # the project wins a name
    assert "make test" in by_name["agents"].content
    assert context.load_public_skills is False
    assert {skill.name for skill in context.skills} == set(by_name)


async def test_load_skills_over_http(server: LiveServer, home: Path, extensions: Path) -> None:
    write_skill(home / ".agents" / "skills", "user-notes", "The user's notes.")
    project = server.settings.workspace_dir / "proj"
    write_skill(project / ".agents" / "skills", "proj-only", "Here only.")
    body = {
        "project_dir": "proj",  # relative: in the server's workspace directory
        "marketplace_path": None,  # every public skill
        "sandbox_config": {
            "exposed_urls": [
                {"name": "WORKER_1", "url": "http://localhost:12000", "port": 12000},
                {"name": "VSCODE", "url": "http://localhost:8001", "port": 8001},
            ]
        },
    }
    answer = await server.client.post("/api/skills", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    names = [skill["name"] for skill in data["skills"]]
    assert set(names) == {"work_hosts", "public-tips", "unlisted", "user-notes", "proj-only"}
    assert data["sources"] == {
        "sandbox": 1,
        "registered_marketplaces": 0,
        "sdk_base": 3,
        "org": 0,
        "project": 1,
    }
    hosts = next(skill for skill in data["skills"] if skill["name"] == "work_hosts")
    assert "http://localhost:12000 (port 12000)" in hosts["content"]
    assert "8001" not in hosts["content"]
    notes = next(skill for skill in data["skills"] if skill["name"] == "user-notes")
    assert notes["type"] == "agentskills"
    assert notes["is_agentskills_format"] is True
    assert set(notes) == {
        "name",
        "type",
        "content",
        "triggers",
        "source",
        "description",
        "is_agentskills_format",
        "disable_model_invocation",
    }

    only_user = {"load_public": False, "load_project": False}
    data = (await server.client.post("/api/skills", json=only_user)).json()
    assert [skill["name"] for skill in data["skills"]] == ["user-notes"]

    catalog = (await server.client.get("/api/skills/catalog")).json()["skills"]
    assert {(s["name"], s["origin"]) for s in catalog} == {
        ("public-tips", "public"),
        ("user-notes", "user"),
    }


async def test_public_skills_are_never_cloned(server: LiveServer, home: Path) -> None:
    """Without a local copy there are no public skills: the SDK would clone from GitHub."""
    data = (await server.client.post("/api/skills", json={})).json()
    assert data == {
        "skills": [],
        "sources": {
            "sandbox": 0,
            "registered_marketplaces": 0,
            "sdk_base": 0,
            "org": 0,
            "project": 0,
        },
    }
    assert not (home / ".openhands").exists()  # no clone in the SDK's cache either
    org = {
        "org_configs": [
            {"repository": "o/r", "provider": "github", "org_repo_url": "x", "org_name": "o"}
        ]
    }
    assert (await server.client.post("/api/skills", json=org)).status_code == 501
    marketplace = {
        "registered_marketplaces": [{"name": "m", "source": "github:o/r", "auto_load": True}]
    }
    assert (await server.client.post("/api/skills", json=marketplace)).status_code == 501
    assert (await server.client.post("/api/skills/sync")).status_code == 501
    assert (await server.client.get("/api/skills/marketplace")).status_code == 501


async def test_bad_skill_requests_name_the_field(server: LiveServer, home: Path) -> None:
    async def loc(method: str, url: str, **kw: object) -> list[object]:
        answer = await server.client.request(method, url, **kw)  # type: ignore[arg-type]
        assert answer.status_code == 422, answer.text
        return answer.json()["detail"][0]["loc"]

    assert await loc("POST", "/api/skills", json={"load_user": "maybe"}) == ["body", "load_user"]
    assert await loc("POST", "/api/skills", json={"project_dir": "a\u0000b"}) == [
        "body",
        "project_dir",
    ]
    assert await loc("POST", "/api/skills", json=[]) == ["body"]
    assert await loc("GET", "/api/skills/installed/Bad_Name") == ["path", "skill_name"]
    assert await loc("POST", "/api/skills/install", json={"source": ""}) == ["body", "source"]
    assert await loc("PATCH", "/api/skills/installed/x", json={}) == ["body", "enabled"]


async def test_installed_skills(server: LiveServer, home: Path, tmp_path: Path) -> None:
    client = server.client
    source = write_skill(tmp_path / "sources", "deploy-notes", "How we deploy.", "Deploying")
    assert (await client.get("/api/skills/installed")).json() == {"skills": []}

    installed = await client.post("/api/skills/install", json={"source": str(source)})
    assert installed.status_code == 200, installed.text
    info = installed.json()
    assert info["name"] == "deploy-notes"
    assert info["enabled"] is True
    assert info["description"] == "Deploying"
    assert info["source"] == str(source)
    assert info["install_path"].startswith(str(home / ".openhands" / "skills" / "installed"))
    assert (await client.get("/api/skills/installed")).json() == {"skills": [info]}
    assert (await client.get("/api/skills/installed/deploy-notes")).json() == info
    again = await client.post("/api/skills/install", json={"source": str(source)})
    assert again.status_code == 409
    forced = {"source": str(source), "force": True}
    assert (await client.post("/api/skills/install", json=forced)).status_code == 200

    loaded = (await client.post("/api/skills", json={"load_project": False})).json()
    assert [skill["name"] for skill in loaded["skills"]] == ["deploy-notes"]  # a user skill
    off = await client.patch("/api/skills/installed/deploy-notes", json={"enabled": False})
    assert off.json() == {"name": "deploy-notes", "enabled": False}
    assert (await client.get("/api/skills/installed/deploy-notes")).json()["enabled"] is False
    loaded = (await client.post("/api/skills", json={"load_project": False})).json()
    assert loaded["skills"] == []  # a disabled skill is not loaded

    (source / "SKILL.md").write_text("---\nname: deploy-notes\ndescription: New\n---\nNew.\n")
    refreshed = await client.post("/api/skills/installed/deploy-notes/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["skill"]["description"] == "New"

    remote = await client.post("/api/skills/install", json={"source": "github:o/r/skills/x"})
    assert remote.status_code == 501
    assert "local directories" in remote.json()["detail"]
    missing = await client.post("/api/skills/install", json={"source": str(tmp_path / "none")})
    assert missing.status_code == 400

    gone = await client.delete("/api/skills/installed/deploy-notes")
    assert gone.json() == {"message": "Skill 'deploy-notes' uninstalled"}
    for method in ("GET", "DELETE"):
        answer = await client.request(method, "/api/skills/installed/deploy-notes")
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Skill 'deploy-notes' is not installed"}
    unknown = await client.patch("/api/skills/installed/nope", json={"enabled": True})
    assert unknown.status_code == 404
    assert (await client.post("/api/skills/installed/nope/refresh")).status_code == 404
