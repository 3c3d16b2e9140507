"""The group-commit store of the SDK's files: the SDK's layout, and syncs shared by threads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from openhands.sdk import LLM, Agent, LocalConversation, Message, TextContent
from openhands.sdk.io import LocalFileStore
from pydantic import SecretStr

from trio_openhands.stores.group_commit import GroupCommitFileStore


def test_files_are_the_sdk_stores_files(tmp_path: Path) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/event-00000.json", '{"a": 1}')
    store.write("base_state.json", "{}")
    store.write("base_state.json", '{"b": 2}')  # replaced in place
    store.delete("events/event-00000.json")
    store.write("events/event-00001.json", "é")
    assert store.unsynced_writes == 5
    store.sync()
    assert store.unsynced_writes == 0

    plain = LocalFileStore(str(tmp_path))
    assert plain.read("base_state.json") == '{"b": 2}'
    assert plain.list("events") == ["events/event-00001.json"]
    assert plain.read("events/event-00001.json") == "é"
    assert (tmp_path / "base_state.json").stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.rglob("*.tmp")], "no temporary file is left behind"


def test_writes_skip_what_would_not_change_and_survive_a_directory_removed_behind_them(
    tmp_path: Path,
) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("base_state.json", '{"a": 1}')
    store.write("events/.marker-1", "")  # an empty file, made in place
    store.sync()
    before = (tmp_path / "base_state.json").stat().st_mtime_ns, store.unsynced_writes
    store.write("base_state.json", '{"a": 1}')  # what the file holds already: no write
    assert ((tmp_path / "base_state.json").stat().st_mtime_ns, store.unsynced_writes) == before
    store.write("base_state.json", '{"a": 2}')
    assert LocalFileStore(str(tmp_path)).read("base_state.json") == '{"a": 2}'

    shutil.rmtree(tmp_path / "events")  # removed by someone else: made again
    store.write("events/event-00000.json", "{}")
    store.delete("events/.marker-1")  # gone already: no error
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == ["event-00000.json"]
    store.delete("events")  # a whole directory, as the SDK's store deletes one
    assert not (tmp_path / "events").exists()
    store.write("events/event-00001.json", "{}")  # and made again for the next file
    store.sync()
    assert store.unsynced_writes == 0
    assert [p.name for p in (tmp_path / "events").iterdir()] == ["event-00001.json"]
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_an_empty_file_deleted_becomes_the_next_empty_file_made_beside_it(
    tmp_path: Path,
) -> None:
    """The SDK's events length marker moves at every event: one rename, no inode churn."""
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/.len-1.marker", "")
    inode = (tmp_path / "events" / ".len-1.marker").stat().st_ino
    store.delete("events/.len-1.marker")
    assert not store.exists("events/.len-1.marker")  # gone for the store's readers
    assert store.list("events") == []
    with pytest.raises(FileNotFoundError):
        store.read("events/.len-1.marker")
    store.delete("events/.len-1.marker")  # deleting it again is no error
    store.write("events/.len-2.marker", "")
    assert [p.name for p in (tmp_path / "events").iterdir()] == [".len-2.marker"]
    assert (tmp_path / "events" / ".len-2.marker").stat().st_ino == inode
    assert store.exists("events/.len-2.marker")

    store.delete("events/.len-2.marker")  # and nothing made after it: the sync deletes it
    store.sync()
    assert list((tmp_path / "events").iterdir()) == []
    store.write("events/.len-3.marker", "")  # made anew
    assert store.read("events/.len-3.marker") == ""
    store.delete("events/.len-3.marker")
    store.write("events/.len-3.marker", "x")  # a parked name written again is back
    assert store.read("events/.len-3.marker") == "x"
    store.sync()  # which the sync leaves alone
    assert [p.read_text() for p in (tmp_path / "events").iterdir()] == ["x"]


def test_concurrent_writers_share_syncs_and_each_returns_once_its_writes_are_covered(
    tmp_path: Path,
) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    start = threading.Barrier(8)
    leftovers: list[int] = []

    def writer(index: int) -> None:
        start.wait()
        for number in range(40):
            store.write(f"events/{index}-{number}.json", f"{index} {number}")
            store.sync()
        leftovers.append(store.unsynced_writes)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.unsynced_writes == 0
    assert len(leftovers) == 8
    assert len(list((tmp_path / "events").iterdir())) == 8 * 40


def test_a_failed_sync_keeps_its_files_for_the_next(tmp_path: Path) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/one.json", "1")
    (tmp_path / "events" / "one.json").unlink()  # gone before the sync: nothing to fsync
    store.sync()
    assert store.unsynced_writes == 0


def test_the_sdk_persists_and_reloads_a_conversation_through_it(tmp_path: Path) -> None:
    """What the SDK writes through this store, the SDK's own store reads back."""
    conversation_id = uuid.uuid4()
    folder = tmp_path / conversation_id.hex
    llm = LLM(model="openai/none", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("x"))
    store = GroupCommitFileStore(str(folder))
    conversation = LocalConversation(
        agent=Agent(llm=llm, tools=[]),
        workspace=str(tmp_path / "work"),
        persistence_dir=str(tmp_path),
        file_store=store,
        conversation_id=conversation_id,
        visualizer=None,
        delete_on_close=False,
    )
    with store.deferred():
        assert store.deferring
        for number in range(3):
            conversation.send_message(
                Message(role="user", content=[TextContent(text=f"m{number}")])
            )
    assert not store.deferring
    store.sync()
    assert store.unsynced_writes == 0
    written = [event.id for event in conversation.state.events]
    conversation.close()

    reloaded = LocalConversation(
        agent=Agent(llm=llm, tools=[]),
        workspace=str(tmp_path / "work"),
        persistence_dir=str(tmp_path),  # the SDK's LocalFileStore
        conversation_id=conversation_id,
        visualizer=None,
        delete_on_close=False,
    )
    try:
        assert [event.id for event in reloaded.state.events] == written
        assert len(written) >= 3
    finally:
        reloaded.close()


def test_its_lock_excludes_the_sdks_own_lock_in_another_process_and_other_threads(
    tmp_path: Path,
) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    lock_file = tmp_path / "events" / ".lock"
    lock_file.parent.mkdir()
    holder = subprocess.Popen(  # filelock's FileLock, as the SDK's LocalFileStore.lock takes it
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock\n"
            f"with FileLock({str(lock_file)!r}):\n"
            "    print('held', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"events/\.lock"), store.lock("events/.lock", 0.05):
            pass
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    finally:
        holder.kill()
    # Free now; and while this thread holds it, another thread's attempt times out.
    with store.lock("events/.lock", timeout=5):
        attempts: list[BaseException | None] = []

        def attempt() -> None:
            try:
                with store.lock("events/.lock", timeout=0.05):
                    attempts.append(None)
            except TimeoutError as error:
                attempts.append(error)

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join()
    assert isinstance(attempts[0], TimeoutError)
    with store.lock("events/.lock", timeout=0.05):  # and free again once let go
        pass


def test_paths_resolve_as_the_sdks_store_resolves_them(tmp_path: Path) -> None:
    ours, sdks = GroupCommitFileStore(str(tmp_path)), LocalFileStore(str(tmp_path))
    paths = [
        "base_state.json",
        "events/event-00001-abc.json",
        "events/.eventlog-len-2.marker",
        "/events/x.json",
        "events//x.json",
        "events/./x.json",
        "events/sub/../x.json",
        "events\\x.json",
        "events/",
        ".",
        "a..b/c...json",
    ]
    for path in paths:
        assert ours.get_full_path(path) == sdks.get_full_path(path), path
    for escaping in ("../outside.json", "events/../../outside.json", "..\\outside.json"):
        with pytest.raises(ValueError, match="escapes"):
            ours.get_full_path(escaping)
