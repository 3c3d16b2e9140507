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

Each write is also lean in system calls, as every one of them hands the GIL over to the Trio
thread and waits to get it back. With the SDK's way of writing a message took about 56,
fsyncs included (a directory made again for every file, a random temporary name, a mode set
after the file was made, a buffered file object's probes); now about 22 (`strace -c -f` on
the SDK's `send_message` in a loop). A write that would not change a file (what this store
last wrote there) is skipped.

The SDK moves its events length marker (an empty file) at every event: it deletes the old
one, then makes the new one. Here the deleted empty file is kept aside ("parked", invisible
to this store's readers) and renamed to the next empty file made in its directory: one
rename instead of an unlink and a create. Besides the calls, that spares the filesystem an
inode freed and one allocated per event: ext4 skips recently freed inodes when it allocates
one, and at hundreds of events a second that scan was a tenth of the server's CPU (perf).
A sync unlinks whatever is still parked, so the disk holds what the SDK asked for.

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

from openhands.sdk.io import LocalFileStore

log = logging.getLogger(__name__)

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
        self._root_prefix = self.root.rstrip("/") + "/"  # the SDK made `root` absolute
        self._made_dirs: set[str] = set()  # directories known to exist (made or seen here)
        self._temporary_names = itertools.count()
        # Per directory, an empty file deleted but kept for the next empty one (the module).
        self._parked: dict[str, str] = {}

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
        if self.cache.get(full_path) == contents:
            return  # the file holds this already: written here, synced or about to be
        directory = os.path.dirname(full_path)
        if contents and self._is_parked(full_path):
            self._take_parked(directory)  # overwritten: no longer a pending delete
        self._make_dir(directory)
        try:
            self._replace_file(full_path, contents)
        except FileNotFoundError:  # its directory was removed since: make it again
            self._made_dirs.discard(directory)
            self._make_dir(directory)
            self._replace_file(full_path, contents)
        self.cache[full_path] = contents
        with self._state:
            if contents:  # an empty file's inode comes with its directory's sync
                self._unsynced_files.add(full_path)
            self._unsynced_dirs.add(directory)
            self._written += 1

    def read(self, path: str) -> str:
        if self._is_parked(self.get_full_path(path)):
            raise FileNotFoundError(path)
        return super().read(path)

    def exists(self, path: str) -> bool:
        full_path = self.get_full_path(path)
        return not self._is_parked(full_path) and os.path.exists(full_path)

    def list(self, path: str) -> list[str]:
        return [
            name for name in super().list(path) if not self._is_parked(self.get_full_path(name))
        ]

    def delete(self, path: str) -> None:
        """As the SDK's (a file or a whole directory; a missing one is no error; a failure
        is logged, not raised), with one system call for a file, none for an empty one
        (parked, see the module)."""
        full_path = self.get_full_path(path)
        if self._is_parked(full_path):
            return  # deleted already
        if self.cache.get(full_path) == "":
            directory = os.path.dirname(full_path)
            with self._state:
                earlier = self._parked.get(directory)
                self._parked[directory] = full_path
            self.cache.pop(full_path, None)
            if earlier is not None:  # one parked per directory: the earlier one goes
                self._unlink_quietly(earlier)
            return
        try:
            os.unlink(full_path)
        except FileNotFoundError:
            return
        except OSError as error:
            if not os.path.isdir(full_path):
                log.error("could not delete %s: %s", full_path, error)
                return
            super().delete(path)  # a whole directory (EISDIR; EPERM on some systems)
            self._made_dirs.clear()
            with self._state:
                self._parked.clear()
        self.cache.pop(full_path, None)
        with self._state:  # the directory's entry is gone: make that durable too
            self._unsynced_dirs.add(os.path.dirname(full_path))
            self._written += 1

    def _is_parked(self, full_path: str) -> bool:
        return self._parked.get(os.path.dirname(full_path)) == full_path

    def _take_parked(self, directory: str) -> str | None:
        with self._state:
            return self._parked.pop(directory, None)

    def _unlink_quietly(self, full_path: str) -> None:
        try:
            os.unlink(full_path)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.error("could not delete %s: %s", full_path, error)
        with self._state:
            self._unsynced_dirs.add(os.path.dirname(full_path))
            self._written += 1

    def _make_dir(self, directory: str) -> None:
        if directory not in self._made_dirs:
            os.makedirs(directory, exist_ok=True)
            self._made_dirs.add(directory)

    def _replace_file(self, full_path: str, contents: str) -> None:
        """The file holds `contents` at once or not at all (no fsync here): an empty file
        is made in place; any other is written beside it under a name no other writer of
        this process uses (and no earlier process left: O_EXCL), then renamed over."""
        if not contents:  # nothing to be half-written (the events length marker)
            parked = self._take_parked(os.path.dirname(full_path))
            if parked is not None:
                try:
                    os.rename(parked, full_path)
                    return
                except FileNotFoundError:  # unlinked by a sync meanwhile: make it anew
                    pass
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
            parked, self._parked = list(self._parked.values()), {}
        for full_path in parked:  # deleted: now for good
            self._unlink_quietly(full_path)
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
