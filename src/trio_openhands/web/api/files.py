"""The reference server's file routes: upload, download, directories, archives, and a
conversation's trajectory; each host-wide (`/api/file/...`) and, but `home` and
`search_subdirs`, scoped to a conversation (`/api/conversations/{id}/file/...`).

The work is in services/files.py and services/archive.py; this layer parses the request
and streams bytes: an upload's body reaches the disk chunk by chunk as it arrives (with
backpressure: web/streamed_body.py), a download or an archive leaves the disk the same
way. Differences from the reference (docs/compatibility.md): an upload is renamed into
place when complete, and bounded by `max_upload_bytes`; a `search_subdirs` cursor whose
directory has gone starts at the next name; scoped routes take a relative `path`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import trio
from pydantic import BaseModel, Field
from quart import Blueprint, Response, request
from quart_schema import DataSource, document_querystring, document_request

from trio_openhands.core.errors import ApiError, NotFound, ValidationFailed
from trio_openhands.services import archive, files, git
from trio_openhands.services.errors import os_error
from trio_openhands.web.api.workspace import (
    attachment,
    conversation_root,
    install_service_errors,
    request_path,
    send_timeout,
)
from trio_openhands.web.common import app, json_response, parse_conversation_id
from trio_openhands.web.openapi import LOADS, responses
from trio_openhands.web.request_parsing import parse_query
from trio_openhands.web.response_bodies import (
    ArchiveBytes,
    FileBytes,
    FileUploadResult,
    Home,
    SubdirectoryPage,
    Success,
    TrajectoryBytes,
)
from trio_openhands.web.security import accepts_multipart
from trio_openhands.web.streamed_body import StreamableBody

if TYPE_CHECKING:
    from typing import IO

blueprint = Blueprint("api_files", __name__)
install_service_errors(blueprint)

MULTIPART_FRAMING = 64 * 1024  # what a body may hold beyond the file: boundaries, headers
SCOPED = "/api/conversations/<raw_id>/file"
# A path outside the conversation's working directory, or the conversation's id malformed.
FILE_ERRORS = (400, 403, 404, 422)


class PathQuery(BaseModel):
    path: str = Field(description="Absolute path")


class ScopedPathQuery(BaseModel):
    path: str | None = Field(
        default=None,
        description="A path in the conversation's working directory (relative to it, or "
        "absolute); the working directory itself when absent",
    )


class UploadForm(BaseModel):
    """multipart/form-data with the file's bytes as the part named `file`."""

    file: bytes


class HomeQuery(BaseModel):
    include_hidden: bool = Field(default=False, description="List hidden directories too")


class SubdirsQuery(BaseModel):
    path: str = Field(description="Absolute path of the directory to list")
    page_id: str | None = Field(default=None, description="`next_page_id` of the last page")
    limit: int = Field(default=100, gt=0, le=100)
    include_hidden: bool = False


class ArchiveQuery(BaseModel):
    path: str = Field(description="Absolute path of the directory to archive")
    format: Literal["git-delta", "tar.gz"] = Field(
        default="git-delta",
        description="`git-delta`: a git patch of the work tree against `base_ref`; "
        "`tar.gz`: a gzip tarball of the files (any directory)",
    )
    base_ref: str | None = Field(default=None, description="git-delta only: the base")
    use_default_excludes: bool = Field(
        default=True, description="Leave out .git, node_modules, virtualenvs, caches, builds"
    )
    exclude: list[str] = Field(default_factory=list, description="More patterns to leave out")


class ScopedArchiveQuery(ArchiveQuery):
    path: str | None = Field(default=None, description="The working directory when absent")  # pyright: ignore[reportIncompatibleVariableOverride]


def _file_response(file: IO[bytes], size: int, filename: str, media_type: str) -> Response:
    response = Response(files.read_chunks(file, size), mimetype=media_type)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = attachment(filename)
    response.timeout = send_timeout(size)  # pyright: ignore[reportAttributeAccessIssue]
    return response


# -- upload --------------------------------------------------------------------------------


async def _upload(root: Path | None, raw_path: str | None) -> Response:
    body = request.body
    assert isinstance(body, StreamableBody)
    body.stream()  # first, before anything waits: the body must not pile up meanwhile
    settings = app().settings
    limit = settings.max_upload_bytes
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "Unsupported Media Type: the body must be multipart/form-data")
    boundary = request.mimetype_params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise ValidationFailed.single(("body",), "multipart/form-data needs a boundary")
    declared = request.content_length
    if declared is not None and declared > limit + MULTIPART_FRAMING:
        raise ApiError(413, f"The file is larger than this server takes ({limit} bytes)")
    target = await request_path(raw_path, root)
    sink = files.UploadSink(target, boundary, limit)
    await trio.to_thread.run_sync(sink.open)
    try:
        while (chunk := await body.next_chunk(settings.body_timeout)) is not None:
            await trio.to_thread.run_sync(sink.feed, chunk)
        size = await trio.to_thread.run_sync(sink.finish)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(sink.abort)
        raise
    return json_response({"success": True, "file_size": size})


UPLOAD_ERRORS = (*FILE_ERRORS, 408, 413, 507)


@blueprint.post("/api/file/upload")
@accepts_multipart
@document_querystring(PathQuery)
@document_request(UploadForm, source=DataSource.FORM_MULTIPART)
@responses(FileUploadResult, *UPLOAD_ERRORS)
async def upload_file() -> Response:
    """Write the part `file` to `path` (parents created), replacing any file there once
    the whole body has arrived; at most `max_upload_bytes`."""
    return await _upload(None, request.args.get("path"))


@blueprint.post(f"{SCOPED}/upload")
@accepts_multipart
@document_querystring(ScopedPathQuery)
@document_request(UploadForm, source=DataSource.FORM_MULTIPART)
@responses(FileUploadResult, *UPLOAD_ERRORS, 503)
async def upload_conversation_file(raw_id: str) -> Response:
    request.body.stream()  # pyright: ignore[reportAttributeAccessIssue]  # see _upload
    root = await conversation_root(raw_id)
    return await _upload(root, request.args.get("path"))


# -- download ------------------------------------------------------------------------------


async def _download(root: Path | None) -> Response:
    query = parse_query(ScopedPathQuery if root is not None else PathQuery)
    path = await request_path(query.path, root)
    file, size = await trio.to_thread.run_sync(files.open_regular_file, path)
    return _file_response(file, size, path.name, "application/octet-stream")


@blueprint.get("/api/file/download")
@document_querystring(PathQuery)
@responses(FileBytes, *FILE_ERRORS)
async def download_file() -> Response:
    """The file's bytes, streamed from disk."""
    return await _download(None)


@blueprint.get(f"{SCOPED}/download")
@document_querystring(ScopedPathQuery)
@responses(FileBytes, *FILE_ERRORS, 503)
async def download_conversation_file(raw_id: str) -> Response:
    return await _download(await conversation_root(raw_id))


# -- directories ---------------------------------------------------------------------------


async def _create_directory(root: Path | None) -> Response:
    query = parse_query(ScopedPathQuery if root is not None else PathQuery)
    await files.create_directory(await request_path(query.path, root))
    return json_response({"success": True})


@blueprint.post("/api/file/create_directory")
@document_querystring(PathQuery)
@responses(Success, *FILE_ERRORS, 507)
async def create_directory() -> Response:
    """Create the directory and any missing parent; an existing one is left as it is."""
    return await _create_directory(None)


@blueprint.post(f"{SCOPED}/create_directory")
@document_querystring(ScopedPathQuery)
@responses(Success, *FILE_ERRORS, 503, 507)
async def create_conversation_directory(raw_id: str) -> Response:
    return await _create_directory(await conversation_root(raw_id))


@blueprint.get("/api/file/home")
@document_querystring(HomeQuery)
@responses(Home, 422)
async def file_home() -> Response:
    """The server user's home, its top-level directories, and `/`."""
    query = parse_query(HomeQuery)
    return json_response(await files.home(query.include_hidden))


@blueprint.get("/api/file/search_subdirs")
@document_querystring(SubdirsQuery)
@responses(SubdirectoryPage, *FILE_ERRORS)
async def search_subdirs() -> Response:
    """The directories right under `path` (no links), by name, a page at a time."""
    query = parse_query(SubdirsQuery)
    path = files.absolute_path(query.path)
    page = await files.subdirectories(path, query.page_id, query.limit, query.include_hidden)
    return json_response(page)


# -- archives ------------------------------------------------------------------------------


async def _archive(root: Path | None) -> Response:
    query = parse_query(
        ScopedArchiveQuery if root is not None else ArchiveQuery, frozenset({"exclude"})
    )
    if query.base_ref is not None:
        git.check_ref_text(query.base_ref, "base_ref")
    for index, pattern in enumerate(query.exclude):
        if "\x00" in pattern:
            raise ValidationFailed.single(("query", "exclude", index), "NUL in a pattern")
    target = await files.existing_directory(await request_path(query.path, root))
    target = Path(await trio.to_thread.run_sync(os.path.realpath, target))
    repo = await trio.to_thread.run_sync(archive.repository_root, target)
    excludes = [*(archive.DEFAULT_EXCLUDES if query.use_default_excludes else ()), *query.exclude]
    scratch = app().settings.conversations_dir
    out = await trio.to_thread.run_sync(archive.anonymous_file, scratch)
    headers: dict[str, str] = {}
    try:
        if query.format == "git-delta":
            base = await archive.write_git_delta(repo, query.base_ref, out, excludes, scratch)
            if base:
                headers["X-Archive-Base-Commit"] = base
                headers["X-Archive-Base-Ref"] = query.base_ref or "auto"
        else:
            await trio.to_thread.run_sync(archive.write_tar_gz, repo, out, excludes)
        if await trio.Path(repo, ".git").exists():
            headers.update(await archive.repository_headers(repo))
        size = await trio.to_thread.run_sync(_rewind, out)
    except OSError as error:  # the scratch volume full or read-only
        out.close()
        raise os_error(error, "Cannot build the archive") from None
    except BaseException:
        out.close()
        raise
    name = f"{repo.name}{archive.SUFFIX[query.format]}"
    response = _file_response(out, size, name, archive.MEDIA_TYPE[query.format])
    response.headers.update(headers)
    return response


def _rewind(file: IO[bytes]) -> int:
    file.flush()
    file.seek(0)
    return os.fstat(file.fileno()).st_size


ARCHIVE_ERRORS = (*FILE_ERRORS, 503, 507)


@blueprint.get("/api/file/archive")
@document_querystring(ArchiveQuery)
@responses(ArchiveBytes, *ARCHIVE_ERRORS)
async def archive_directory() -> Response:
    """`path` as a git patch or a tarball; a directory that is not a repository but holds
    exactly one (three levels down at most) is archived as that repository."""
    return await _archive(None)


@blueprint.get(f"{SCOPED}/archive")
@document_querystring(ScopedArchiveQuery)
@responses(ArchiveBytes, *ARCHIVE_ERRORS)
async def archive_conversation_directory(raw_id: str) -> Response:
    return await _archive(await conversation_root(raw_id))


# -- a conversation's trajectory -----------------------------------------------------------


async def _trajectory(raw_trajectory_id: str) -> Response:
    conversation_id = parse_conversation_id(raw_trajectory_id, "trajectory_id")
    out = await trio.to_thread.run_sync(archive.anonymous_file, app().settings.conversations_dir)
    try:
        found = await app().supervisor.store.write_trajectory(conversation_id, out)
        size = await trio.to_thread.run_sync(_rewind, out)
    except OSError as error:
        out.close()
        raise os_error(error, "Cannot build the archive") from None
    except BaseException:
        out.close()
        raise
    if not found:
        out.close()
        raise NotFound(f"Conversation not found: {conversation_id}")
    return _file_response(out, size, f"{conversation_id.hex}.zip", "application/octet-stream")


@blueprint.get("/api/file/download-trajectory/<trajectory_id>")
@responses(TrajectoryBytes, 403, 404, 422, 507)
async def download_trajectory(trajectory_id: str) -> Response:
    """A ZIP of the conversation's folder: the SDK's state and events, and meta.json."""
    return await _trajectory(trajectory_id)


@blueprint.get(f"{SCOPED}/download-trajectory/<trajectory_id>")
@responses(TrajectoryBytes, 403, *LOADS, 507)
async def download_conversation_trajectory(raw_id: str, trajectory_id: str) -> Response:
    """The scope's own trajectory only (422 for another id)."""
    scope = parse_conversation_id(raw_id)
    await conversation_root(raw_id)
    if parse_conversation_id(trajectory_id, "trajectory_id") != scope:
        raise ValidationFailed.single(
            ("path", "trajectory_id"), "The trajectory must be the scope's own conversation"
        )
    return await _trajectory(trajectory_id)
