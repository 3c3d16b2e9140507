"""Where a conversation's agent works: the request's `working_dir`, checked and resolved.

A relative `working_dir` lies under the server's workspace directory (not the server's
current directory, which a client cannot know); `..` is resolved before any check. A path
that exists must be a directory. With `working_dir_roots` configured, the resolved path
(symbolic links followed) must lie under one of them; by default it may be anywhere, as for
the reference server: the agent runs with the server's own rights either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from trio_openhands.core.errors import ValidationFailed

if TYPE_CHECKING:
    from trio_openhands.settings import Settings

MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX


def check_working_dir_text(value: str) -> str:
    """What any file system refuses, refused up front (a pydantic field validator)."""
    if "\x00" in value:
        raise ValueError("working_dir must not contain NUL characters")
    encoded = os.fsencode(value)
    if len(encoded) > MAX_PATH_BYTES:
        raise ValueError(f"working_dir must be at most {MAX_PATH_BYTES} bytes long")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise ValueError(f"each name in working_dir must be at most {MAX_NAME_BYTES} bytes long")
    return value


async def resolve_working_dir(
    raw: str, settings: Settings, loc: tuple[str | int, ...] = ("body", "workspace", "working_dir")
) -> str:
    """The absolute directory to run in, or a 422 at `loc` saying why not."""
    return await trio.to_thread.run_sync(
        _resolve, raw, settings.workspace_dir, settings.working_dir_roots, loc
    )


def _resolve(
    raw: str, workspace_dir: Path, roots: tuple[Path, ...], loc: tuple[str | int, ...]
) -> str:
    path = Path(raw)
    if not path.is_absolute():
        path = workspace_dir / path
    path = Path(os.path.abspath(path))
    try:
        if path.exists() and not path.is_dir():
            raise ValidationFailed.single(loc, f"{path} exists and is not a directory")
        real = Path(os.path.realpath(path))
    except OSError as error:
        raise ValidationFailed.single(loc, f"{path} cannot be used: {error.strerror}") from None
    if roots and not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ValidationFailed.single(loc, f"{path} is not under an allowed root ({allowed})")
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ValidationFailed.single(loc, f"working_dir must be at most {MAX_PATH_BYTES} bytes")
    return str(path)
