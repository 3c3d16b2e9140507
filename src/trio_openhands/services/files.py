"""The workspace's files, for the file routes: upload, download, directories, listings.

Every file system call here is blocking and runs in a worker thread (`trio.to_thread`),
never on the Trio thread: the route layer awaits the `async` functions, and hands the
blocking methods of `UploadSink` to `trio.to_thread.run_sync` one chunk at a time.

An upload is written to a temporary file beside its target and renamed over it at the
end: a refused (too large, malformed) or interrupted upload leaves the old file as it was,
and nobody reads half a file. The multipart body is decoded as it arrives (werkzeug's
sans-IO decoder), so no more than one chunk of it is in memory, whatever its size.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import trio
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from trio_openhands.services.errors import BadRequest, InvalidInput, NotFound, TooLarge, os_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
READ_CHUNK = 1024 * 1024  # bytes read from disk per worker-thread call when streaming a file
DECODE_SLICE = 64 * 1024  # bytes handed to the multipart decoder at a time
MAX_PART_HEADERS = 64 * 1024  # a part's headers (or undecodable bytes) kept at most


def check_path_text(raw: str, field: str = "path") -> str:
    """What no file system takes, refused before any call: NUL, more than PATH_MAX."""
    if "\x00" in raw:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    if len(os.fsencode(raw)) > MAX_PATH_BYTES:
        raise InvalidInput(f"{field} must be at most {MAX_PATH_BYTES} bytes long", field=field)
    return raw


def absolute_path(raw: str, field: str = "path") -> Path:
    """`raw` as an absolute path (`..` resolved, links not), or a 400 naming the field."""
    check_path_text(raw, field)
    if not raw.startswith("/"):
        raise BadRequest("Path must be absolute", field=field)
    return normalized(Path(raw))


def normalized(path: Path) -> Path:
    """`path` with `.` and `..` resolved as names (no file system call: links stay)."""
    return Path(os.path.normpath(path))


async def made_absolute(path: Path) -> Path:
    """`path` (normalized) against the server's current directory if it is relative."""
    return Path(await trio.to_thread.run_sync(os.path.abspath, path))


# -- upload --------------------------------------------------------------------------------


class UploadSink:
    """Decodes a multipart/form-data body and writes its `file` part to `target`.

    Blocking: each method is meant for a worker thread, called in order `open`, `feed`
    (once per chunk of the body), `finish` (or `abort` on any failure). Other parts are
    read past and dropped; a second `file` part is ignored. `limit` bounds the file's size
    (413 beyond)."""

    def __init__(self, target: Path, boundary: str, limit: int) -> None:
        self.target = target
        self.limit = limit
        self.size = 0
        self._decoder = MultipartDecoder(boundary.encode("latin-1"))
        self._file: IO[bytes] | None = None
        self._temporary: Path | None = None
        self._writing = False  # inside the `file` part
        self._seen_file = False

    def open(self) -> None:
        target = self.target
        if target.is_dir():
            raise BadRequest("Path is a directory", field="path")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise BadRequest("A parent of the path is not a directory", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot create {target.parent}") from None
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent
            )
        except OSError as error:
            raise os_error(error, f"Cannot write in {target.parent}") from None
        self._temporary = Path(name)
        self._file = os.fdopen(fd, "wb")

    def feed(self, chunk: bytes) -> None:
        for start in range(0, len(chunk), DECODE_SLICE):
            self._decode(chunk[start : start + DECODE_SLICE])

    def finish(self) -> int:
        """Check the body was complete, then put the file in place; its size in bytes."""
        self._decode(None)
        if not self._seen_file:
            raise InvalidInput("Field required: a multipart part named `file`", field="file")
        assert self._file is not None
        assert self._temporary is not None
        try:
            self._file.close()
            try:
                mode = stat.S_IMODE(self.target.stat().st_mode)  # an overwrite keeps its mode
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.chmod(self._temporary, mode)
            os.replace(self._temporary, self.target)
        except IsADirectoryError:
            raise BadRequest("Path is a directory", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot write {self.target}") from None
        self._temporary = None
        return self.size

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                self._temporary.unlink()
            self._temporary = None

    def _decode(self, data: bytes | None) -> None:
        decoder = self._decoder
        try:
            decoder.receive_data(data)
            while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
                if isinstance(event, File | Field):
                    self._writing = event.name == "file" and not self._seen_file
                    self._seen_file |= self._writing
                elif isinstance(event, Data) and self._writing:
                    self._write(event.data)
        except ValueError as error:  # malformed multipart, undecodable part headers
            raise InvalidInput(f"Invalid multipart/form-data body: {error}", field="file") from None
        if len(decoder.buffer) > MAX_PART_HEADERS + DECODE_SLICE:
            raise InvalidInput("Invalid multipart/form-data body: a part never ends", field="file")

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"The file is larger than this server takes ({self.limit} bytes)")
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError as error:
            raise os_error(error, f"Cannot write {self.target}") from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# -- download ------------------------------------------------------------------------------


def open_regular_file(path: Path) -> tuple[IO[bytes], int]:
    """Blocking: `path` opened for reading, and its size; only a regular file (a FIFO or a
    device would block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFound("File not found", field="path") from None
    except IsADirectoryError:
        raise BadRequest("Path is not a file", field="path") from None
    except OSError as error:
        raise os_error(error, f"Cannot read {path}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BadRequest("Path is not a file", field="path")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


async def read_chunks(file: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """The first `size` bytes of `file`, read in a worker thread a chunk at a time; the
    file is closed at the end, or when the consumer stops early."""
    try:
        remaining = size
        while remaining > 0:
            chunk = await trio.to_thread.run_sync(file.read, min(READ_CHUNK, remaining))
            if not chunk:  # it shrank meanwhile: end short, the client sees a cut body
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(file.close)


# -- directories ---------------------------------------------------------------------------


async def create_directory(path: Path) -> None:
    def create() -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise BadRequest("Path exists and is not a directory", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot create {path}") from None

    await trio.to_thread.run_sync(create)


@dataclass(frozen=True)
class Entry:
    name: str
    path: str


def _subdirectories(directory: Path, include_hidden: bool) -> list[Entry]:
    """Blocking: the directories right under `directory` (no links, no files)."""
    entries: list[Entry] = []
    with os.scandir(directory) as scanner:
        for entry in scanner:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    entries.append(Entry(entry.name, str(directory / entry.name)))
            except OSError:
                continue
    entries.sort(key=_order)
    return entries


def _order(entry: Entry) -> tuple[str, str]:
    return (entry.name.lower(), entry.name)


async def home(include_hidden: bool) -> dict[str, object]:
    """The server user's home, its top-level directories (50 at most), and `/`."""
    home_dir = Path.home()

    def favorites() -> list[Entry]:
        try:
            return _subdirectories(home_dir, include_hidden)[:50]
        except OSError:
            return []

    found = await trio.to_thread.run_sync(favorites)
    return {
        "home": str(home_dir),
        "favorites": [{"label": entry.name, "path": entry.path} for entry in found],
        "locations": [{"label": "/", "path": "/"}],
    }


async def subdirectories(
    directory: Path, page_id: str | None, limit: int, include_hidden: bool
) -> dict[str, object]:
    """One page of the directories under `directory`, by name (case folded first).

    `page_id` is the name the page starts at, as the previous page's `next_page_id` said;
    a name that has gone since starts the page at the next one in order, so a directory
    removed between two pages makes no page restart or fail."""

    def listing() -> list[Entry]:
        try:
            return _subdirectories(directory, include_hidden)
        except FileNotFoundError:
            raise NotFound("Directory not found", field="path") from None
        except NotADirectoryError:
            raise BadRequest("Path is not a directory", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot list {directory}") from None

    entries = await trio.to_thread.run_sync(listing)
    start = 0
    if page_id:
        cursor = _order(Entry(page_id, ""))
        start = next(
            (i for i, entry in enumerate(entries) if _order(entry) >= cursor), len(entries)
        )
    page = entries[start : start + limit]
    following = entries[start + limit] if start + limit < len(entries) else None
    return {
        "items": [{"name": entry.name, "path": entry.path} for entry in page],
        "next_page_id": following.name if following else None,
    }


async def existing_directory(path: Path) -> Path:
    """`path`, checked to be a directory: 404 if missing, 400 if anything else."""

    def check() -> Path:
        try:
            info = path.stat()
        except FileNotFoundError:
            raise NotFound("Directory not found", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot read {path}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise BadRequest("Path is not a directory", field="path")
        return path

    return await trio.to_thread.run_sync(check)


def is_within(path: Path, root: Path) -> bool:
    """Blocking: whether `path`, links followed, lies in `root` (links followed)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
