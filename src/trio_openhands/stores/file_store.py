"""What the server itself keeps on disk, beside the SDK's own files.

Layout: `<conversations_dir>/<id hex>/meta.json` is ours (written atomically: temporary
file, fsync, rename); `base_state.json` and `events/` in the same folder are the SDK's.
The server secret that encrypts API keys at rest comes from `OH_SECRET_KEY`, or from
`<conversations_dir>/.secret_key`, created on first use with mode 0600.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shutil
from typing import IO, TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

META_FILE = "meta.json"
SECRET_KEY_FILE = ".secret_key"
LOCK_FILE = ".server.lock"


class DirectoryInUse(RuntimeError):
    """Another server process already serves this conversations directory."""


# Locks taken before the server binds (`reserve_conversations_dir`), waiting for the
# supervisor, which starts later in the background (web/early.py), to take them over.
_reserved: dict[str, IO[str]] = {}


def reserve_conversations_dir(conversations_dir: Path) -> None:
    """Blocking: take the directory's lock now, for the supervisor to take over when it
    starts (`lock_conversations_dir` hands it over), so that a second server refuses to
    start before it binds, however soon after the first it starts."""
    key = str(conversations_dir.resolve())
    if key in _reserved:  # another server of this process got there first
        raise _in_use(conversations_dir)
    _reserved[key] = _take_lock(conversations_dir)


def release_reservation(conversations_dir: Path) -> None:
    """Release a reserved lock no supervisor took over (the app failed to start)."""
    lock = _reserved.pop(str(conversations_dir.resolve()), None)
    if lock is not None:
        lock.close()


def lock_conversations_dir(conversations_dir: Path) -> IO[str]:
    """Blocking: an exclusive lock held for the server's lifetime (close the file to release).

    Two servers over one directory would each run their own supervisor and corrupt each
    other's conversations; the second one refuses to start instead. The kernel drops the
    lock when the process dies, so a crash never leaves a stale lock behind. A lock this
    process reserved for the directory is handed over instead of taken again.
    """
    reserved = _reserved.pop(str(conversations_dir.resolve()), None)
    return reserved if reserved is not None else _take_lock(conversations_dir)


def _in_use(conversations_dir: Path) -> DirectoryInUse:
    return DirectoryInUse(
        f"{conversations_dir} is in use by another server process: give each server "
        "its own conversations directory"
    )


def _take_lock(conversations_dir: Path) -> IO[str]:
    conversations_dir.mkdir(parents=True, exist_ok=True)
    lock_file = open(conversations_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise _in_use(conversations_dir) from None
    lock_file.truncate(0)
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    return lock_file


def conversation_dir(conversations_dir: Path, conversation_hex: str) -> Path:
    return conversations_dir / conversation_hex


def write_json_atomically(path: Path, data: Any) -> None:
    """Blocking: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1, default=str)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_all_meta(conversations_dir: Path) -> list[dict[str, Any]]:
    """Blocking: every stored conversation's meta.json; unreadable ones are logged and skipped."""
    found: list[dict[str, Any]] = []
    if not conversations_dir.is_dir():
        return found
    for folder in conversations_dir.iterdir():
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            continue
        try:
            found.append(json.loads(meta_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            log.error("skipping unreadable %s: %s", meta_path, error)
    return found


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def load_or_create_secret(conversations_dir: Path, configured: str | None) -> str:
    """Blocking: the key that encrypts secrets at rest (never logged, never in a response)."""
    if configured:
        return configured
    path = conversations_dir / SECRET_KEY_FILE
    conversations_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secrets.token_urlsafe(32))
    log.info("created the server secret key file %s (mode 0600)", path)
    return path.read_text(encoding="utf-8").strip()


async def write_meta(conversations_dir: Path, conversation_hex: str, meta: dict[str, Any]) -> None:
    path = conversation_dir(conversations_dir, conversation_hex) / META_FILE
    await trio.to_thread.run_sync(write_json_atomically, path, meta)
