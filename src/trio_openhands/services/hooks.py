"""A project's hooks, as a client reads them before a create: the SDK's `HookConfig` of
`<project>/.openhands/hooks.json`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

HOOKS_FILE = (".openhands", "hooks.json")


def project_hooks(project_dir: Path) -> dict[str, Any] | None:
    """Blocking (a file read): the hooks of `project_dir`, or None when it has none. A
    file that does not parse is none too, as for the reference, and logged."""
    from openhands.sdk.hooks import HookConfig

    path = project_dir.joinpath(*HOOKS_FILE)
    if not path.is_file():
        return None
    try:
        config = HookConfig.load(path=path)
    except Exception as error:  # the SDK's own errors for a bad file vary (JSON, pydantic)
        log.warning("hooks: %s does not load: %s", path, error)
        return None
    return None if config.is_empty() else config.model_dump(mode="json", by_alias=True)
