"""A conversation's trajectory: its stored files as a ZIP, secrets redacted.

What `GET /api/file/download-trajectory/{id}` serves, from either store: the SDK's files
(state, events: a packed events file as the files the SDK writes, stores/event_pack.py)
and the server's `meta.json`, each entry under the conversation's id. The
files store reads the conversation's folder (`write_folder_zip`), the PostgreSQL store its
rows (`write_entries_zip`); both redact the same way. Blocking: call from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from trio_openhands.stores import event_pack

if TYPE_CHECKING:
    from collections.abc import Iterable

SECRET_FIELDS = frozenset(
    {"api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "llm_api_key"}
)
REDACTED = "**********"
FERNET_PREFIX = "gAAAAA"  # a value the server secret encrypted: as good as the secret


def write_folder_zip(conversation_dir: Path, out: IO[bytes]) -> bool:
    """The conversation's folder as a ZIP (False, nothing written, when there is none);
    files being written (`*.tmp`), links and ones that vanish meanwhile are skipped."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        try:
            archive.write(conversation_dir, conversation_dir.name)
        except FileNotFoundError:
            return False
        packed: set[str] = set()  # entries made from an events pack (sorted before files)
        for path in sorted(_walk(conversation_dir)):
            if _left_out(PurePosixPath(path.relative_to(conversation_dir))) or path.is_symlink():
                continue
            arcname = str(path.relative_to(conversation_dir.parent))
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                if path.is_dir():
                    archive.write(path, arcname)
                elif path.name == event_pack.PACK_NAME:  # its events, as the SDK's files
                    packed |= _write_pack(archive, path, arcname)
                elif path.is_file() and arcname not in packed:  # the pack's is the newer
                    info = zipfile.ZipInfo.from_file(path, arcname)
                    data = _redacted(path.name, path.read_bytes())
                    archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return True


def _write_pack(archive: zipfile.ZipFile, pack: Path, arcname: str) -> set[str]:
    """A pack's events as the files the SDK would have written beside it; their names."""
    directory = PurePosixPath(arcname).parent
    stamp = time.localtime(pack.stat().st_mtime)[:6]
    written: set[str] = set()
    for name, data in event_pack.records(str(pack)):
        info = zipfile.ZipInfo(str(directory / name), stamp)
        info.external_attr = 0o600 << 16
        archive.writestr(info, _redacted(name, data), compress_type=zipfile.ZIP_DEFLATED)
        written.add(info.filename)
    return written


def write_entries_zip(top: str, entries: Iterable[tuple[str, bytes]], out: IO[bytes]) -> None:
    """`entries` (a relative POSIX path and its bytes each) as a ZIP under `top/`, with an
    entry for each directory as the folder's ZIP has."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top}/", b"")
        directories: set[PurePosixPath] = set()
        for name, data in entries:
            path = PurePosixPath(name)
            if _left_out(path):
                continue
            for parent in reversed(path.parents[:-1]):
                if parent not in directories:
                    directories.add(parent)
                    archive.writestr(f"{top}/{parent}/", b"")
            archive.writestr(f"{top}/{path}", _redacted(path.name, data))


def _left_out(relative: PurePosixPath) -> bool:
    """Not part of the trajectory: the ACP agent's own files, and files being written."""
    return relative.parts[0] == "acp" or relative.suffix == ".tmp"


def _redacted(name: str, data: bytes) -> bytes:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in (".json", ".jsonl"):
        return data
    return _redacted_json(data, json_lines=suffix == ".jsonl")


def _redact(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if _is_secret(key, item):
                value[key], changed = REDACTED, True
            else:
                value[key], inner = _redact(item)
                changed |= inner
        return value, changed  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        results = [_redact(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
        items = [REDACTED if _is_secret(None, v) else v for v, _ in results]
        changed = any(c for _, c in results) or any(_is_secret(None, v) for v, _ in results)
        return items, changed
    return value, False


def _is_secret(key: object, value: object) -> bool:
    if not isinstance(value, str) or value in ("", REDACTED):
        return False
    return value.startswith(FERNET_PREFIX) or key in SECRET_FIELDS


def _redacted_json(data: bytes, json_lines: bool) -> bytes:
    """`data` with every secret value replaced; unchanged bytes when there is none, or
    when it is not JSON after all."""
    try:
        text = data.decode("utf-8")
        if not json_lines:
            value, changed = _redact(json.loads(text))
            return json.dumps(value).encode() if changed else data
        lines: list[str] = []
        any_change = False
        for line in text.splitlines(keepends=True):
            if not line.strip():
                lines.append(line)
                continue
            value, changed = _redact(json.loads(line))
            any_change |= changed
            lines.append(
                json.dumps(value) + ("\n" if line.endswith("\n") else "") if changed else line
            )
        return "".join(lines).encode() if any_change else data
    except (UnicodeDecodeError, ValueError, RecursionError):
        return data


def _walk(root: Path) -> list[Path]:
    """Everything under `root` (links not followed); what vanishes meanwhile is skipped."""
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        found += [Path(directory, name) for name in (*dirnames, *filenames)]
    return found
