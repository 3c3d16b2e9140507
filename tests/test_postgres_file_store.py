"""The SDK's FileStore over PostgreSQL: what LocalFileStore does, used by the SDK itself,
locked across processes, and fenced.

The SDK (a few seconds to import) is imported by the tests that need it, in a worker
thread, once per session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import trio

from trio_openhands.stores.postgres import sdk_files
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.fencing import LeaseLost
from trio_openhands.stores.postgres.leases import LeaseStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from trio_openhands.stores.postgres.database import Database
    from trio_openhands.stores.postgres.leases import Lease
    from trio_openhands.stores.postgres.sdk_file_store import PostgresFileStore


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    async with open_database(postgres_url) as database:
        yield database


@pytest.fixture
async def lease(database: Database) -> Lease:
    claimed = await LeaseStore(database, "instance-a").claim(uuid.uuid4())
    assert claimed is not None
    return claimed


async def file_store(database: Database, lease: Lease) -> PostgresFileStore:
    def load() -> PostgresFileStore:
        from trio_openhands.stores.postgres.sdk_file_store import PostgresFileStore

        return PostgresFileStore(database, lease.fence)

    return await trio.to_thread.run_sync(load)


async def in_thread[T](fn: Callable[[], T]) -> T:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn)


def test_paths_are_normalized_inside_the_root() -> None:
    assert sdk_files.normalize("/events//a.json") == "events/a.json"
    assert sdk_files.normalize("events\\a.json") == "events/a.json"
    assert sdk_files.normalize("events/../base_state.json") == "base_state.json"
    assert sdk_files.normalize("") == sdk_files.normalize("/") == sdk_files.normalize(".") == ""
    with pytest.raises(ValueError, match="escapes"):
        sdk_files.normalize("../elsewhere")


async def test_it_answers_as_the_sdks_local_file_store(
    database: Database, lease: Lease, tmp_path: Path
) -> None:
    """The same calls on both stores give the same answers."""
    store = await file_store(database, lease)

    def both() -> tuple[list[Any], list[Any]]:
        from openhands.sdk.io import LocalFileStore

        answers: tuple[list[Any], list[Any]] = ([], [])
        for each, answer in zip((store, LocalFileStore(str(tmp_path))), answers, strict=True):
            each.write("base_state.json", '{"a": 1}')
            each.write("events/event-00000-x.json", "{}")
            each.write("events/event-00001-y.json", b'{"b": "\xc3\xa9"}')
            each.write("events/.eventlog-len-2.marker", "")
            each.write("events/deeper/z_%.json", "z")
            answer.append(each.read("base_state.json"))
            answer.append(each.read("/events/event-00001-y.json"))
            answer.append(sorted(each.list("events")))
            answer.append(sorted(each.list("events/")))
            answer.append(sorted(each.list("")))
            answer.append(each.list("base_state.json"))
            answer.append(each.list("nothing"))
            answer.append([each.exists(p) for p in ("events", "events/deeper", "event", "x")])
            each.write("base_state.json", '{"a": 2}')
            answer.append(each.read("base_state.json"))
            each.delete("events/.eventlog-len-2.marker")
            each.delete("missing.json")
            answer.append(sorted(each.list("events")))
            each.delete("events")
            answer.append([each.exists("events"), each.list("events"), each.list("")])
            try:
                each.read("events/event-00000-x.json")
            except FileNotFoundError as error:
                answer.append(("missing", str(error)))
        return answers

    ours, theirs = await in_thread(both)
    assert ours == theirs
    assert ours[2] == [
        "events/.eventlog-len-2.marker",
        "events/deeper/",
        "events/event-00000-x.json",
        "events/event-00001-y.json",
    ]


async def test_what_a_listing_fetched_never_hides_this_stores_writes(
    database: Database, lease: Lease
) -> None:
    """A listing keeps its small files' contents for one read each; this store's own
    writes and deletes after it are what reads return."""
    store = await file_store(database, lease)

    def scenario() -> list[object]:
        seen: list[object] = []
        for name in ("a", "b", "c"):
            store.write(f"events/{name}.json", f"old {name}")
        store.write("events/big.json", "x" * (sdk_files.PREFETCH_MAX_FILE_BYTES + 1))
        store.list("events")
        store.write("events/a.json", "new a")
        store.delete("events/b.json")
        seen.append(store.read("events/a.json"))
        try:
            store.read("events/b.json")
        except FileNotFoundError:
            seen.append("b gone")
        seen.append(store.read("events/c.json"))
        seen.append(store.read("events/c.json"))  # the second read is the database's
        seen.append(len(store.read("events/big.json")))
        store.list("events")
        store.delete("events")
        seen.append(store.exists("events/c.json"))
        try:
            store.read("events/c.json")
        except FileNotFoundError:
            seen.append("c gone")
        return seen

    assert await in_thread(scenario) == [
        "new a",
        "b gone",
        "old c",
        "old c",
        sdk_files.PREFETCH_MAX_FILE_BYTES + 1,
        False,
        "c gone",
    ]


async def test_a_conversation_persists_through_it_and_reloads_from_it(
    database: Database, lease: Lease, tmp_path: Path
) -> None:
    """The SDK's own use: a LocalConversation on this store, a message and a run with a
    scripted LLM, then a fresh LocalConversation over a fresh store finds every event."""
    first_store, second_store = await file_store(database, lease), await file_store(database, lease)

    def converse() -> tuple[list[str], list[str], str]:
        from openhands.sdk import Agent, LocalConversation, Message, TextContent
        from openhands.sdk.testing import TestLLM

        def agent(*replies: str) -> Agent:
            messages: list[Message | Exception] = [
                Message(role="assistant", content=[TextContent(text=r)]) for r in replies
            ]
            return Agent(llm=TestLLM.from_messages(messages), tools=[])

        conversation = LocalConversation(
            agent=agent("hello from the store"),
            workspace=str(tmp_path / "work"),
            file_store=first_store,
            conversation_id=lease.conversation_id,
            visualizer=None,
            delete_on_close=False,
        )
        conversation.send_message("hi")
        conversation.run()
        written = [event.id for event in conversation.state.events]
        conversation.close()

        reloaded = LocalConversation(
            agent=agent(),
            workspace=str(tmp_path / "work"),
            file_store=second_store,
            conversation_id=lease.conversation_id,
            visualizer=None,
            delete_on_close=False,
        )
        read = [event.id for event in reloaded.state.events]
        status = reloaded.state.execution_status.value
        reloaded.close()
        return written, read, status

    written, read, status = await in_thread(converse)
    assert len(written) >= 3  # system prompt, the user's message, the reply at least
    assert read == written
    assert status == "finished"
    paths = await in_thread(lambda: sdk_files.blocking_paths(database, lease.conversation_id))
    assert "base_state.json" in paths
    assert sum(path.startswith("events/event-") for path in paths) == len(written)


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, uuid
    from trio_openhands.stores.postgres import locks, sdk_files
    from trio_openhands.stores.postgres.database import Database

    database = Database(sys.argv[1])
    database.blocking_open(migrate=False)
    key = sdk_files.lock_key(uuid.UUID(sys.argv[2]), sys.argv[3])
    with locks.blocking_hold(database, key, timeout=10):
        print("held", flush=True)
        sys.stdin.readline()
    database.blocking_close()
    """
)


async def test_a_lock_excludes_another_process_until_it_lets_go(
    database: Database, lease: Lease, postgres_url: str
) -> None:
    store = await file_store(database, lease)
    lock_path = "events/.eventlog.lock"
    command = [sys.executable, "-c", LOCK_HOLDER, postgres_url, lease.conversation_id.hex]
    holder = await trio.lowlevel.open_process(
        [*command, lock_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdin is not None
    assert holder.stdout is not None

    def try_lock(path: str) -> bool:
        try:
            with store.lock(path, timeout=0.2):
                return True
        except TimeoutError:
            return False

    try:
        with trio.fail_after(30):
            said = b""
            while not said.endswith(b"\n"):
                said += await holder.stdout.receive_some()
            assert said == b"held\n"
            assert not await in_thread(lambda: try_lock(lock_path))
            assert await in_thread(lambda: try_lock("events/other.lock"))  # another path: free
            await holder.stdin.send_all(b"\n")
            assert await holder.wait() == 0
        assert await in_thread(lambda: try_lock(lock_path))
    finally:
        holder.kill()
        await holder.wait()


async def test_a_lock_excludes_another_thread_and_ends_with_its_block(
    database: Database, lease: Lease
) -> None:
    store = await file_store(database, lease)
    holding, release = threading.Event(), threading.Event()

    def hold_then_fail() -> None:
        with store.lock("events/.eventlog.lock", timeout=5):
            holding.set()
            release.wait(10)
            raise RuntimeError("the block fails")

    def try_lock() -> bool:
        try:
            with store.lock("events/.eventlog.lock", timeout=0.2):
                return True
        except TimeoutError:
            return False

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def holder() -> None:
                with pytest.raises(RuntimeError, match="the block fails"):
                    await trio.to_thread.run_sync(hold_then_fail)

            nursery.start_soon(holder)
            await trio.to_thread.run_sync(holding.wait)
            assert not await trio.to_thread.run_sync(try_lock)
            release.set()
        assert await trio.to_thread.run_sync(try_lock)  # the failed block let it go


async def test_a_stale_owner_writes_and_deletes_nothing(
    database: Database, postgres_url: str
) -> None:
    """Claim by A, A's lease expires, claim by B: A's writes raise LeaseLost and leave the
    rows as they were; B writes."""
    conversation = uuid.uuid4()
    stale = await LeaseStore(database, "instance-a", ttl=0).claim(conversation)
    assert stale is not None
    a_store = await file_store(database, stale)
    await in_thread(lambda: a_store.write("base_state.json", "by a"))
    new = await LeaseStore(database, "instance-b").claim(conversation)
    assert new is not None
    b_store = await file_store(database, new)

    def stored() -> list[tuple[str, bytes]]:
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(
                "SELECT path, content FROM sdk_files WHERE conversation_id = %s ORDER BY path",
                (conversation,),
            ).fetchall()
        return [(path, bytes(content)) for path, content in rows]

    before = stored()
    assert before == [("base_state.json", b"by a")]
    with pytest.raises(LeaseLost):
        await in_thread(lambda: a_store.write("base_state.json", "by a, late"))
    with pytest.raises(LeaseLost):
        await in_thread(lambda: a_store.write("events/event-00000-x.json", "{}"))
    with pytest.raises(LeaseLost):
        await in_thread(lambda: a_store.delete("base_state.json"))
    assert stored() == before
    assert await in_thread(lambda: a_store.read("base_state.json")) == "by a"  # reads go on

    await in_thread(lambda: b_store.write("base_state.json", "by b"))
    assert stored() == [("base_state.json", b"by b")]


async def test_the_sdk_of_an_instance_that_lost_its_lease_writes_nothing(
    database: Database, tmp_path: Path, postgres_url: str
) -> None:
    """A's LocalConversation keeps running after B took the conversation over (a paused VM
    that wakes up): its next message fails with LeaseLost and no row changes."""
    conversation_id = uuid.uuid4()
    a_lease = await LeaseStore(database, "instance-a", ttl=0).claim(conversation_id)
    assert a_lease is not None
    a_store = await file_store(database, a_lease)

    def snapshot() -> list[tuple[str, bytes]]:
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(
                "SELECT path, content FROM sdk_files WHERE conversation_id = %s ORDER BY path",
                (conversation_id,),
            ).fetchall()
        return [(path, bytes(content)) for path, content in rows]

    def open_on_a() -> Any:
        from openhands.sdk import Agent, LocalConversation
        from openhands.sdk.testing import TestLLM

        conversation = LocalConversation(
            agent=Agent(llm=TestLLM.from_messages([]), tools=[]),
            workspace=str(tmp_path / "work"),
            file_store=a_store,
            conversation_id=conversation_id,
            visualizer=None,
            delete_on_close=False,
        )
        conversation.send_message("before the takeover")
        return conversation

    conversation = await in_thread(open_on_a)
    assert await LeaseStore(database, "instance-b").claim(conversation_id) is not None
    before = await in_thread(snapshot)
    assert any(path.startswith("events/event-") for path, _ in before)

    try:
        with pytest.raises(LeaseLost):
            await in_thread(lambda: conversation.send_message("after the takeover"))
        assert await in_thread(snapshot) == before
    finally:
        await in_thread(conversation.close)  # nothing to write: it closes
    assert await in_thread(snapshot) == before
