"""The SDK's conversation files, made durable in groups instead of one fsync per write.

The SDK's own `LocalFileStore` fsyncs every file it writes (an event, the events length
marker, `base_state.json`), with the conversation's state lock held: a message costs
five fsyncs in a row, and concurrent posters queue behind them (about 70 % of a
message's time on this kind of machine). This store writes the same files (temporary
file, rename), its events aside (below), and leaves them to `sync()`, which fsyncs every
file written so far, and each directory that gained a name, in one go. Callers that wrote
concurrently share one `sync()`: whoever comes while one runs waits for it, then syncs what
is left (a group commit).

Each write is also lean in system calls, as every one of them hands the GIL over to the Trio
thread and waits to get it back. With the SDK's way of writing a message took about 56,
fsyncs included (a directory made again for every file, a random temporary name, a mode set
after the file was made, a buffered file object's probes); now about 22 (`strace -c -f` on
the SDK's `send_message` in a loop), and fewer again with events packed. A write that
would not change a file (what this store last wrote there) is skipped.

Events go to one file appended to, the events directory's pack (stores/event_pack.py),
not a file each: the SDK's names and contents, read back as files. The SDK's events length
marker (an empty file it deletes and makes again at every event, named after the count so
another process's writer can tell it is behind) is kept in memory: only this process writes
this folder (the conversations directory's lock, stores/file_store.py).

Where a caller must sync (the server's promise: a 2xx means on disk): before a command's
answer (after the SDK call returns, its lock released), and before an event from a run
reaches a subscriber (the conversation's event hand-over). Writes in between are in the
kernel's cache: a killed process loses none of them; only a machine that loses power
can lose what no answer acknowledged yet.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from openhands.sdk.conversation.persistence_const import EVENTS_DIR
from openhands.sdk.io import LocalFileStore

from trio_openhands.stores.event_pack import PACK_NAME, EventPack

log = logging.getLogger(__name__)

FILE_MODE = 0o600  # as the SDK's atomic writes: the files hold encrypted secrets
LOCK_POLL_SECONDS = 0.01  # how often a held lock file is tried again until the timeout
MARKER_PREFIX = ".eventlog-len-"  # the SDK's events length marker (its event_store.py)
_PLAIN, _PACKED, _MARKER = object(), object(), object()  # what a path is to this store


class GroupCommitFileStore(LocalFileStore):
    """`LocalFileStore` whose text writes are made durable by `sync()`, its events packed."""

    def __init__(self, root: str, cache_limit_size: int = 500) -> None:
        super().__init__(root, cache_limit_size=cache_limit_size)
        self._state = threading.Condition()
        self._unsynced_files: set[str] = set()
        self._unsynced_dirs: set[str] = set()
        self._written = 0  # writes so far (a count: what a sync must cover)
        self._synced = 0  # writes known to be on disk
        self._syncing = False
        self._deferring = threading.local()
        self._root_prefix = self.root.rstrip("/") + "/"  # the SDK made `root` absolute
        self._made_dirs: set[str] = set()  # directories known to exist (made or seen here)
        self._temporary_names = itertools.count()
        self._events_dir = self._root_prefix + EVENTS_DIR
        self._pack = EventPack(self._events_dir, FILE_MODE)
        self._markers: set[str] = set()  # the events length markers (full paths): see above

    def get_full_path(self, path: str) -> str:
        """The SDK's resolution (normalised, kept inside the root), without its cost for a
        plain relative path, which is what the SDK passes: 1.2 instead of 6.6 µs, about
        six times a message."""
        if _is_plain_relative(path):
            return f"{self._root_prefix}{path}"
        return super().get_full_path(path)

    def write(self, path: str, contents: str | bytes) -> None:
        if isinstance(contents, bytes):
            super().write(path, contents)  # the SDK writes binary files plainly, unsynced
            return
        full_path = self.get_full_path(path)
        kind = self._kind(full_path)
        if kind is _MARKER:
            self._markers.add(full_path)
            return
        if self.cache.get(full_path) == contents:
            return  # the file holds this already: written here, synced or about to be
        directory = os.path.dirname(full_path)
        self._make_dir(directory)
        try:
            made = self._store(kind, full_path, contents)
        except FileNotFoundError:  # its directory was removed since: make it again
            self._made_dirs.discard(directory)
            self._make_dir(directory)
            made = self._store(kind, full_path, contents)
        self.cache[full_path] = contents
        with self._state:
            if kind is _PACKED:
                self._unsynced_files.add(self._pack.path)
                if made:
                    self._unsynced_dirs.add(directory)
            else:
                if contents:  # an empty file's inode comes with its directory's sync
                    self._unsynced_files.add(full_path)
                self._unsynced_dirs.add(directory)
            self._written += 1

    def read(self, path: str) -> str:
        full_path = self.get_full_path(path)
        kind = self._kind(full_path)
        if kind is _MARKER:
            if full_path in self._markers:
                return ""
            raise FileNotFoundError(path)
        if kind is _PACKED:
            cached = self.cache.get(full_path)
            if cached is not None:
                return cached
            data = self._pack.read(os.path.basename(full_path))
            if data is not None:
                text = data.decode()
                self.cache[full_path] = text
                return text
        return super().read(path)  # a file, maybe one written before events were packed

    def exists(self, path: str) -> bool:
        full_path = self.get_full_path(path)
        kind = self._kind(full_path)
        if kind is _MARKER:
            return full_path in self._markers
        if kind is _PACKED and os.path.basename(full_path) in self._pack:
            return True
        return os.path.exists(full_path)

    def list(self, path: str) -> list[str]:
        listed = super().list(path)
        if self.get_full_path(path) != self._events_dir:
            return listed
        prefix = path.rstrip("/") + "/"
        hidden = {prefix + PACK_NAME}
        found = [
            name
            for name in listed
            if name not in hidden and not os.path.basename(name).startswith(MARKER_PREFIX)
        ]
        on_disk = set(found)
        found += [prefix + name for name in self._pack.names() if prefix + name not in on_disk]
        found += [prefix + os.path.basename(marker) for marker in self._markers]
        return found

    def delete(self, path: str) -> None:
        """As the SDK's (a file or a whole directory; a missing one is no error; a failure
        is logged, not raised), with one system call for a file."""
        full_path = self.get_full_path(path)
        kind = self._kind(full_path)
        if kind is _MARKER and full_path in self._markers:
            self._markers.discard(full_path)
            return  # else one an earlier version left on disk: deleted below
        self.cache.pop(full_path, None)
        if kind is _PACKED and self._pack.delete(os.path.basename(full_path)):
            with self._state:
                self._unsynced_files.add(self._pack.path)
                self._written += 1
        try:
            os.unlink(full_path)
        except FileNotFoundError:
            return
        except OSError as error:
            if not os.path.isdir(full_path):
                log.error("could not delete %s: %s", full_path, error)
                return
            self._forget_dirs_under(full_path)
            super().delete(path)  # a whole directory (EISDIR; EPERM on some systems)
        with self._state:  # the directory's entry is gone: make that durable too
            self._unsynced_dirs.add(os.path.dirname(full_path))
            self._written += 1

    def close(self) -> None:
        """Let go of the events pack's descriptor (a later use opens it again)."""
        self._pack.close()

    def _kind(self, full_path: str) -> object:
        directory, name = os.path.split(full_path)
        if directory != self._events_dir:
            return _PLAIN
        if name.startswith(MARKER_PREFIX):
            return _MARKER
        return _PLAIN if name.startswith(".") else _PACKED

    def _store(self, kind: object, full_path: str, contents: str) -> bool:
        """Write `contents` as `kind` says; True when that made the pack file."""
        if kind is _PACKED:
            return self._pack.append(os.path.basename(full_path), contents.encode())
        self._replace_file(full_path, contents)
        return False

    def _forget_dirs_under(self, full_path: str) -> None:
        """A whole directory is about to go: what this store knew of it goes too."""
        self._made_dirs.clear()
        if self._events_dir == full_path or self._events_dir.startswith(full_path + "/"):
            self._pack.close()
            self._pack = EventPack(self._events_dir, FILE_MODE)
            self._markers.clear()

    def _make_dir(self, directory: str) -> None:
        if directory not in self._made_dirs:
            os.makedirs(directory, exist_ok=True)
            self._made_dirs.add(directory)

    def _replace_file(self, full_path: str, contents: str) -> None:
        """The file holds `contents` at once or not at all (no fsync here): an empty file
        is made in place; any other is written beside it under a name no other writer of
        this process uses (and no earlier process left: O_EXCL), then renamed over."""
        if not contents:  # nothing to be half-written
            os.close(os.open(full_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _FLAGS, FILE_MODE))
            return
        data = contents.encode()
        directory, name = os.path.split(full_path)
        while True:
            temporary = f"{directory}/.{name}.{os.getpid()}-{next(self._temporary_names)}.tmp"
            try:
                descriptor = os.open(
                    temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, FILE_MODE
                )
            except FileExistsError:  # left by an earlier process of the same pid
                continue
            break
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
            finally:
                os.close(descriptor)
            os.replace(temporary, full_path)
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise

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
        self._make_dir(os.path.dirname(lock_path))
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
        """Return once every write (and delete) made before the call is on disk (fsync)."""
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


def _is_plain_relative(path: str) -> bool:
    """Whether the SDK's resolution of `path` is `root/path` as it stands: relative, with
    no empty, `.` or `..` part and no backslash (which the SDK reads as a separator)."""
    if not path or path[0] == "/" or "\\" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW  # no descriptor leaks into a child; no symlink followed


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
