"""The PostgreSQL store's schema: created at open, migrated once, a newer one refused."""

from __future__ import annotations

import psycopg
import pytest
import trio

from trio_openhands.stores.postgres import schema
from trio_openhands.stores.postgres.database import DatabaseUnavailable, open_database

TABLES = {"schema_version", "conversations", "sdk_files", "events", "blobs", "leases", "instances"}


def tables_and_versions(url: str) -> tuple[set[str], list[int]]:
    with psycopg.connect(url) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_version")]
    return tables, versions


async def test_open_creates_the_schema_and_a_second_open_changes_nothing(
    postgres_url: str,
) -> None:
    with trio.fail_after(10):
        async with open_database(postgres_url) as database:
            version = await database.run(schema.blocking_current_version)
        assert version == schema.SCHEMA_VERSION
        tables, versions = tables_and_versions(postgres_url)
        assert tables == TABLES
        assert versions == list(range(1, schema.SCHEMA_VERSION + 1))

        async with open_database(postgres_url) as database:
            before = await database.run(schema.blocking_migrate)
        assert before == schema.SCHEMA_VERSION  # nothing to do
        assert tables_and_versions(postgres_url) == (tables, versions)


async def test_instances_starting_together_migrate_once(postgres_url: str) -> None:
    """The migration lock: each step applied exactly once, every instance opens."""
    opened: list[int] = []

    async def start_instance() -> None:
        async with open_database(postgres_url, pool_size=1) as database:
            opened.append(await database.run(schema.blocking_current_version))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(start_instance)
    assert opened == [schema.SCHEMA_VERSION] * 4
    assert tables_and_versions(postgres_url)[1] == list(range(1, schema.SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused_naming_both_versions(postgres_url: str) -> None:
    newer = schema.SCHEMA_VERSION + 1
    with trio.fail_after(10):
        async with open_database(postgres_url):
            pass
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (newer,))

        with pytest.raises(schema.SchemaTooNew) as refused:
            async with open_database(postgres_url):
                pytest.fail("opened a database of a newer schema")
    assert (refused.value.found, refused.value.supported) == (newer, schema.SCHEMA_VERSION)
    message = str(refused.value)
    assert f"version {newer}" in message
    assert f"version {schema.SCHEMA_VERSION}" in message
    # Refused without touching it: the newer release's rows are all still there.
    assert tables_and_versions(postgres_url)[1][-1] == newer


async def test_an_older_release_refuses_a_database_this_one_migrated(postgres_url: str) -> None:
    """What the previous release sees (its migrations one step fewer)."""
    with trio.fail_after(10):
        async with open_database(postgres_url) as database:
            with pytest.raises(schema.SchemaTooNew):
                await database.run(
                    lambda connection: schema.blocking_migrate(connection, schema.MIGRATIONS[:-1])
                )


async def test_a_later_release_applies_only_its_new_steps(postgres_url: str) -> None:
    """The next release's migration: its one new step, once, over the existing data."""
    next_release = (*schema.MIGRATIONS, "ALTER TABLE conversations ADD COLUMN archived boolean")
    with trio.fail_after(10):
        async with open_database(postgres_url) as database:
            await database.run(
                lambda connection: connection.execute(
                    "INSERT INTO conversations (id, meta) VALUES (gen_random_uuid(), '{}')"
                )
            )
            for expected_before in (schema.SCHEMA_VERSION, len(next_release)):
                before = await database.run(
                    lambda connection: schema.blocking_migrate(connection, next_release)
                )
                assert before == expected_before
            rows = await database.run(
                lambda connection: connection.execute(
                    "SELECT meta, archived FROM conversations"
                ).fetchall()
            )
    assert rows == [({}, None)]
    assert tables_and_versions(postgres_url)[1] == list(range(1, len(next_release) + 1))


async def test_no_database_answering_fails_within_the_timeout(unused_loopback_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{unused_loopback_port}/postgres"
    with trio.fail_after(10), pytest.raises(DatabaseUnavailable, match=r"within 0\.5 s"):
        async with open_database(url, connect_timeout=0.5):
            pytest.fail("opened a database nobody serves")


@pytest.fixture
def unused_loopback_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
