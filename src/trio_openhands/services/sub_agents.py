"""The sub-agents an agent may delegate to, as the SDK discovers them: the project's and the
user's Markdown definitions (`.agents/agents/`, `.openhands/agents/`) and the built-ins the
tools package ships. Read-only: nothing is registered anywhere.

Precedence, first wins a name: project, user, built-in. The browser-only built-ins are left
out, as this server launches agents without the browser tools (web/api/bridge.py). The
user's directories are found when called (`HOME`, `OH_PERSISTENCE_DIR`). Blocks: call it
through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from openhands.sdk.subagent import AgentDefinition


@dataclass(frozen=True)
class SubAgentSources:
    """What to look through: the request of `POST /api/sub-agents`, in plain values."""

    load_user: bool = True
    load_project: bool = True
    load_builtin: bool = True
    project_dir: Path | None = None


def discover(sources: SubAgentSources) -> list[dict[str, Any]]:
    """Every definition found, as JSON, first wins a name."""
    from openhands.sdk.subagent import discover_agents
    from openhands.tools.preset.default import discover_builtin_agents

    found = discover_agents(
        project_dir=sources.project_dir,
        include_project=sources.load_project,
        include_user=sources.load_user,
    )
    if sources.load_builtin:
        found = [*found, *discover_builtin_agents(enable_browser=False)]
    seen: set[str] = set()
    infos = []
    for definition in found:
        if definition.name not in seen:
            seen.add(definition.name)
            infos.append(_info(definition))
    return infos


def _info(definition: AgentDefinition) -> dict[str, Any]:
    """The definition's every field, plus `is_builtin`, and `mcp_servers`: the older name of
    `mcp_config` that clients written against it still read."""
    info = definition.model_dump(mode="json", by_alias=True)
    info["mcp_servers"] = info.get("mcp_config")
    info["is_builtin"] = definition.level == "builtin"
    return info
