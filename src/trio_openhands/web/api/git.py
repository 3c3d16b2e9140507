"""The reference server's git routes: changes, a file's diff, commits and what one commit
changed; each host-wide (`/api/git/...`) and scoped to a conversation
(`/api/conversations/{id}/git/...`, its working directory the default `path`).

The work is in services/git.py (git as a child process, under a timeout). A path that is
not in a repository is a 400 here, where the reference answers an empty list; a relative
`path` lies in the server's workspace directory (the reference: its current directory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import document_querystring

from trio_openhands.core.errors import ApiError
from trio_openhands.services import git
from trio_openhands.web.api.workspace import (
    conversation_root,
    install_service_errors,
    request_path,
)
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import responses
from trio_openhands.web.request_parsing import parse_query
from trio_openhands.web.response_bodies import GitChanges, GitCommitsPage, GitDiff

if TYPE_CHECKING:
    from pathlib import Path

blueprint = Blueprint("api_git", __name__)
install_service_errors(blueprint)

SCOPED = "/api/conversations/<raw_id>/git"
REF = (
    "A git ref or commit to compare with ('HEAD' for git status-style changes); when "
    "absent, the branch's upstream or fork point is found"
)
GIT_ERRORS = (400, 403, 404, 422, 503)


class ChangesQuery(BaseModel):
    path: str = Field(
        description="A directory in a repository (absolute, or relative to "
        "the server's workspace directory)"
    )
    ref: str | None = Field(default=None, description=REF)


class ScopedChangesQuery(ChangesQuery):
    path: str | None = Field(default=None, description="The working directory when absent")  # pyright: ignore[reportIncompatibleVariableOverride]


class DiffQuery(ChangesQuery):
    path: str = Field(
        description="The file (absolute, or relative to the server's "  # pyright: ignore[reportIncompatibleVariableOverride]
        "workspace directory)"
    )
    commit: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{4,64}$",
        description="The diff one commit made to the file (not with `ref`)",
    )


class ScopedDiffQuery(DiffQuery):
    path: str | None = Field(default=None, description="The file, in the working directory")  # pyright: ignore[reportIncompatibleVariableOverride]


class CommitsQuery(BaseModel):
    path: str = Field(description="A directory in a repository")
    limit: int = Field(default=50, ge=1, le=200)


class ScopedCommitsQuery(CommitsQuery):
    path: str | None = Field(default=None, description="The working directory when absent")  # pyright: ignore[reportIncompatibleVariableOverride]


class CommitChangesQuery(BaseModel):
    path: str = Field(description="A directory in the repository")


class ScopedCommitChangesQuery(BaseModel):
    path: str | None = Field(default=None, description="The working directory when absent")


async def _path(raw: str | None, root: Path | None) -> Path:
    return await request_path(raw, root, relative_to=app().settings.workspace_dir)


async def _changes(root: Path | None) -> Response:
    query = parse_query(ScopedChangesQuery if root is not None else ChangesQuery)
    return json_response(await git.changes(await _path(query.path, root), query.ref))


@blueprint.get("/api/git/changes")
@document_querystring(ChangesQuery)
@responses(GitChanges, *GIT_ERRORS)
async def git_changes() -> Response:
    """The files changed under `path` since the base (untracked ones as ADDED), paths
    relative to it; the repositories right under a `path` that is none count too."""
    return await _changes(None)


@blueprint.get(f"{SCOPED}/changes")
@document_querystring(ScopedChangesQuery)
@responses(GitChanges, *GIT_ERRORS)
async def git_conversation_changes(raw_id: str) -> Response:
    return await _changes(await conversation_root(raw_id))


async def _diff(root: Path | None) -> Response:
    query = parse_query(ScopedDiffQuery if root is not None else DiffQuery)
    if query.ref is not None and query.commit is not None:
        raise ApiError(400, "'ref' and 'commit' are mutually exclusive")
    path = await _path(query.path, root)
    if query.commit is not None:
        return json_response(await git.commit_file_diff(path, query.commit))
    return json_response(await git.diff(path, query.ref))


@blueprint.get("/api/git/diff")
@document_querystring(DiffQuery)
@responses(GitDiff, *GIT_ERRORS)
async def git_diff() -> Response:
    """The file at the base (`original`) and on disk (`modified`), each at most 1 MiB;
    with `commit`, before and after that commit."""
    return await _diff(None)


@blueprint.get(f"{SCOPED}/diff")
@document_querystring(ScopedDiffQuery)
@responses(GitDiff, *GIT_ERRORS)
async def git_conversation_diff(raw_id: str) -> Response:
    return await _diff(await conversation_root(raw_id))


async def _commits(root: Path | None) -> Response:
    query = parse_query(ScopedCommitsQuery if root is not None else CommitsQuery)
    return json_response(await git.commits(await _path(query.path, root), query.limit))


@blueprint.get("/api/git/commits")
@document_querystring(CommitsQuery)
@responses(GitCommitsPage, *GIT_ERRORS)
async def git_commits() -> Response:
    """The newest commits reachable from HEAD, newest first."""
    return await _commits(None)


@blueprint.get(f"{SCOPED}/commits")
@document_querystring(ScopedCommitsQuery)
@responses(GitCommitsPage, *GIT_ERRORS)
async def git_conversation_commits(raw_id: str) -> Response:
    return await _commits(await conversation_root(raw_id))


async def _commit_changes(root: Path | None, sha: str) -> Response:
    query = parse_query(ScopedCommitChangesQuery if root is not None else CommitChangesQuery)
    return json_response(await git.commit_changes(await _path(query.path, root), sha))


@blueprint.get("/api/git/commits/<sha>/changes")
@document_querystring(CommitChangesQuery)
@responses(GitChanges, *GIT_ERRORS)
async def git_commit_changes(sha: str) -> Response:
    """The files one commit changed against its first parent (a root commit: all
    ADDED), paths relative to the repository's root."""
    return await _commit_changes(None, sha)


@blueprint.get(f"{SCOPED}/commits/<sha>/changes")
@document_querystring(ScopedCommitChangesQuery)
@responses(GitChanges, *GIT_ERRORS)
async def git_conversation_commit_changes(raw_id: str, sha: str) -> Response:
    return await _commit_changes(await conversation_root(raw_id), sha)
