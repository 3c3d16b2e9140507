"""The PostgreSQL schema, versioned, and the migration that brings a database up to it.

Every instance migrates at start. Migrations run in one transaction under a
transaction-scoped advisory lock, so several instances starting at once apply each step
exactly once (the others wait, then find nothing to do), and a failed step leaves the
database as it was. `schema_version` keeps one row per applied step. A database migrated by
a newer release than this one (a higher version) is refused: this code would misread
tables it does not know, and an old instance must not keep writing beside new ones.

A new version is a new entry appended to `MIGRATIONS`, never an edit of an old one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

# pg_advisory_xact_lock key taken while migrating ("toh-schm" as a big-endian bigint).
MIGRATION_LOCK_KEY = int.from_bytes(b"toh-schm", "big", signed=True)

_V1 = """
-- The catalog: one row per conversation, our meta record (what meta.json holds) as JSONB.
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    meta jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_by_created_at ON conversations (created_at, id);
CREATE INDEX conversations_by_updated_at ON conversations (updated_at, id);

-- The SDK's own files (base_state.json, events/...), per conversation. The C collation lets
-- the primary key's index serve prefix (directory) scans with LIKE 'dir/%'.
CREATE TABLE sdk_files (
    conversation_id uuid NOT NULL,
    path text COLLATE "C" NOT NULL,
    content bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, path)
);

-- The event log with its sequence numbers. `body` is `json`, not `jsonb`: it keeps the
-- SDK's serialization byte for byte, so a frame replayed from here is the live one.
-- `timestamp` is the SDK's own (naive, the writer's local time), as the log shows it;
-- `search_text` a message's text lower-cased, for the search's `body` filter.
CREATE TABLE events (
    conversation_id uuid NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 0),
    event_id text NOT NULL,
    kind text NOT NULL,
    source text,
    timestamp timestamp NOT NULL,
    body json NOT NULL,
    search_text text NOT NULL DEFAULT '',
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, event_id)
);

-- Settings, secrets, profiles: named opaque documents (secrets inside stay encrypted).
CREATE TABLE blobs (
    name text PRIMARY KEY,
    content bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who owns each conversation. A released lease keeps its row (owner NULL) so that its token
-- only ever grows: a stale holder's token never becomes valid again.
CREATE TABLE leases (
    conversation_id uuid PRIMARY KEY,
    owner text,
    token bigint NOT NULL CHECK (token > 0),
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_by_expiry ON leases (expires_at) WHERE owner IS NOT NULL;

-- The live instances and the internal address each serves on, for forwarding a command to
-- a conversation's owner (the lease names the owner, this row where to reach it).
CREATE TABLE instances (
    id text PRIMARY KEY,
    address text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
"""

# MIGRATIONS[n - 1] brings a database from version n - 1 to version n.
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the database's schema is version {found}, newer than version {supported}, "
            "the newest this server knows: upgrade this server (or point it at another "
            "database); it will not write to a schema it does not understand"
        )
        self.found = found
        self.supported = supported


def blocking_migrate(connection: psycopg.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the database to version `len(migrations)`; returns the version it was at.

    Idempotent: at that version already, it changes nothing. Raises `SchemaTooNew` when the
    database is beyond it. (`migrations` is other than `MIGRATIONS` only in tests: the
    steps of an older or a newer release.)"""
    target = len(migrations)
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        found = int(row[0]) if row is not None else 0
        if found > target:
            raise SchemaTooNew(found, target)
        for version in range(found + 1, target + 1):
            connection.execute(migrations[version - 1].encode())
            connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return found


def blocking_current_version(connection: psycopg.Connection) -> int:
    """The database's schema version (0 for a database never migrated)."""
    row = connection.execute(
        "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0"
        " ELSE (SELECT coalesce(max(version), 0) FROM schema_version) END"
    ).fetchone()
    return int(row[0]) if row is not None else 0
