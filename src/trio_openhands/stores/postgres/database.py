"""The connection to the shared PostgreSQL: psycopg 3 pools, used only from worker threads.

psycopg's blocking API in threads keeps the Trio thread free: every call from Trio goes
through `Database.run` (`trio.to_thread.run_sync`, bounded by a limiter the size of the
pool, so no more threads wait than there are connections), and the SDK's own threads (its
FileStore calls) use the blocking methods directly. Two pools, because a held `lock()`
keeps a connection for its whole duration while the writes inside it need another: with one
pool, lock holders could take every connection and then wait forever for one more. Lock
holders only ever wait on the data pool, whose connections are never held while waiting on
anything, so the two can only queue, never deadlock.

Data connections are in autocommit mode: a lone statement is its own transaction, and
`with connection.transaction():` groups several. A connection handed back to the pool
inside a failed or open transaction is rolled back (psycopg_pool does it).

An in-flight statement is not cancelled when its Trio task is (the worker thread cannot be
interrupted, and a half-known outcome is worse than a late one): `run` returns or raises
once the statement has, then the cancellation is delivered.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from trio_openhands.stores.postgres import schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

log = logging.getLogger(__name__)


def _warnings_and_worse(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


# psycopg_pool logs every connection taken and returned at INFO: three lines per statement
# in a server logging at INFO (measured: an SDK event append 20x slower). Its warnings still
# show. A filter, not only a level: the SDK's logging set-up resets the level of every
# logger whose level is the root's former one (WARNING, before it).
_pool_log = logging.getLogger("psycopg.pool")
_pool_log.setLevel(logging.WARNING)
_pool_log.addFilter(_warnings_and_worse)

APPLICATION_NAME = "trio-openhands"
DEFAULT_POOL_SIZE = 8
DEFAULT_LOCK_POOL_SIZE = 4
# How long to wait for a free connection (or the database at start) before failing.
DEFAULT_CONNECT_TIMEOUT = 10.0


class DatabaseUnavailable(RuntimeError):
    """No connection could be had within the timeout (database down, or pool exhausted)."""


class Database:
    """Both pools of one PostgreSQL database. Open it with `open_database`.

    Blocking methods (`connection`, `lock_connection`, `blocking_*`) are for worker threads
    only; from Trio, use `run`.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        lock_pool_size: int = DEFAULT_LOCK_POOL_SIZE,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self.url = url
        self.timeout = timeout
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": application_name}
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            open=False,
            timeout=timeout,
            name="data",
        )
        self._lock_pool = ConnectionPool(
            url,
            min_size=0,
            max_size=lock_pool_size,
            kwargs=kwargs,
            open=False,
            timeout=timeout,
            name="locks",
        )
        self._limiter = trio.CapacityLimiter(pool_size)

    # --- worker threads ------------------------------------------------------------------

    def blocking_open(self, *, migrate: bool = True) -> None:
        """Open the pools (waiting for the first connection) and migrate the schema."""
        try:
            self._pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as error:
            self._pool.close()
            raise DatabaseUnavailable(
                f"no connection to PostgreSQL within {self.timeout:g} s: {error}"
            ) from None
        self._lock_pool.open()
        if migrate:
            with self.connection() as connection:
                before = schema.blocking_migrate(connection)
            if before != schema.SCHEMA_VERSION:
                log.info("database schema migrated: %d -> %d", before, schema.SCHEMA_VERSION)

    def blocking_close(self) -> None:
        self._lock_pool.close()
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A data connection (autocommit) for the duration of the block."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except PoolTimeout as error:
            raise DatabaseUnavailable(str(error)) from None

    @contextmanager
    def lock_connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A connection of the lock pool, to hold a lock on for the duration of the block.

        Raises `TimeoutError` when none is free within `timeout` (the pool's by default)."""
        try:
            connection = self._lock_pool.getconn(timeout)
        except PoolTimeout:
            raise TimeoutError(f"no connection free to hold a lock on within {timeout} s") from None
        try:
            yield connection
        finally:
            self._lock_pool.putconn(connection)  # rolled back first if in a transaction

    # --- Trio ----------------------------------------------------------------------------

    async def run[T](self, fn: Callable[[psycopg.Connection], T]) -> T:
        """`fn(connection)` in a worker thread, with a data connection; returns its result.

        `fn` is blocking code: it may run several statements, and wrap them in
        `connection.transaction()` to make them one transaction."""

        def with_connection() -> T:
            with self.connection() as connection:
                return fn(connection)

        return await trio.to_thread.run_sync(with_connection, limiter=self._limiter)

    def statistics(self) -> dict[str, dict[str, int]]:
        """The pools' counters (psycopg_pool's `get_stats`), for /server_info and logs."""
        return {"data": self._pool.get_stats(), "locks": self._lock_pool.get_stats()}


@asynccontextmanager
async def open_database(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    lock_pool_size: int = DEFAULT_LOCK_POOL_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    application_name: str = APPLICATION_NAME,
    migrate: bool = True,
) -> AsyncIterator[Database]:
    """The database, opened and migrated for the block's duration, closed after it.

    Raises `DatabaseUnavailable` when PostgreSQL does not answer within `connect_timeout`
    seconds (also how long a statement waits for a free connection), and
    `schema.SchemaTooNew` when a newer release migrated the database. `application_name`
    is what PostgreSQL shows of these connections (`pg_stat_activity`): put the instance
    id in it to tell the instances' connections apart."""
    database = Database(
        url,
        pool_size=pool_size,
        lock_pool_size=lock_pool_size,
        timeout=connect_timeout,
        application_name=application_name,
    )
    try:
        await trio.to_thread.run_sync(lambda: database.blocking_open(migrate=migrate))
        yield database
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(database.blocking_close)
