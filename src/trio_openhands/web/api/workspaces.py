"""The reference server's saved workspaces (`/api/workspaces`, `/api/workspaces/parents`):
the web UI's workspace picker, kept by the server (stores/workspaces_store.py) so that
every client sees the same list. Adding is idempotent (by `path`); removing an unknown
path is a 404; a stored file this server cannot read is a 409 and is left as it is.
"""

from __future__ import annotations

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


async def _add(model: type[AddWorkspaces | AddParents], listing: str, field: str) -> Response:
    """Append the body's `field` items to the saved list `listing` (new paths only)."""
    body = await parse_body(model)
    saved = await _store().update(
        lambda saved: add_new(getattr(saved, listing), getattr(body, field))
    )
    return json_response(saved.answer())


@blueprint.get("/api/workspaces")
@responses(WorkspacesList, 409)
async def list_workspaces() -> Response:
    return json_response((await _store().load()).answer())


@blueprint.post("/api/workspaces")
@responses(WorkspacesList, *BODY, 409)
async def add_workspaces() -> Response:
    """Add workspaces; one whose path is saved already is left as it is."""
    return await _add(AddWorkspaces, "workspaces", "workspaces")


@blueprint.delete("/api/workspaces")
@document_querystring(PathQuery)
@responses(Deleted, 404, 409, 422)
async def delete_workspace() -> Response:
    return await _remove("workspaces", "Workspace not found")


@blueprint.post("/api/workspaces/parents")
@responses(WorkspacesList, *BODY, 409)
async def add_workspace_parents() -> Response:
    """Add workspace parents; one whose path is saved already is left as it is."""
    return await _add(AddParents, "workspace_parents", "parents")


@blueprint.delete("/api/workspaces/parents")
@document_querystring(PathQuery)
@responses(Deleted, 404, 409, 422)
async def delete_workspace_parent() -> Response:
    return await _remove("workspace_parents", "Workspace parent not found")


async def _remove(listing: str, missing: str) -> Response:
    """Remove the query's `path` from the saved list `listing`, or a 404 saying `missing`."""
    path = parse_query(PathQuery).path
    found = False

    def remove(saved: Saved) -> bool:
        nonlocal found
        found = remove_path(getattr(saved, listing), path)
        return found

    await _store().update(remove)
    if not found:
        raise NotFound(missing)
    return json_response({"deleted": True})
