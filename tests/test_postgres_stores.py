"""The catalog, the event log and the shared documents on a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
import pytest
import trio

from trio_openhands.stores.postgres.blobs import BlobStore
from trio_openhands.stores.postgres.catalog import Catalog, UnknownPage
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.events import EventQuery, EventStore, StoredEvent, UnknownEvent
from trio_openhands.stores.postgres.fencing import LeaseLost
from trio_openhands.stores.postgres.leases import LeaseStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from trio_openhands.stores.postgres.database import Database
    from trio_openhands.stores.postgres.leases import Lease


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    async with open_database(postgres_url) as database:
        yield database


async def owned(database: Database, owner: str = "instance-a", ttl: float = 10) -> Lease:
    lease = await LeaseStore(database, owner, ttl=ttl).claim(uuid.uuid4())
    assert lease is not None
    return lease


def event(seq: int, kind: str = "MessageEvent") -> StoredEvent:
    # Spacing and key order as the SDK writes them: the store must keep them exactly.
    text = json.dumps({"kind": kind, "id": f"e{seq}", "n": seq, "z": 1, "a": [1, 2]})
    return StoredEvent(seq, f"e{seq}", kind, "agent", datetime(2026, 1, 1, 12, 0, seq), text)


async def test_catalog_round_trip_and_batch_order(database: Database) -> None:
    catalog = Catalog(database)
    with trio.fail_after(10):
        first, second = await owned(database), await owned(database)
        await catalog.put(first.fence, {"id": first.conversation_id.hex, "title": "one"})
        await catalog.put(second.fence, {"id": second.conversation_id.hex, "tags": {"a": "b"}})
        await catalog.put(first.fence, {"id": first.conversation_id.hex, "title": "renamed"})

        assert await catalog.get(first.conversation_id) == {
            "id": first.conversation_id.hex,
            "title": "renamed",
        }
        unknown = uuid.uuid4()
        found = await catalog.get_many([second.conversation_id, unknown, first.conversation_id])
        assert [meta and meta["id"] for meta in found] == [
            second.conversation_id.hex,
            None,
            first.conversation_id.hex,
        ]
        assert [meta["id"] for meta in await catalog.all()] == [
            first.conversation_id.hex,
            second.conversation_id.hex,
        ]
        assert await catalog.count() == 2


async def test_catalog_pages_in_every_order_and_status(database: Database) -> None:
    catalog = Catalog(database)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with trio.fail_after(10):
        leases = [await owned(database) for _ in range(5)]
        for number, lease in enumerate(leases):
            meta = {"n": number, "status": "idle" if number % 2 else "finished"}
            await catalog.put(
                lease.fence,
                meta,
                created_at=start + timedelta(minutes=number),
                updated_at=start + timedelta(hours=1, minutes=-number),
            )
        # A later write without times keeps the creation time and stamps the update now.
        await catalog.put(leases[0].fence, {"n": 0, "status": "finished"})

        async def numbers(**search: Any) -> list[list[int]]:
            pages: list[list[int]] = []
            page_id = None
            while True:
                page, page_id = await catalog.page(page_id=page_id, limit=2, **search)
                pages.append([meta["n"] for meta in page])
                if page_id is None:
                    return pages

        assert await numbers(sort_order="CREATED_AT") == [[0, 1], [2, 3], [4]]
        assert await numbers(sort_order="CREATED_AT_DESC") == [[4, 3], [2, 1], [0]]
        assert await numbers(sort_order="UPDATED_AT") == [[4, 3], [2, 1], [0]]
        assert await numbers(sort_order="UPDATED_AT_DESC") == [[0, 1], [2, 3], [4]]
        assert await numbers(sort_order="CREATED_AT", status="finished") == [[0, 2], [4]]
        assert await catalog.count() == 5
        assert await catalog.count("idle") == 2

        with pytest.raises(UnknownPage):
            await catalog.page(page_id=uuid.uuid4())
        with pytest.raises(UnknownPage):  # in the catalog, not in this search
            await catalog.page(page_id=leases[1].conversation_id, status="finished")


async def test_events_keep_their_text_and_order_and_refuse_duplicates(
    database: Database,
) -> None:
    store = EventStore(database)
    with trio.fail_after(10):
        lease = await owned(database)
        conversation = lease.conversation_id
        assert await store.last_seq(conversation) == -1
        written = [event(0), event(1, "ActionEvent"), event(2)]
        await store.append(lease.fence, written[:2])
        await store.append(lease.fence, written[2:])

        assert await store.after(conversation) == written  # byte-exact JSON included
        assert await store.after(conversation, 0) == written[1:]
        assert await store.after(conversation, 0, limit=1) == written[1:2]
        assert await store.last_seq(conversation) == 2
        assert await store.get(conversation, "e1") == written[1]
        assert await store.get(conversation, "e9") is None

        with pytest.raises(psycopg.errors.UniqueViolation):
            await store.append(lease.fence, [event(3), event(2)])
        assert await store.last_seq(conversation) == 2  # the whole append was refused


async def test_event_search_filters_and_pages_as_the_log_does(database: Database) -> None:
    store = EventStore(database)
    with trio.fail_after(10):
        lease = await owned(database)
        conversation = lease.conversation_id
        written = [
            StoredEvent(
                seq,
                f"e{seq}",
                "MessageEvent" if seq % 2 == 0 else "ActionEvent",
                "user" if seq % 3 == 0 else "agent",
                datetime(2026, 1, 1, 12, 0, seq),
                json.dumps({"n": seq, "pad": "x" * 100}),
                search_text=f"message number {seq}" if seq % 2 == 0 else "",
            )
            for seq in range(10)
        ]
        await store.append(lease.fence, written)

        async def seqs(query: EventQuery | None = None, **paging: Any) -> list[list[int]]:
            pages: list[list[int]] = []
            page_id = None
            while True:
                page, page_id = await store.search(
                    conversation, query, page_id=page_id, limit=4, **paging
                )
                pages.append([event.seq for event in page])
                if page_id is None:
                    return pages

        assert await seqs() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert await seqs(descending=True) == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]
        assert await seqs(EventQuery(kind="ActionEvent")) == [[1, 3, 5, 7], [9]]
        assert await seqs(EventQuery(source="user", kind="MessageEvent")) == [[0, 6]]
        assert await seqs(EventQuery(body="number 4")) == [[4]]
        window = EventQuery(
            since=datetime(2026, 1, 1, 12, 0, 2), until=datetime(2026, 1, 1, 12, 0, 5)
        )
        assert await seqs(window) == [[2, 3, 4]]
        assert await store.count(conversation) == 10
        assert await store.count(conversation, EventQuery(kind="MessageEvent")) == 5
        # Bounded in bytes too (each event is ~120 bytes of JSON), one event at least.
        page, following = await store.search(conversation, max_bytes=250)
        assert ([event.seq for event in page], following) == ([0, 1], "e2")
        page, following = await store.search(conversation, max_bytes=1)
        assert ([event.seq for event in page], following) == ([0], "e1")
        assert page[0] == written[0]  # as written (its search text is not read back)
        with pytest.raises(UnknownEvent):
            await store.search(conversation, page_id="e99")


async def test_a_stale_owner_writes_no_event_and_deletes_nothing(database: Database) -> None:
    catalog, store = Catalog(database), EventStore(database)
    with trio.fail_after(10):
        stale = await owned(database, ttl=0)
        conversation = stale.conversation_id
        await catalog.put(stale.fence, {"id": conversation.hex})
        await store.append(stale.fence, [event(0)])
        new = await LeaseStore(database, "instance-b").claim(conversation)
        assert new is not None

        with pytest.raises(LeaseLost):
            await store.append(stale.fence, [event(1)])
        with pytest.raises(LeaseLost):
            await catalog.delete(stale.fence)
        assert await store.after(conversation) == [event(0)]
        assert await catalog.get(conversation) == {"id": conversation.hex}

        await store.append(new.fence, [event(1)])
        assert await store.last_seq(conversation) == 1


async def test_delete_removes_everything_of_the_conversation_and_releases_it(
    database: Database, postgres_url: str
) -> None:
    catalog, store = Catalog(database), EventStore(database)
    with trio.fail_after(10):
        lease, other = await owned(database), await owned(database)
        for each in (lease, other):
            await catalog.put(each.fence, {"id": each.conversation_id.hex})
            await store.append(each.fence, [event(0)])
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO sdk_files (conversation_id, path, content) VALUES (%s, %s, %s)",
                (lease.conversation_id, "base_state.json", b"{}"),
            )

        await catalog.delete(lease.fence)

        assert await catalog.get(lease.conversation_id) is None
        assert await store.after(lease.conversation_id) == []
        with psycopg.connect(postgres_url) as connection:
            files = connection.execute(
                "SELECT count(*) FROM sdk_files WHERE conversation_id = %s",
                (lease.conversation_id,),
            ).fetchone()
        assert files == (0,)
        assert await LeaseStore(database, "x").holder(lease.conversation_id) is None
        with pytest.raises(LeaseLost):  # released: the deleter is fenced off as well
            await catalog.put(lease.fence, {"id": lease.conversation_id.hex})
        # The other conversation is untouched.
        assert await catalog.get(other.conversation_id) == {"id": other.conversation_id.hex}
        assert await store.after(other.conversation_id) == [event(0)]


async def test_blobs_read_write_delete_and_list(database: Database) -> None:
    blobs = BlobStore(database)
    with trio.fail_after(10):
        assert await blobs.read("settings.json") is None
        await blobs.write("settings.json", b'{"a": 1}')
        await blobs.write("profiles/llm/fast.json", b"{}")
        await blobs.write("profiles/llm/slow.json", b"{}")
        assert await blobs.read("settings.json") == b'{"a": 1}'
        assert await blobs.names("profiles/llm/") == [
            "profiles/llm/fast.json",
            "profiles/llm/slow.json",
        ]
        assert await blobs.delete("profiles/llm/slow.json")
        assert not await blobs.delete("profiles/llm/slow.json")
        assert await blobs.names() == ["profiles/llm/fast.json", "settings.json"]


async def test_concurrent_updates_of_a_blob_each_see_the_others(database: Database) -> None:
    """Read-modify-write from many tasks (as from many instances): none is lost, even on a
    document that does not exist yet."""
    blobs = BlobStore(database)

    def add(number: int) -> Callable[[bytes | None], tuple[bytes, int]]:
        def change(current: bytes | None) -> tuple[bytes, int]:
            numbers = json.loads(current) if current is not None else []
            return json.dumps([*numbers, number]).encode(), len(numbers)

        return change

    async def update(number: int) -> None:
        await blobs.update("counter", add(number))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for number in range(8):
                nursery.start_soon(update, number)
        stored = await blobs.read("counter")
    assert stored is not None
    assert sorted(json.loads(stored)) == list(range(8))


async def test_an_update_that_raises_changes_nothing(database: Database) -> None:
    blobs = BlobStore(database)

    def refuse(current: bytes | None) -> tuple[bytes, None]:
        raise ValueError("no")

    with trio.fail_after(10):
        await blobs.write("settings.json", b"old")
        with pytest.raises(ValueError, match="no"):
            await blobs.update("settings.json", refuse)
        assert await blobs.read("settings.json") == b"old"
        unchanged = await blobs.update("settings.json", lambda current: (current or b"", 7))
        assert unchanged == 7


async def test_updates_of_all_documents_under_a_prefix(database: Database) -> None:
    """Each `update_all` sees every one before it (as from many instances); what `change`
    drops is deleted, a raise writes nothing, documents beside the prefix are untouched."""
    blobs = BlobStore(database)

    async def add(number: int) -> None:
        def change(current: dict[str, bytes]) -> tuple[dict[str, bytes], None]:
            return {**current, f"dir/{number}.json": str(len(current)).encode()}, None

        await blobs.update_all("dir/", change)

    def refuse(current: dict[str, bytes]) -> tuple[dict[str, bytes], None]:
        raise ValueError("no")

    with trio.fail_after(10):
        await blobs.write("dirt.json", b"beside")
        async with trio.open_nursery() as nursery:
            for number in range(6):
                nursery.start_soon(add, number)
        names = [f"dir/{number}.json" for number in range(6)]
        assert await blobs.names("dir/") == names
        counts = [await blobs.read(name) or b"" for name in names]
        assert sorted(counts) == [str(count).encode() for count in range(6)]
        with pytest.raises(ValueError, match="no"):
            await blobs.update_all("dir/", refuse)
        kept = await blobs.update_all("dir/", lambda current: ({names[0]: b"x"}, len(current)))
        assert kept == 6
        assert await blobs.names() == ["dir/0.json", "dirt.json"]
        assert await blobs.read("dir/0.json") == b"x"
