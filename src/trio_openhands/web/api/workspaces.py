"""The reference server's saved workspaces (`/api/workspaces`, `/api/workspaces/parents`):
the web UI's workspace picker, kept by the server (stores/workspaces_store.py) so that
every client sees the same list. Adding is idempotent (by `path`); removing an unknown
path is a 404; a stored file this server cannot read is a 409 and is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response
from quart_schema import document_querystring

from trio_openhands.core.errors import NotFound
from trio_openhands.stores.workspaces_store import (
    Corrupted,
    Saved,
    Workspace,
    WorkspaceParent,
    WorkspacesStore,
    add_new,
    remove_path,
)
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body, parse_query

if TYPE_CHECKING:
    from collections.abc import Callable

blueprint = Blueprint("api_workspaces", __name__)


class AddWorkspaces(BaseModel):
    workspaces: list[Workspace]


class AddParents(BaseModel):
    parents: list[WorkspaceParent]


class PathQuery(BaseModel):
    path: str = Field(min_length=1, description="The absolute path to remove")


class WorkspacesList(BaseModel):
    """The saved workspaces and workspace parents, in the order they were added."""

    model_config = ConfigDict(populate_by_name=True)

    workspaces: list[Workspace]
    workspace_parents: list[WorkspaceParent] = Field(alias="workspaceParents")


class Deleted(BaseModel):
    """Removed."""

    deleted: bool


@blueprint.errorhandler(Corrupted)
async def _corrupted(error: Corrupted) -> Response:  # pyright: ignore[reportUnusedFunction]
    return json_response({"detail": "Workspaces file is corrupted"}, status=409)


def _store() -> WorkspacesStore:
    """One per app (its lock serializes every change)."""
    extensions = app().extensions
    if "workspaces_store" not in extensions:
        extensions["workspaces_store"] = WorkspacesStore(app().settings.conversations_dir)
    return extensions["workspaces_store"]


async def _update(change: Callable[[Saved], bool]) -> Response:
    return json_response((await _store().update(change)).answer())


@blueprint.get("/api/workspaces")
@responses(WorkspacesList, 409)
async def list_workspaces() -> Response:
    return json_response((await _store().load()).answer())


@blueprint.post("/api/workspaces")
@responses(WorkspacesList, *BODY, 409)
async def add_workspaces() -> Response:
    """Add workspaces; one whose path is saved already is left as it is."""
    body = await parse_body(AddWorkspaces)
    return await _update(lambda saved: add_new(saved.workspaces, body.workspaces))


@blueprint.delete("/api/workspaces")
@document_querystring(PathQuery)
@responses(Deleted, 404, 409, 422)
async def delete_workspace() -> Response:
    path = parse_query(PathQuery).path
    await _remove(lambda saved: remove_path(saved.workspaces, path), "Workspace not found")
    return json_response({"deleted": True})


@blueprint.post("/api/workspaces/parents")
@responses(WorkspacesList, *BODY, 409)
async def add_workspace_parents() -> Response:
    """Add workspace parents; one whose path is saved already is left as it is."""
    body = await parse_body(AddParents)
    return await _update(lambda saved: add_new(saved.workspace_parents, body.parents))


@blueprint.delete("/api/workspaces/parents")
@document_querystring(PathQuery)
@responses(Deleted, 404, 409, 422)
async def delete_workspace_parent() -> Response:
    path = parse_query(PathQuery).path
    removed = "Workspace parent not found"
    await _remove(lambda saved: remove_path(saved.workspace_parents, path), removed)
    return json_response({"deleted": True})


async def _remove(change: Callable[[Saved], bool], missing: str) -> None:
    found = False

    def remove(saved: Saved) -> bool:
        nonlocal found
        found = change(saved)
        return found

    await _store().update(remove)
    if not found:
        raise NotFound(missing)
