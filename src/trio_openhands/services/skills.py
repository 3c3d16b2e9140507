"""The skills an agent would load, and the user's installed skills, read with the SDK's
own loaders; never through the network.

Sources, lowest precedence first (a later one wins a name): the sandbox's exposed hosts,
public skills, the user's (installed ones included: installed.py), the project's. Public
skills come from a local copy of the OpenHands extensions repository named by the SDK's
`EXTENSIONS_PATH`; without one there are none (the SDK would clone it from GitHub).

Directories are found when called, from `HOME` and `OH_PERSISTENCE_DIR`, not from the
SDK's module constants (fixed when it was imported). Every function here blocks: call it
through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trio_openhands.services.installed import Kind

if TYPE_CHECKING:
    from openhands.sdk.skills import Skill

EXTENSIONS_PATH_ENV = "EXTENSIONS_PATH"  # the SDK's: a local copy of OpenHands/extensions
WORKER_URL_PREFIX = "WORKER_"  # the sandbox URLs that are web applications for the agent
SKILLS = Kind(noun="skill", sdk_module="openhands.sdk.skills", store="skills")


@dataclass
class SkillSources:
    """What to load: the request of `POST /api/skills`, in plain values."""

    load_public: bool = True
    load_user: bool = True
    load_project: bool = True
    project_dir: Path | None = None
    marketplace_path: str | None = "marketplaces/default.json"
    exposed_urls: list[tuple[str, str, int]] = field(default_factory=list)


def user_dirs() -> tuple[list[Path], Path]:
    """The user's skill directories (first wins a name) and the installed skills'."""
    from openhands.sdk.utils.path import get_user_persistence_dir

    base = get_user_persistence_dir()
    dirs = [Path.home() / ".agents" / "skills", base / "skills", base / "microagents"]
    return dirs, SKILLS.installed_dir()


def load(sources: SkillSources) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each skill as the SDK's `SkillInfo` (JSON), and how many each source gave."""
    from openhands.sdk.skills import load_project_skills

    tiers = {
        "sandbox": _sandbox_skills(sources.exposed_urls),
        "registered_marketplaces": [],
        "sdk_base": _merged(
            _public_skills(sources.marketplace_path) if sources.load_public else [],
            _user_skills() if sources.load_user else [],
        ),
        "org": [],
        "project": (
            load_project_skills(sources.project_dir)
            if sources.load_project and sources.project_dir is not None
            else []
        ),
    }
    merged = _merged(*tiers.values())
    infos = [skill.to_skill_info().model_dump(mode="json") for skill in merged]
    return infos, {name: len(skills) for name, skills in tiers.items()}


def catalog() -> list[dict[str, Any]]:
    """The public and user skills, each with its `origin` (a user skill shadowing a public
    one is the user's): what an agent profile may pick from."""
    public, user = _public_and_user()
    public_names = _public_names(public, user)
    return [
        {
            **skill.to_skill_info().model_dump(mode="json"),
            "origin": "public" if skill.name in public_names else "user",
        }
        for skill in _merged(public, user)
    ]


def profile_skills() -> list[Skill]:
    """The skills an agent profile launches with, but for those it disables: the public and
    user ones (the project's load with a conversation's workspace)."""
    return _merged(*_public_and_user())


def public_skill_names() -> set[str]:
    """The names of the public ones among `profile_skills()`: a user skill of the same name
    is the user's."""
    return _public_names(*_public_and_user())


def _public_and_user() -> tuple[list[Skill], list[Skill]]:
    return _public_skills("marketplaces/default.json"), _user_skills()


def _public_names(public: list[Skill], user: list[Skill]) -> set[str]:
    return {skill.name for skill in public} - {skill.name for skill in user}


def _merged(*tiers: list[Skill]) -> list[Skill]:
    by_name: dict[str, Skill] = {}
    for tier in tiers:
        for skill in tier:
            by_name.pop(skill.name, None)  # a later tier wins, and comes later
            by_name[skill.name] = skill
    return list(by_name.values())


def _public_skills(marketplace_path: str | None) -> list[Skill]:
    if not os.environ.get(EXTENSIONS_PATH_ENV):
        return []  # the SDK would clone the public repository: never from here
    from openhands.sdk.skills import load_public_skills

    return load_public_skills(marketplace_path=marketplace_path)


def _user_skills() -> list[Skill]:
    """The SDK's `load_user_skills`, over the directories of `user_dirs()`."""
    from openhands.sdk.skills import load_installed_skills, load_skills_from_dir

    dirs, installed = user_dirs()
    found: dict[str, Skill] = {}
    for directory in dirs:
        if not directory.is_dir():
            continue
        for kind in load_skills_from_dir(directory, exclude_dirs={installed}):
            for name, skill in kind.items():
                found.setdefault(name, skill)
    if installed.is_dir():
        for skill in load_installed_skills(installed_dir=installed):
            found.setdefault(skill.name, skill)
    return list(found.values())


def _sandbox_skills(exposed_urls: list[tuple[str, str, int]]) -> list[Skill]:
    """The hosts a sandbox exposes for web applications, as one always-on skill."""
    hosts = [(url, port) for name, url, port in exposed_urls if name.startswith(WORKER_URL_PREFIX)]
    if not hosts:
        return []
    from openhands.sdk.skills import Skill

    lines = "\n".join(f"* {url} (port {port})" for url, port in hosts)
    content = f"Web applications you serve reach the user at these hosts, one per port:\n{lines}"
    return [Skill(name="work_hosts", content=content, trigger=None, source=None)]
