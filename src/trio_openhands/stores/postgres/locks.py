"""Locks across processes and instances: PostgreSQL advisory locks, for worker threads.

A lock is taken on a connection of the database's lock pool, inside a transaction held
open for the lock's duration (`pg_advisory_xact_lock`): it is released when the
transaction ends, so however the block ends (an error, a connection that broke, a process
killed) no lock outlives it. Waiting is bounded by `lock_timeout`, the server's own timer,
so a waiter never polls. Two holders of one key exclude each other wherever they are: two
threads of one process (each has its own connection), two processes, two instances.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg.errors

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio_openhands.stores.postgres.database import Database


def lock_key(*parts: str) -> int:
    """The advisory lock's bigint key for a name made of `parts` (a stable hash)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def blocking_hold(database: Database, key: int, timeout: float) -> Iterator[None]:
    """Hold the advisory lock `key` for the block; `TimeoutError` if not had in `timeout`
    seconds (waiting first for a free connection of the lock pool, then for the lock)."""
    wait = f"{max(1, int(timeout * 1000))}ms"
    with database.lock_connection(timeout) as connection, connection.transaction():
        connection.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
        try:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise TimeoutError(f"advisory lock {key} not had within {timeout:g} s") from None
        yield
