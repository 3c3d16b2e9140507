"""The SDK's conversation files, made durable in groups instead of one fsync per write.

The SDK's own `LocalFileStore` fsyncs every file it writes (an event, the events length
marker, `base_state.json`), with the conversation's state lock held: a message costs
five fsyncs in a row, and concurrent posters queue behind them (about 70 % of a
message's time on this kind of machine). This store writes the same files in the same
layout (temporary file, rename; readable by the SDK's store and by earlier versions of
this server) and leaves them to `sync()`, which fsyncs every file written so far, and
each directory that gained a name, in one go. Callers that wrote concurrently share one
`sync()`: whoever comes while one runs waits for it, then syncs what is left (a group
commit).

Where a caller must sync (the server's promise: a 2xx means on disk): before a command's
answer (after the SDK call returns, its lock released), and before an event from a run
reaches a subscriber (the conversation's event hand-over). Writes in between are in the
kernel's cache: a killed process loses none of them; only a machine that loses power
can lose what no answer acknowledged yet.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openhands.sdk.io import LocalFileStore

FILE_MODE = 0o600  # as the SDK's atomic writes: the files hold encrypted secrets
LOCK_POLL_SECONDS = 0.01  # how often a held lock file is tried again until the timeout


class GroupCommitFileStore(LocalFileStore):
    """`LocalFileStore` whose text writes are made durable by `sync()`."""

    def __init__(self, root: str, cache_limit_size: int = 500) -> None:
        super().__init__(root, cache_limit_size=cache_limit_size)
        self._state = threading.Condition()
        self._unsynced_files: set[str] = set()
        self._unsynced_dirs: set[str] = set()
        self._written = 0  # writes so far (a count: what a sync must cover)
        self._synced = 0  # writes known to be on disk
        self._syncing = False
        self._deferring = threading.local()

    def write(self, path: str, contents: str | bytes) -> None:
        if isinstance(contents, bytes):
            super().write(path, contents)  # the SDK writes binary files plainly, unsynced
            return
        full_path = self.get_full_path(path)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        _replace_file(full_path, contents)
        self.cache[full_path] = contents
        with self._state:
            self._unsynced_files.add(full_path)
            self._unsynced_dirs.add(directory)
            self._written += 1

    def delete(self, path: str) -> None:
        super().delete(path)
        with self._state:  # the directory's entry is gone: make that durable too
            self._unsynced_dirs.add(os.path.dirname(self.get_full_path(path)))
            self._written += 1

    @property
    def deferring(self) -> bool:
        """Whether this thread's caller syncs itself once the SDK call returns."""
        return getattr(self._deferring, "active", False)

    @contextmanager
    def lock(self, path: str, timeout: float = 30.0) -> Iterator[None]:
        """The SDK's lock (an flock on the lock file, which its event store takes for every
        event it appends), without filelock's bookkeeping around it: that was a tenth of the
        server's CPU for a message (py-spy, bench/messages.py). Each hold opens the file
        anew, so it excludes this process's other threads and other processes alike, and
        the SDK's own `FileLock` on the same file."""
        lock_path = self.get_full_path(path)
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"Lock acquisition timed out: {path}") from None
                    time.sleep(LOCK_POLL_SECONDS)
            yield  # released with the descriptor
        finally:
            os.close(descriptor)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Mark this thread as one that calls `sync()` itself after the SDK call."""
        self._deferring.active = True
        try:
            yield
        finally:
            self._deferring.active = False

    def sync(self) -> None:
        """Return once every write made before the call is on disk (fsync)."""
        with self._state:
            target = self._written
            while self._synced < target:
                if self._syncing:  # another caller's sync may cover ours: wait for it
                    self._state.wait()
                    continue
                self._syncing = True
                files, dirs = self._unsynced_files, self._unsynced_dirs
                self._unsynced_files, self._unsynced_dirs = set(), set()
                covered = self._written
                self._state.release()
                try:
                    _fsync_all(files, dirs)
                except BaseException:
                    self._state.acquire()
                    self._unsynced_files |= files
                    self._unsynced_dirs |= dirs
                    raise
                else:
                    self._state.acquire()
                    self._synced = covered
                finally:
                    self._syncing = False
                    self._state.notify_all()

    @property
    def unsynced_writes(self) -> int:
        with self._state:
            return self._written - self._synced


def _replace_file(full_path: str, contents: str) -> None:
    """Write a temporary file beside `full_path`, then rename it over (no fsync here)."""
    path = Path(full_path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            descriptor = -1
            file.write(contents)
        os.replace(temporary, full_path)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync_all(files: set[str], dirs: set[str]) -> None:
    for name in files:
        _fsync_path(name, os.O_RDONLY)
    for name in dirs:
        _fsync_path(name, os.O_RDONLY | os.O_DIRECTORY)


def _fsync_path(name: str, flags: int) -> None:
    try:
        descriptor = os.open(name, flags)
    except FileNotFoundError:
        return  # replaced or deleted since: its directory's sync covers what is left
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
