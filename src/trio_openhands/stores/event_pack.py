"""A directory's event files kept as records appended to one file, its pack.

The SDK writes each event to a file of its own (`events/event-00042-<id>.json`). Every new
file costs the filesystem an inode, and on ext4 without a journal (this kind of machine)
the allocator scans past every inode freed in the last minutes: with file-per-event, about
a third of the server's CPU for a message went there (perf, bench/messages.py). In a pack
an event is one `write` to a file that is already there, and a group's sync is one fsync.

The SDK still sees its files: the store answers `list`, `read` and `exists` for the same
names (stores/group_commit.py). Event files already on disk (written by earlier versions,
by the SDK's own fork) stay where they are and are read as such: nothing is migrated.

Format, per record: a header line `<length> <crc32> <name>\\n` (length `-` for a
deleted name), then the `length` bytes, then `\\n`. A record is written with one `write`
to a descriptor opened with `O_APPEND`, so a killed process leaves whole records; what a
lost machine may leave torn at the end (a short record, a wrong checksum) is cut off when
the pack is next opened, with a warning. A later record for a name replaces an earlier one.
Nothing here imports the SDK: trajectories read packs too (`records`).
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections.abc import Iterator

log = logging.getLogger(__name__)

PACK_NAME = ".events.pack"  # a hidden name, which the SDK's own scan of events/ skips
_DELETED = b"-"
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


class EventPack:
    """One directory's pack: an index of its records (name -> offset and length of the
    data), appends and reads. Thread-safe; opened on first use, its descriptor kept until
    `close` (a later use opens it again)."""

    def __init__(self, directory: str, file_mode: int = 0o600) -> None:
        self.path = os.path.join(directory, PACK_NAME)
        self._file_mode = file_mode
        self._lock = threading.Lock()
        self._descriptor: int | None = None
        self._index: dict[str, tuple[int, int]] = {}
        self._size = 0

    def names(self) -> list[str]:
        with self._lock:
            self._open(create=False)
            return list(self._index)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            self._open(create=False)
            return name in self._index

    def read(self, name: str) -> bytes | None:
        """The data last written under `name`; None if the pack has none."""
        with self._lock:
            descriptor = self._open(create=False)
            found = self._index.get(name)
            if found is None or descriptor is None:
                return None
            offset, length = found
            data = os.pread(descriptor, length, offset)
        if len(data) != length:  # only if the file was cut behind this process's back
            raise OSError(f"{self.path}: record {name} is cut short")
        return data

    def append(self, name: str, data: bytes) -> bool:
        """Add (or replace) `name`; True when the pack file was made by this call (its
        directory gained a name, to be synced)."""
        return self._append(name, data)

    def delete(self, name: str) -> bool:
        """Forget `name` (a record saying so); False when the pack did not hold it."""
        with self._lock:
            self._open(create=False)
            if name not in self._index:
                return False
        self._append(name, None)
        return True

    def close(self) -> None:
        with self._lock:
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None

    def _append(self, name: str, data: bytes | None) -> bool:
        if "\n" in name:
            raise ValueError(f"a pack's names are single lines: {name!r}")
        header = (
            b"- 0 " if data is None else b"%d %d " % (len(data), zlib.crc32(data))
        ) + name.encode()
        record = b"".join((header, b"\n", data or b"", b"\n"))
        with self._lock:
            made = self._descriptor is None and not os.path.exists(self.path)
            descriptor = self._open(create=True)
            assert descriptor is not None
            written = os.write(descriptor, record)
            if written != len(record):  # a full disk: leave no torn record to read past
                os.ftruncate(descriptor, self._size)
                raise OSError(f"{self.path}: short write ({written} of {len(record)} bytes)")
            offset = self._size + len(header) + 1
            self._size += len(record)
            if data is None:
                self._index.pop(name, None)
            else:
                self._index[name] = (offset, len(data))
        return made

    def _open(self, *, create: bool) -> int | None:
        """The descriptor (lock held), the index read from the file when it is first
        opened. None when there is no pack yet and `create` is false."""
        if self._descriptor is not None:
            return self._descriptor
        flags = os.O_RDWR | os.O_APPEND | _FLAGS | (os.O_CREAT if create else 0)
        try:
            descriptor = os.open(self.path, flags, self._file_mode)
        except FileNotFoundError:
            if create:
                raise  # its directory is gone: the caller makes it again
            self._index, self._size = {}, 0
            return None
        try:
            self._index, self._size = _read_index(descriptor, self.path)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor
        return descriptor


def records(path: str) -> Iterator[tuple[str, bytes]]:
    """The names a pack file holds and their data, in the order they were first written;
    none when there is no such file. Blocking."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return
    latest: dict[str, bytes] = {}
    for name, start, length in _parse(data, path)[0]:
        if length is None:
            latest.pop(name, None)
        else:
            latest[name] = data[start : start + length]
    yield from latest.items()


def _read_index(descriptor: int, path: str) -> tuple[dict[str, tuple[int, int]], int]:
    size = os.fstat(descriptor).st_size
    data = os.pread(descriptor, size, 0) if size else b""
    parsed, whole = _parse(data, path)
    if whole < len(data):
        log.warning("%s: %d torn bytes at its end cut off", path, len(data) - whole)
        os.ftruncate(descriptor, whole)
    index: dict[str, tuple[int, int]] = {}
    for name, start, length in parsed:
        if length is None:
            index.pop(name, None)
        else:
            index[name] = (start, length)
    return index, whole


def _parse(data: bytes, path: str) -> tuple[list[tuple[str, int, int | None]], int]:
    """Each whole record's name, data offset and length (None: deleted), and where the
    whole records end."""
    found: list[tuple[str, int, int | None]] = []
    position = 0
    while position < len(data):
        line_end = data.find(b"\n", position)
        if line_end < 0:
            break
        try:
            raw_length, raw_crc, raw_name = data[position:line_end].split(b" ", 2)
            name = raw_name.decode()
            length = None if raw_length == _DELETED else int(raw_length)
            crc = int(raw_crc)
        except ValueError:
            break
        start = line_end + 1
        end = start + (length or 0)
        if end >= len(data) or data[end : end + 1] != b"\n":
            break
        if length is not None and zlib.crc32(data[start:end]) != crc:
            break
        found.append((name, start, length))
        position = end + 1
    if position < len(data):
        log.debug("%s: parsing stopped at byte %d of %d", path, position, len(data))
    return found, position
