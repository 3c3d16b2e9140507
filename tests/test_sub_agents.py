"""`POST /api/sub-agents`: the project's, the user's and the built-in sub-agents, first wins a
name, as the TypeScript client's `SubAgentsClient.getSubAgents` reads them.

Each test has a home of its own (`HOME`), so the user's definitions are the ones it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LiveServer

pytestmark = pytest.mark.store_independent

BUILTINS = {"bash-runner", "code-explorer", "general-purpose"}  # web-researcher needs a browser


def write_agent(directory: Path, name: str, description: str, extra: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    front = f"---\nname: {name}\ndescription: {description}\n{extra}---\n"
    (directory / f"{name}.md").write_text(front + f"You are {name}.\n")


async def test_project_user_and_builtin_sub_agents(server: LiveServer, home: Path) -> None:
    project = server.settings.workspace_dir / "proj"
    reviewer = "tools:\n  - terminal\nmodel: gpt-5\nmcp_servers:\n  fetch:\n    command: uvx\n"
    reviewer += "hooks:\n  pre_tool_use:\n    - matcher: '*'\n"
    reviewer += "      hooks:\n        - command: echo hi\n"
    write_agent(project / ".agents" / "agents", "reviewer", "Reviews code.", reviewer)
    write_agent(project / ".openhands" / "agents", "reviewer", "Shadowed by .agents.")
    write_agent(home / ".agents" / "agents", "notes", "The user's note taker.")
    write_agent(home / ".openhands" / "agents", "code-explorer", "The user's own explorer.")

    answer = await server.client.post("/api/sub-agents", json={"project_dir": "proj"})
    assert answer.status_code == 200, answer.text
    agents = {agent["name"]: agent for agent in answer.json()["agents"]}
    assert set(agents) == {"reviewer", "notes", *BUILTINS}
    assert [a["level"] for a in answer.json()["agents"][:3]] == ["project", "user", "user"]

    assert agents["reviewer"]["description"] == "Reviews code."
    assert agents["reviewer"]["tools"] == ["terminal"]
    assert agents["reviewer"]["model"] == "gpt-5"
    assert agents["reviewer"]["system_prompt"] == "You are reviewer."
    assert agents["reviewer"]["mcp_config"]["fetch"]["command"] == "uvx"
    assert agents["reviewer"]["mcp_servers"] == agents["reviewer"]["mcp_config"]
    hook = agents["reviewer"]["hooks"]["pre_tool_use"][0]["hooks"][0]
    assert (hook["command"], hook["async"]) == ("echo hi", False)  # the field's JSON name
    assert agents["reviewer"]["source"].endswith("proj/.agents/agents/reviewer.md")
    assert agents["code-explorer"]["description"] == "The user's own explorer."
    assert agents["code-explorer"]["is_builtin"] is False
    assert agents["bash-runner"]["level"] == "builtin"
    assert agents["bash-runner"]["is_builtin"] is True
    assert set(agents["notes"]) == {
        *("name", "description", "model", "color", "tools", "skills", "system_prompt"),
        *("when_to_use_examples", "permission_mode", "max_iteration_per_run"),
        *("max_budget_per_run", "mcp_config", "mcp_servers", "profile_store_dir", "hooks"),
        *("condenser", "metadata", "level", "source", "is_builtin"),
    }


async def test_each_source_can_be_left_out(server: LiveServer, home: Path) -> None:
    project = server.settings.workspace_dir / "proj"
    write_agent(project / ".agents" / "agents", "reviewer", "Reviews code.")
    write_agent(home / ".agents" / "agents", "notes", "The user's note taker.")

    async def names(**body: object) -> set[str]:
        answer = await server.client.post("/api/sub-agents", json=body)
        assert answer.status_code == 200, answer.text
        return {agent["name"] for agent in answer.json()["agents"]}

    assert await names() == {"notes", *BUILTINS}  # no project_dir: no project agents
    assert await names(project_dir=str(project), load_builtin=False) == {"reviewer", "notes"}
    assert await names(project_dir="proj", load_user=False, load_builtin=False) == {"reviewer"}
    assert await names(project_dir="proj", load_project=False, load_user=False) == BUILTINS
    assert await names(project_dir="missing", load_builtin=False) == {"notes"}


async def test_bad_sub_agent_requests_name_the_field(server: LiveServer, home: Path) -> None:
    async def loc(body: object) -> list[object]:
        answer = await server.client.post("/api/sub-agents", json=body)
        assert answer.status_code == 422, answer.text
        return answer.json()["detail"][0]["loc"]

    assert await loc({"load_builtin": "maybe"}) == ["body", "load_builtin"]
    assert await loc({"project_dir": "a\u0000b"}) == ["body", "project_dir"]
    assert await loc([]) == ["body"]
