"""The user's saved workspaces and workspace parents (the web UI's workspace picker), one
JSON file in the conversations directory so that every client of this server sees the same
list, and a restart keeps it.

Each change is a read-modify-write under one lock, written atomically, so two concurrent
requests never lose one of them. A file this server cannot read (corrupt, or written by a
newer schema) is never overwritten: reading it and changing it are a `Corrupted` error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trio_openhands.stores.file_store import write_json_atomically

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

WORKSPACES_FILE = "workspaces.json"
SCHEMA_VERSION = 1
MAX_PATH = 4096


class WorkspaceParent(BaseModel):
    """A directory whose subdirectories the UI offers as workspaces."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(min_length=1, max_length=MAX_PATH)
    name: str = Field(min_length=1, max_length=256)
    path: str = Field(min_length=1, max_length=MAX_PATH)


class Workspace(WorkspaceParent):
    """A saved workspace directory; `parentPath` the parent it was picked from."""

    parent_path: str | None = Field(default=None, alias="parentPath", max_length=MAX_PATH)


class Saved(BaseModel):
    """What the file holds."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: int = SCHEMA_VERSION
    workspaces: list[Workspace] = Field(default_factory=list[Workspace])
    workspace_parents: list[WorkspaceParent] = Field(
        default_factory=list[WorkspaceParent], alias="workspaceParents"
    )

    def answer(self) -> dict[str, Any]:
        """As the reference answers: camelCase aliases, no null `parentPath`."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"schema_version"})


class Corrupted(Exception):
    """The file exists but cannot be read as saved workspaces."""


class WorkspacesStore:
    def __init__(self, conversations_dir: Path) -> None:
        self.path = conversations_dir / WORKSPACES_FILE
        self._lock = trio.Lock()

    async def load(self) -> Saved:
        return await trio.to_thread.run_sync(self._read)

    async def update(self, change: Callable[[Saved], bool]) -> Saved:
        """Apply `change` (which says whether it changed anything) and save."""
        async with self._lock:
            saved = await trio.to_thread.run_sync(self._read)
            if change(saved):
                data = saved.model_dump(mode="json")
                await trio.to_thread.run_sync(write_json_atomically, self.path, data)
            return saved

    def _read(self) -> Saved:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Saved()
        try:
            data = json.loads(text)
            saved = Saved.model_validate(data)
        except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
            raise Corrupted(f"{self.path} is not a saved workspaces file") from None
        if saved.schema_version > SCHEMA_VERSION:
            raise Corrupted(f"{self.path} was written by a newer server")
        return saved


def add_new[T: WorkspaceParent](current: list[T], incoming: list[T]) -> bool:
    """Append the items of `incoming` whose path is not there yet (first one wins)."""
    seen = {item.path for item in current}
    added = False
    for item in incoming:
        if item.path not in seen:
            seen.add(item.path)
            current.append(item)
            added = True
    return added


def remove_path[T: WorkspaceParent](current: list[T], path: str) -> bool:
    """Remove the item with `path`; whether there was one."""
    kept = [item for item in current if item.path != path]
    removed = len(kept) != len(current)
    current[:] = kept
    return removed
