"""The group-commit store of the SDK's files: the SDK's names (its events packed in one
file), and syncs shared by threads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from openhands.sdk import LLM, Agent, LocalConversation, Message, TextContent
from openhands.sdk.event import MessageEvent
from openhands.sdk.io import LocalFileStore
from pydantic import SecretStr

from trio_openhands.stores.event_pack import PACK_NAME
from trio_openhands.stores.group_commit import GroupCommitFileStore


def test_the_sdks_names_read_back_with_events_in_one_pack(tmp_path: Path) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/event-00000.json", '{"a": 1}')
    store.write("base_state.json", "{}")
    store.write("base_state.json", '{"b": 2}')  # replaced in place
    store.delete("events/event-00000.json")
    store.write("events/event-00001.json", "é")
    assert store.unsynced_writes == 5
    store.sync()
    assert store.unsynced_writes == 0

    assert LocalFileStore(str(tmp_path)).read("base_state.json") == '{"b": 2}'
    assert (tmp_path / "base_state.json").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "events").iterdir()] == [PACK_NAME]
    assert (tmp_path / "events" / PACK_NAME).stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.rglob("*.tmp")], "no temporary file is left behind"
    for each in (store, GroupCommitFileStore(str(tmp_path))):  # this store, and a new one
        assert each.list("events") == ["events/event-00001.json"]
        assert each.read("events/event-00001.json") == "é"
        assert each.exists("events/event-00001.json")
        assert not each.exists("events/event-00000.json")
        with pytest.raises(FileNotFoundError):
            each.read("events/event-00000.json")


def test_writes_skip_what_would_not_change_and_survive_a_directory_removed_behind_them(
    tmp_path: Path,
) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("base_state.json", '{"a": 1}')
    store.write("events/.other-1", "")  # an empty file (not the SDK's marker), made in place
    store.sync()
    before = (tmp_path / "base_state.json").stat().st_mtime_ns, store.unsynced_writes
    store.write("base_state.json", '{"a": 1}')  # what the file holds already: no write
    assert ((tmp_path / "base_state.json").stat().st_mtime_ns, store.unsynced_writes) == before
    store.write("base_state.json", '{"a": 2}')
    assert LocalFileStore(str(tmp_path)).read("base_state.json") == '{"a": 2}'

    shutil.rmtree(tmp_path / "events")  # removed by someone else: made again
    store.write("notes/one.json", "{}")
    shutil.rmtree(tmp_path / "notes")
    store.write("notes/two.json", "{}")
    store.delete("events/.other-1")  # gone already: no error
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["two.json"]
    store.write("events/event-00000.json", "{}")
    store.delete("events")  # a whole directory, as the SDK's store deletes one
    assert not (tmp_path / "events").exists()
    assert store.list("events") == []
    store.write("events/event-00001.json", "{}")  # and made again for the next file
    store.sync()
    assert store.unsynced_writes == 0
    assert GroupCommitFileStore(str(tmp_path)).list("events") == ["events/event-00001.json"]
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_the_events_length_marker_lives_in_memory_and_an_old_one_on_disk_goes(
    tmp_path: Path,
) -> None:
    """The SDK moves its marker at every event: no file made or removed for it, but one an
    earlier version left is deleted when the SDK first moves it."""
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / ".eventlog-len-1.marker").write_text("")  # an earlier version's
    store = GroupCommitFileStore(str(tmp_path))
    assert not store.exists("events/.eventlog-len-1.marker")  # not to be trusted: a rescan
    assert store.list("events") == []
    store.delete("events/.eventlog-len-1.marker")
    assert list((tmp_path / "events").iterdir()) == []
    store.write("events/.eventlog-len-2.marker", "")
    assert store.exists("events/.eventlog-len-2.marker")
    assert store.read("events/.eventlog-len-2.marker") == ""
    assert store.list("events") == ["events/.eventlog-len-2.marker"]
    store.delete("events/.eventlog-len-2.marker")
    assert not store.exists("events/.eventlog-len-2.marker")
    with pytest.raises(FileNotFoundError):
        store.read("events/.eventlog-len-2.marker")
    store.sync()
    assert list((tmp_path / "events").iterdir()) == []


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
            store.write(f"state/{index}-{number}.json", f"{index} {number}")
            store.sync()
        leftovers.append(store.unsynced_writes)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.unsynced_writes == 0
    assert len(leftovers) == 8
    assert len(list((tmp_path / "state").iterdir())) == 8 * 40
    reread = GroupCommitFileStore(str(tmp_path))
    names = reread.list("events")
    assert len(names) == 8 * 40
    assert all(reread.read(name) == name[7:-5].replace("-", " ") for name in names)


def test_a_failed_sync_keeps_its_files_for_the_next(tmp_path: Path) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("state/one.json", "1")
    (tmp_path / "state" / "one.json").unlink()  # gone before the sync: nothing to fsync
    store.sync()
    assert store.unsynced_writes == 0


def test_a_torn_record_at_the_packs_end_is_cut_off_and_the_next_goes_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a machine that lost power may leave: a short last record, or a wrong checksum."""
    store = GroupCommitFileStore(str(tmp_path))
    for number in range(3):
        store.write(f"events/event-{number:05d}-a.json", f'{{"n": {number}}}')
    store.close()
    pack = tmp_path / "events" / PACK_NAME
    whole = pack.read_bytes()
    pack.write_bytes(whole[:-3])  # the third record cut short
    reread = GroupCommitFileStore(str(tmp_path))
    assert reread.list("events") == ["events/event-00000-a.json", "events/event-00001-a.json"]
    assert "torn bytes at its end cut off" in caplog.text
    reread.write("events/event-00002-b.json", '{"n": "again"}')
    reread.close()
    third = GroupCommitFileStore(str(tmp_path))
    assert third.read("events/event-00002-b.json") == '{"n": "again"}'
    assert third.read("events/event-00001-a.json") == '{"n": 1}'

    flipped = bytearray(pack.read_bytes())
    flipped[-3] ^= 0x01  # the last record's data, its checksum now wrong
    pack.write_bytes(bytes(flipped))
    assert GroupCommitFileStore(str(tmp_path)).list("events") == [
        "events/event-00000-a.json",
        "events/event-00001-a.json",
    ]


def test_event_files_written_before_packing_are_read_beside_the_pack(tmp_path: Path) -> None:
    """An earlier version's folder, or the SDK's own (a fork): nothing to migrate."""
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "event-00000-a.json").write_text('{"old": 0}')
    (tmp_path / "events" / "event-00001-b.json").write_text('{"old": 1}')
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/event-00002-c.json", '{"new": 2}')
    store.write("events/event-00001-b.json", '{"new": 1}')  # rewritten: the pack's wins
    assert sorted(store.list("events")) == [
        "events/event-00000-a.json",
        "events/event-00001-b.json",
        "events/event-00002-c.json",
    ]
    reread = GroupCommitFileStore(str(tmp_path))
    assert [reread.read(f"events/event-0000{n}-{c}.json") for n, c in enumerate("abc")] == [
        '{"old": 0}',
        '{"new": 1}',
        '{"new": 2}',
    ]
    reread.delete("events/event-00000-a.json")
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        PACK_NAME,
        "event-00001-b.json",
    ]
    reread.delete("events/event-00001-b.json")  # in the pack and on disk: gone from both
    assert GroupCommitFileStore(str(tmp_path)).list("events") == ["events/event-00002-c.json"]


def test_a_closed_store_opens_its_pack_again_when_next_used(tmp_path: Path) -> None:
    store = GroupCommitFileStore(str(tmp_path))
    store.write("events/event-00000-a.json", "0")
    store.close()
    store.close()  # twice is no error
    store.write("events/event-00001-a.json", "1")
    store.close()
    assert GroupCommitFileStore(str(tmp_path)).list("events") == [
        "events/event-00000-a.json",
        "events/event-00001-a.json",
    ]


def sdk_conversation(
    tmp_path: Path, conversation_id: uuid.UUID, file_store: GroupCommitFileStore | None
) -> LocalConversation:
    """The SDK's own conversation in `tmp_path/<id>`, persisted through `file_store` (None:
    the SDK's LocalFileStore), with an LLM it never calls."""
    llm = LLM(model="openai/none", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("x"))
    return LocalConversation(
        agent=Agent(llm=llm, tools=[]),
        workspace=str(tmp_path / "work"),
        persistence_dir=str(tmp_path),
        file_store=file_store,
        conversation_id=conversation_id,
        visualizer=None,
        delete_on_close=False,
    )


def test_the_sdk_persists_and_reloads_a_conversation_through_it(tmp_path: Path) -> None:
    """What the SDK writes through this store, it loads again through a new one."""
    conversation_id = uuid.uuid4()
    folder = tmp_path / conversation_id.hex
    store = GroupCommitFileStore(str(folder))
    conversation = sdk_conversation(tmp_path, conversation_id, store)
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

    store.close()
    reloaded = sdk_conversation(tmp_path, conversation_id, GroupCommitFileStore(str(folder)))
    try:
        assert [event.id for event in reloaded.state.events] == written
        assert len(written) >= 3
    finally:
        reloaded.close()


def test_the_sdk_goes_on_through_it_with_a_conversation_its_own_store_wrote(
    tmp_path: Path,
) -> None:
    """A conversation from before packing (the SDK's layout, a file per event): its events
    stay files, the new ones go to the pack, and all of them load in order."""
    conversation_id = uuid.uuid4()
    folder = tmp_path / conversation_id.hex
    written: list[str] = []
    for file_store in (None, GroupCommitFileStore(str(folder))):  # the SDK's own, then ours
        conversation = sdk_conversation(tmp_path, conversation_id, file_store)
        conversation.send_message(Message(role="user", content=[TextContent(text="hi")]))
        assert [event.id for event in conversation.state.events][: len(written)] == written
        written = [event.id for event in conversation.state.events]
        conversation.close()
        if file_store is not None:
            file_store.sync()
            file_store.close()
    files = {p.name for p in (folder / "events").iterdir()}
    assert PACK_NAME in files
    assert sum(name.startswith("event-") for name in files) >= 1
    reloaded = sdk_conversation(tmp_path, conversation_id, GroupCommitFileStore(str(folder)))
    try:
        assert [event.id for event in reloaded.state.events] == written
        texts = [
            content.text
            for event in reloaded.state.events
            if isinstance(event, MessageEvent)
            for content in event.llm_message.content
            if isinstance(content, TextContent)
        ]
        assert texts == ["hi", "hi"]
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
