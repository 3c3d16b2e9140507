"""Leases and fencing on a real PostgreSQL: claims, renewals, takeovers, fenced writes;
the instances registry.

Expiry is made deterministic without waiting: an instance that asks for a lease of 0 s
holds one that has expired by the next statement (the database's clock moves on), which is
what a paused or dead instance's lease looks like once its time is up.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import TYPE_CHECKING

import psycopg
import psycopg.errors
import pytest
import trio

from trio_openhands.stores.postgres.catalog import Catalog
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.fencing import HELD, Fence, LeaseLost
from trio_openhands.stores.postgres.heartbeat import heartbeat
from trio_openhands.stores.postgres.instances import InstanceRegistry, new_instance_id
from trio_openhands.stores.postgres.leases import LeaseStore, blocking_claim

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_openhands.stores.postgres.database import Database
    from trio_openhands.stores.postgres.leases import Lease


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    async with open_database(postgres_url) as database:
        yield database


def lease_row(url: str, conversation_id: uuid.UUID) -> tuple[str | None, int]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT owner, token FROM leases WHERE conversation_id = %s", (conversation_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_a_held_lease_is_not_claimed_and_renewal_keeps_it(database: Database) -> None:
    conversation = uuid.uuid4()
    a, b = LeaseStore(database, "instance-a"), LeaseStore(database, "instance-b")
    with trio.fail_after(10):
        lease = await a.claim(conversation)
        assert lease is not None
        assert (lease.owner, lease.token) == ("instance-a", 1)
        assert await b.claim(conversation) is None
        assert await a.claim(conversation) is None  # not even by its holder: one tenure
        assert await b.holder(conversation) == lease

        renewed = await a.renew(lease)
        assert renewed.token == lease.token
        assert renewed.expires_at >= lease.expires_at
        assert await b.claim(conversation) is None
        assert await b.expired() == []


async def test_an_expired_lease_is_taken_over_with_the_next_token(database: Database) -> None:
    conversation = uuid.uuid4()
    paused = LeaseStore(database, "instance-a", ttl=0)  # its lease is up at once
    b = LeaseStore(database, "instance-b")
    with trio.fail_after(10):
        old = await paused.claim(conversation)
        assert old is not None
        assert await b.holder(conversation) is None
        assert await b.expired() == [conversation]  # what a sweeper would pick up

        new = await b.claim(conversation)
        assert new is not None
        assert (new.owner, new.token) == ("instance-b", old.token + 1)

        with pytest.raises(LeaseLost):  # the old holder's heartbeat finds out
            await paused.renew(old)
        renewed, lost = await paused.renew_many([old])
        assert (renewed, lost) == ([], [old])
        assert not await paused.release(old)  # nor can it free the new holder's lease
        assert await b.holder(conversation) == new


async def test_an_expired_lease_nobody_claimed_is_renewed_by_its_holder(
    database: Database,
) -> None:
    conversation = uuid.uuid4()
    with trio.fail_after(10):
        lease = await LeaseStore(database, "instance-a", ttl=0).claim(conversation)
        assert lease is not None
        renewed = await LeaseStore(database, "instance-a", ttl=10).renew(lease)
        assert renewed.token == lease.token
        assert await LeaseStore(database, "instance-b").claim(conversation) is None


async def test_release_frees_the_lease_and_tokens_keep_growing(
    database: Database, postgres_url: str
) -> None:
    conversation = uuid.uuid4()
    a, b = LeaseStore(database, "instance-a"), LeaseStore(database, "instance-b")
    catalog = Catalog(database)
    with trio.fail_after(10):
        first = await a.claim(conversation)
        assert first is not None
        assert await a.release(first)
        assert lease_row(postgres_url, conversation) == (None, 1)  # the row (and token) stay
        with pytest.raises(LeaseLost):  # a released lease fences its holder off too
            await catalog.put(first.fence, {"id": conversation.hex})

        second = await b.claim(conversation)
        assert second is not None
        assert second.token == 2
        third_try = await a.claim(conversation)
        assert third_try is None


async def test_renew_many_renews_what_is_still_ours(database: Database) -> None:
    kept, taken = uuid.uuid4(), uuid.uuid4()
    a = LeaseStore(database, "instance-a")
    with trio.fail_after(10):
        kept_lease = await a.claim(kept)
        taken_lease = await LeaseStore(database, "instance-a", ttl=0).claim(taken)
        assert kept_lease is not None
        assert taken_lease is not None
        assert await LeaseStore(database, "instance-b").claim(taken) is not None

        renewed, lost = await a.renew_many([kept_lease, taken_lease])
        assert [lease.conversation_id for lease in renewed] == [kept]
        assert renewed[0].token == kept_lease.token
        assert lost == [taken_lease]


async def test_a_write_and_a_takeover_serialize_on_the_lease_row(
    database: Database, postgres_url: str
) -> None:
    """The race fencing exists for: A has checked its fence and is still writing when its
    lease expires and B claims. B's claim waits for A's transaction (seen here as B's claim
    timing out on the lock while A's transaction is open), so A's row is in before B owns the
    conversation, and A's next write is refused."""
    conversation = uuid.uuid4()
    a = await LeaseStore(database, "instance-a", ttl=0).claim(conversation)
    assert a is not None
    with (
        psycopg.connect(postgres_url, autocommit=True) as writer,
        psycopg.connect(postgres_url, autocommit=True) as claimer,
    ):
        claimer.execute("SET lock_timeout = '100ms'")
        with writer.transaction():  # A's fenced write, as `fencing.blocking_check` makes it
            assert writer.execute(HELD, a.fence.params()).fetchone() is not None
            with pytest.raises(psycopg.errors.LockNotAvailable):
                blocking_claim(claimer, conversation, "instance-b", ttl=10)
            writer.execute(
                'INSERT INTO conversations (id, meta) VALUES (%s, \'{"by": "a"}\')',
                (conversation,),
            )
        b = blocking_claim(claimer, conversation, "instance-b", ttl=10)
    assert b is not None
    assert b.token == a.token + 1
    catalog = Catalog(database)
    assert await catalog.get(conversation) == {"by": "a"}
    with pytest.raises(LeaseLost):
        await catalog.put(a.fence, {"by": "a, late"})
    assert await catalog.get(conversation) == {"by": "a"}
    await catalog.put(b.fence, {"by": "b"})
    assert await catalog.get(conversation) == {"by": "b"}


def test_fence_params_name_the_holder() -> None:
    conversation = uuid.uuid4()
    assert Fence(conversation, "a", 3).params() == {
        "fence_conversation": conversation,
        "fence_owner": "a",
        "fence_token": 3,
    }


async def test_instances_are_found_while_they_live(database: Database) -> None:
    a_id, b_id = new_instance_id(), new_instance_id()
    assert a_id != b_id
    a = InstanceRegistry(database, a_id, "http://10.0.0.1:8000")
    b = InstanceRegistry(database, b_id, "http://10.0.0.2:8000", ttl=0)  # its time is up
    with trio.fail_after(10):
        await a.register()
        await b.register()
        assert await b.address_of(a_id) == "http://10.0.0.1:8000"
        assert await a.address_of(b_id) is None  # expired: claim, don't forward
        assert [instance.id for instance in await a.live()] == [a_id]

        a.address = "http://10.0.0.1:9000"
        await a.register()  # the heartbeat: refreshed, and the address follows
        assert await b.address_of(a_id) == "http://10.0.0.1:9000"
        await a.deregister()
        assert await b.address_of(a_id) is None
        assert await a.live() == []


async def test_the_heartbeat_reports_a_takeover_and_survives_a_lost_connection(
    database: Database, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Instance A (pools of its own, so that its connections can be cut alone) beats; its
    renewals of 0 s leave its leases claimable at any time, as a paused instance's are."""
    async with open_database(postgres_url, application_name="instance-a") as a_database:
        a = LeaseStore(a_database, "instance-a", ttl=0)
        registry = InstanceRegistry(a_database, "instance-a", "http://10.0.0.1:8000")
        b = LeaseStore(database, "instance-b")
        kept, taken, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        held = [lease for c in (kept, taken, later) if (lease := await a.claim(c)) is not None]
        assert len(held) == 3
        lost: list[Lease] = []
        reported = trio.Event()

        def on_lost(lease: Lease) -> None:
            lost.append(lease)
            held.remove(lease)  # the supervisor stops that conversation here
            reported.set()

        beat = partial(heartbeat, a, lambda: held, on_lost, registry=registry, interval=0.01)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(beat)
                assert await registry.address_of("instance-a") == "http://10.0.0.1:8000"
                assert await b.claim(taken) is not None
                await reported.wait()
                assert [lease.conversation_id for lease in lost] == [taken]

                # A's connections are cut: a beat fails, is logged, and a later one gets
                # through.
                with psycopg.connect(postgres_url, autocommit=True) as connection:
                    connection.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'instance-a'"
                    )
                reported = trio.Event()
                assert await b.claim(later) is not None
                await reported.wait()
                nursery.cancel_scope.cancel()
    assert [lease.conversation_id for lease in lost] == [taken, later]
    assert [lease.conversation_id for lease in held] == [kept]
    assert any("did not answer" in record.message for record in caplog.records)
