"""What the file and git routes share: where a request's `path` points, and how a
service's error becomes an answer.

Each route exists twice, as the reference server has them: host-wide under `/api/file/...`
and `/api/git/...`, and scoped to a conversation under `/api/conversations/{id}/...`, where
the conversation's working directory is the default `path`, a relative `path` lies in it
and any other is a 422 (symbolic links followed: a link out of it is outside). The scoped
routes read the conversation's stored record only: they never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import trio

from trio_openhands.core.errors import NotFound, ValidationFailed
from trio_openhands.services import files
from trio_openhands.services.errors import ServiceError
from trio_openhands.web.common import app, parse_conversation_id, supervisor
from trio_openhands.web.json_errors import json_error

if TYPE_CHECKING:
    from quart import Blueprint, Response

# Where each field a service may name lives in the request (the rest are query parameters).
FIELD_LOCATIONS = {"file": "body", "sha": "path", "conversation_id": "path", "source": "body"}
MIB = 1024 * 1024


def install_service_errors(blueprint: Blueprint) -> None:
    """A ServiceError raised by a view of `blueprint` answers with its status: a 422 in
    pydantic's shape naming the field, anything else `{"detail": ...}`."""

    async def answer(error: ServiceError) -> Response:
        if error.status == 422:
            location = FIELD_LOCATIONS.get(error.field or "", "query")
            loc = [location, error.field] if error.field else [location]
            return json_error(422, [{"loc": loc, "msg": error.detail, "type": "value_error"}])
        return json_error(error.status, error.detail)

    blueprint.register_error_handler(ServiceError, answer)


async def conversation_root(raw_id: str) -> Path:
    """The working directory of a stored conversation (404 if there is none)."""
    conversation_id = parse_conversation_id(raw_id)
    sup = supervisor()
    live = sup.loaded.get(conversation_id)
    record = live.record if live is not None and not live.deleted else None
    if live is None:
        record = await sup.records.find(conversation_id)  # another instance's too
    if record is None:
        raise NotFound(f"Conversation not found: {conversation_id}")
    working_dir = (record.request.get("workspace") or {}).get("working_dir")
    root = Path(working_dir) if working_dir else app().settings.workspace_dir
    return await files.made_absolute(root)


async def scoped_path(raw: str | None, root: Path, field: str = "path") -> Path:
    """`raw` within the conversation's `root` (`root` itself when absent), else a 422."""
    if raw is None or raw == "":
        return root
    files.check_path_text(raw, field)
    path = files.normalized(root / raw)  # an absolute `raw` wins the join
    if not await trio.to_thread.run_sync(files.is_within, path, root):
        raise ValidationFailed.single(
            ("query", field), f"{field} must be inside the conversation's working directory"
        )
    return path


async def request_path(
    raw: str | None, root: Path | None, *, relative_to: Path | None = None
) -> Path:
    """The path a request names: scoped to `root` when there is one; otherwise `raw` must
    be absolute (400), unless `relative_to` says where a relative one lies."""
    if root is not None:
        return await scoped_path(raw, root)
    if raw is None:
        raise ValidationFailed.single(("query", "path"), "Field required", "missing")
    if relative_to is not None and not raw.startswith("/"):
        files.check_path_text(raw)
        return await files.made_absolute(relative_to / raw)
    return files.absolute_path(raw)


def attachment(filename: str) -> str:
    """A `Content-Disposition` naming the file, for any name (RFC 6266 / 5987)."""
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def send_timeout(size: int) -> float:
    """How long sending `size` bytes may take: a minute, plus a second per MiB (a client
    slower than 1 MiB/s on average is cut off rather than holding the file forever)."""
    return 60.0 + size / MIB
