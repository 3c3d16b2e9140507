"""The plugins an agent would load (the user's, the project's), and what each holds, read
with the SDK's plugin loader. The user's installed plugins are managed in installed.py.

As for skills, directories are found when called (`HOME`, `OH_PERSISTENCE_DIR`), not from
the SDK's import-time constants. Every function here blocks: call it in a thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trio_openhands.services.installed import Kind

if TYPE_CHECKING:
    from openhands.sdk.plugin import Plugin

MAX_LISTED_FILES = 2000  # a whole repository installed as a plugin lists no more
UNLISTED_DIRS = frozenset({".git"})


def _contents(install_path: Path) -> dict[str, Any]:
    """An installed plugin's skills and files; null for both if it no longer loads."""
    from openhands.sdk.plugin import Plugin

    try:
        plugin = Plugin.load(install_path)
    except Exception:  # a vanished or broken plugin must not break the listing
        return {"skills": None, "files": None}
    return contents(plugin)


PLUGINS = Kind(noun="plugin", sdk_module="openhands.sdk.plugin", store="plugins", details=_contents)


def contents(plugin: Plugin) -> dict[str, Any]:
    """The skills a plugin brings (its commands' included) and its files, relative."""
    skills = [{"name": s.name, "description": s.description} for s in plugin.get_all_skills()]
    return {"skills": skills, "files": _files(Path(plugin.path))}


def _files(root: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):  # links to directories not followed
        subdirs[:] = [d for d in subdirs if d not in UNLISTED_DIRS]
        found.extend((Path(directory) / name).relative_to(root).as_posix() for name in names)
    return sorted(found)[:MAX_LISTED_FILES]


def available(
    load_user: bool, load_project: bool, project_dir: Path | None
) -> list[dict[str, Any]]:
    """The user's plugins (first directory wins, installed ones last), overridden by the
    project's (its directory, then its git repository's root)."""
    by_name: dict[str, Plugin] = {}
    if load_user:
        for plugin in _user_plugins():
            by_name[plugin.name] = plugin
    if load_project and project_dir is not None:
        from openhands.sdk.plugin import load_project_plugins

        for plugin in load_project_plugins(project_dir):
            by_name[plugin.name] = plugin
    return [
        {
            "name": p.name,
            "version": p.version,
            "description": p.description,
            "path": p.path,
            **contents(p),
        }
        for p in by_name.values()
    ]


def _user_plugins() -> list[Plugin]:
    from openhands.sdk.plugin import load_installed_plugins
    from openhands.sdk.utils.path import get_user_persistence_dir

    installed = PLUGINS.installed_dir()
    dirs = [Path.home() / ".agents" / "plugins", get_user_persistence_dir() / "plugins"]
    found = _first_wins([_load_dir(d, skip=installed) for d in dirs])
    if installed.is_dir():
        found = _first_wins([found, load_installed_plugins(installed_dir=installed)])
    return found


def _load_dir(directory: Path, skip: Path) -> list[Plugin]:
    """Each plugin directory in `directory` but `skip` (the installed store in it)."""
    from openhands.sdk.plugin import Plugin

    if not directory.is_dir():
        return []
    plugins: list[Plugin] = []
    for item in sorted(directory.iterdir()):
        if not item.is_dir() or item.resolve() == skip.resolve():
            continue
        try:
            plugins.append(Plugin.load(item))
        except Exception:  # the SDK skips (and logs) a plugin that does not load
            continue
    return plugins


def _first_wins(groups: list[list[Plugin]]) -> list[Plugin]:
    by_name: dict[str, Plugin] = {}
    for group in groups:
        for plugin in group:
            by_name.setdefault(plugin.name, plugin)
    return list(by_name.values())
