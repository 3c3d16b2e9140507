"""A conversation's working directory as a static web server (`GET
/api/conversations/{id}/workspace/{file_path}`), as the reference serves it: a file with the
content type its name suggests, a directory's `index.html`, nothing outside the directory
(symbolic links followed). The web UI embeds what an agent made (HTML reports, plots) in
frames, authenticated by the header or by api/auth.py's cookie (security.py).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import trio
from quart import Blueprint, Response

from trio_openhands.core.errors import ApiError, NotFound, ValidationFailed
from trio_openhands.services import files
from trio_openhands.services.errors import ServiceError
from trio_openhands.web.api.workspace import conversation_root, send_timeout
from trio_openhands.web.openapi import LOADS, responses
from trio_openhands.web.response_bodies import FileBytes

blueprint = Blueprint("api_workspace_static", __name__)

ROUTE = "/api/conversations/<raw_id>/workspace"


class WorkspaceFile(FileBytes):
    """The file's bytes, with the content type its name suggests."""

    media_types = ("application/octet-stream", "text/html")


def _target(root: Path, file_path: str) -> Path:
    """Blocking: the file to serve for `file_path` in `root`."""
    if not root.is_dir():
        raise NotFound("Workspace directory does not exist")
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(real_root / file_path))
    if not target.is_relative_to(real_root):
        raise ApiError(400, "Path is outside the workspace")
    if target.is_dir():
        target = target / "index.html"
        if not target.is_file():
            raise NotFound("No index.html in directory")
    return target


async def _serve(raw_id: str, file_path: str) -> Response:
    root = await conversation_root(raw_id)
    if "\x00" in file_path:
        message = "file_path must not contain NUL characters"
        raise ValidationFailed.single(("path", "file_path"), message)
    target = await trio.to_thread.run_sync(_target, root, file_path)
    try:
        file, size = await trio.to_thread.run_sync(files.open_regular_file, target)
    except ServiceError as error:
        status = 404 if error.status in (400, 404) else error.status
        raise ApiError(status, "File not found" if status == 404 else error.detail) from None
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    response = Response(files.read_chunks(file, size), mimetype=media_type)
    response.headers["Content-Length"] = str(size)
    response.timeout = send_timeout(size)  # pyright: ignore[reportAttributeAccessIssue]
    return response


@blueprint.get(ROUTE)
@responses(WorkspaceFile, 400, *LOADS)
async def workspace_index(raw_id: str) -> Response:
    """The working directory's `index.html`."""
    return await _serve(raw_id, "")


@blueprint.get(f"{ROUTE}/<path:file_path>")
@responses(WorkspaceFile, 400, 403, *LOADS)
async def workspace_file(raw_id: str, file_path: str) -> Response:
    """A file of the working directory (a directory: its `index.html`)."""
    return await _serve(raw_id, file_path)
