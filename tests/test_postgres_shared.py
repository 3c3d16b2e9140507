"""Two instances over one database, each serving what the other made: a socket on the
instance that does not own the conversation, the profiles, a fork."""

from __future__ import annotations

import json
import os
import tracemalloc
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from trio_websocket import open_websocket_url

from tests.conftest import llm_settings, test_settings, wait_status
from tests.test_conversations import events_of, message, start
from tests.test_postgres_server import two_instances
from tests.test_workspace_files import start_api_conversation
from trio_openhands.core.conversation_record import ConversationRecord
from trio_openhands.core.models import StartConversationRequest
from trio_openhands.core.sdk_loader import SdkLoader
from trio_openhands.core.seed_create import create_seed_conversation
from trio_openhands.core.supervisor import Supervisor
from trio_openhands.testing.fake_llm import FakeLLM, text

if TYPE_CHECKING:
    from pathlib import Path

    from trio_websocket import WebSocketConnection

KEY = "sk-plain-SHARED-profile-key"
BAD_FRAMES: tuple[Any, ...] = (
    {"role": "user", "content": []},  # does not validate
    "not json",  # does not parse
    {"role": "user", "content": [{"type": "text", "text": "hi"}], "run": "maybe"},
)


async def answers_to_bad_frames(socket: WebSocketConnection) -> list[dict[str, Any]]:
    """Each bad frame sent after an `auth` frame: the answers, without their own id and
    time. The auth frames get none, so each answer is its bad frame's. The owner's
    `full_state` snapshots (a run's last one may come after GET said `finished`) are
    passed over: only the owner sends them."""
    answers = []
    for frame in BAD_FRAMES:
        await socket.send_message(json.dumps({"type": "auth", "session_api_key": "any"}))
        await socket.send_message(frame if isinstance(frame, str) else json.dumps(frame))
        answer = json.loads(await socket.get_message())
        while answer.get("key") == "full_state":
            answer = json.loads(await socket.get_message())
        answers.append({k: v for k, v in answer.items() if k not in ("id", "timestamp")})
    return answers


async def test_a_socket_on_a_non_owner_answers_as_the_owners_socket_does(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        tag = fake_llm.script("answered", [text("done")])
        cid = (await start(a, fake_llm, f"hello {tag}", title="no autotitle"))["id"]
        await wait_status(a, cid, "finished")
        with trio.fail_after(30):
            async with (
                open_websocket_url(a.ws_url(f"/sockets/events/{cid}")) as api_on_a,
                open_websocket_url(b.ws_url(f"/sockets/events/{cid}")) as api_on_b,
                open_websocket_url(a.ws_url(f"/conversations/{cid}/events/socket")) as seed_on_a,
                open_websocket_url(b.ws_url(f"/conversations/{cid}/events/socket")) as seed_on_b,
            ):
                owner_answers = await answers_to_bad_frames(api_on_a)
                assert [answer["kind"] for answer in owner_answers] == ["ServerErrorEvent"] * 3
                assert await answers_to_bad_frames(api_on_b) == owner_answers
                # The seed dialect keeps its own error frame, on either instance.
                bad = json.dumps(BAD_FRAMES[0])
                await seed_on_a.send_message(bad)
                await seed_on_b.send_message(bad)
                seed_answer = json.loads(await seed_on_a.get_message())
                assert (seed_answer["type"], seed_answer["code"]) == ("error", 422)
                assert json.loads(await seed_on_b.get_message()) == seed_answer


async def test_concurrent_lookups_of_a_conversation_new_to_this_instance_all_find_it(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str
) -> None:
    """Both lookups miss this instance's catalog and read the store; the one that reads
    second used to answer "not found" (a 404 on a socket opened beside another)."""
    supervisors: list[Supervisor] = []
    for name in ("a", "b"):
        settings = test_settings(tmp_path / name, database_url=postgres_url, lease_seconds=3.0)
        supervisors.append(await nursery.start(Supervisor(settings, SdkLoader()).run))
    a, b = supervisors
    request = StartConversationRequest.model_validate({"llm": {"model": "openai/fake"}})
    conversation_id = (await create_seed_conversation(a, request)).id
    found: list[ConversationRecord | None] = []

    async def look_up() -> None:
        found.append(await b.records.find(conversation_id))

    async with trio.open_nursery() as lookups:
        for _ in range(3):
            lookups.start_soon(look_up)
    assert len(found) == 3
    assert all(record is not None and record.id == conversation_id for record in found)


async def test_profiles_saved_on_one_instance_are_used_on_another(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        profile_llm = llm_settings(fake_llm, model="openai/fake-shared", api_key=KEY)
        saved = await a.client.post("/api/profiles/shared", json={"llm": profile_llm})
        assert saved.status_code == 201, saved.text
        agent = {"agent_kind": "openhands", "llm_profile_ref": "shared"}
        saved = await a.client.post("/api/agent-profiles/coder", json=agent)
        assert saved.status_code == 201, saved.text
        # B lists and loads them, the key decrypted with the shared secret.
        listed = (await b.client.get("/api/profiles")).json()["profiles"]
        assert [(p["name"], p["model"], p["api_key_set"]) for p in listed] == [
            ("shared", "openai/fake-shared", True)
        ]
        plain = {"X-Expose-Secrets": "plaintext"}
        shown = (await b.client.get("/api/profiles/shared", headers=plain)).json()
        assert shown["config"]["api_key"] == KEY
        coder = (await b.client.get("/api/agent-profiles/coder")).json()["profile"]
        assert coder["llm_profile_ref"] == "shared"
        agents = (await b.client.get("/api/agent-profiles")).json()
        assert {p["name"] for p in agents["profiles"]} == {"coder", "default"}  # seeded once
        assert (await a.client.get("/api/agent-profiles")).json() == agents
        # The SDK's reference check sees A's agent profile from B.
        referenced = await b.client.delete("/api/profiles/shared")
        assert referenced.status_code == 409, referenced.text
        activated = await b.client.post(f"/api/agent-profiles/{coder['id']}/activate")
        assert activated.status_code == 200, activated.text
        settings = (await a.client.get("/api/settings")).json()
        assert settings["active_agent_profile_id"] == coder["id"]
        # A meta-profile saved on B is A's to show; activated on A, B's settings have it.
        router = {"classifier_model": "shared", "classes": [{"description": "*", "model": "x"}]}
        saved = await b.client.post("/api/meta-profiles/router", json=router)
        assert saved.status_code == 201, saved.text
        shown = (await a.client.get("/api/meta-profiles/router")).json()
        assert shown["config"]["classifier_model"] == "shared"
        assert (await a.client.post("/api/meta-profiles/router/activate")).json()["applied"]
        settings = (await b.client.get("/api/settings")).json()
        assert settings["active_meta_profile"] == "router"
        # B renames, A follows; the key is nowhere in the database in plain text.
        renamed = await b.client.post("/api/profiles/shared/rename", json={"new_name": "common"})
        assert renamed.status_code == 200, renamed.text
        coder = (await a.client.get("/api/agent-profiles/coder")).json()["profile"]
        assert coder["llm_profile_ref"] == "common"
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(
                "SELECT name, content FROM blobs WHERE starts_with(name, 'profiles/')"
            ).fetchall()
        assert "profiles/llm/common.json" in {name for name, _ in rows}
        assert not any(KEY.encode() in bytes(content) for _, content in rows)

        # A conversation on B switches to the profile saved on A and runs with its LLM.
        cid = (await start(b, fake_llm, None, title="switched"))["id"]
        base = f"/api/conversations/{cid}/switch_profile"
        switched = await b.client.post(base, json={"profile_name": "common"})
        assert switched.status_code == 200, switched.text
        tag = fake_llm.script("profiled", [text("from the shared profile")])
        sent = await b.client.post(f"/conversations/{cid}/events", json=message(f"go {tag}"))
        assert sent.status_code == 200, sent.text
        request = await fake_llm.wait_for_request(script="profiled", step=0)
        assert request.model == "fake-shared"
        await wait_status(b, cid, "finished")

        # A launches the agent profile whose LLM profile B renamed: it reads the new name.
        tag = fake_llm.script("launched", [text("launched from the shared profile")])
        launch = {
            "agent_profile_id": coder["id"],
            "workspace": {"working_dir": str(a.settings.workspace_dir)},
            "initial_message": message(f"go {tag}"),
            "autotitle": False,
        }
        created = await a.client.post("/api/conversations", json=launch)
        assert created.status_code == 201, created.text
        assert created.json()["launched_agent_profile"]["agent_profile_id"] == coder["id"]
        request = await fake_llm.wait_for_request(script="launched", step=0)
        assert request.model == "fake-shared"
        await wait_status(a, created.json()["id"], "finished")


async def test_a_fork_lives_in_the_database_and_goes_on_without_its_maker(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        tag = fake_llm.script("source", [text("remember 42")])
        cid = (await start(a, fake_llm, f"hello {tag}", title="source"))["id"]
        await wait_status(a, cid, "finished")
        # Asked on B, made by A (the source's owner), which claims the fork like any.
        forked = await b.client.post(f"/api/conversations/{cid}/fork", json={"title": "fork"})
        assert forked.status_code == 201, forked.text
        fork_id = forked.json()["id"]
        assert not (a.settings.conversations_dir / uuid.UUID(fork_id).hex).exists()
        source_events = await events_of(a, cid)
        copied = await events_of(b, fork_id)  # from the database, on B
        assert copied == await events_of(a, fork_id)
        assert [e["id"] for e in copied[: len(source_events)]] == [e["id"] for e in source_events]
        assert copied[-1]["value"] == "idle"  # the fork's own status, logged last
        await a.aclose()  # its maker gone: B loads the fork from the database
        fake_llm.script("source", [text("still 42")])
        sent = await b.client.post(f"/conversations/{fork_id}/events", json=message(tag))
        assert sent.status_code == 200, sent.text
        finished = await wait_status(b, fork_id, "finished")
        assert finished["title"] == "fork"
        # The fork's request carries the source's history: the agent remembers it.
        await fake_llm.wait_for_request(
            predicate=lambda request: "remember 42" in str(request.messages)
        )
        after = await events_of(b, fork_id)
        assert after[: len(copied)] == copied
        assert any("still 42" in json.dumps(e) for e in after[len(copied) :])


async def test_big_files_stream_through_a_non_owner(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    """A conversation's file routes asked of B go to its owner A; the bodies stream through
    B both ways (B holds a few chunks at a time, not the file), and arrive whole."""
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        root = tmp_path / "work"
        conversation_id = await start_api_conversation(a, fake_llm, root)
        scoped = f"/api/conversations/{conversation_id}/file"
        content = os.urandom(24 * 1024 * 1024)  # beyond one request's 16 MiB limit for JSON

        uploaded = await b.client.post(
            f"{scoped}/upload", params={"path": "big.bin"}, files={"file": content}
        )
        assert uploaded.json() == {"success": True, "file_size": len(content)}, uploaded.text
        assert (root / "big.bin").read_bytes() == content

        tracemalloc.start()
        try:
            received = bytearray()
            async with b.client.stream(
                "GET", f"{scoped}/download", params={"path": "big.bin"}
            ) as got:
                assert got.status_code == 200
                assert got.headers["content-length"] == str(len(content))
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                async for chunk in got.aiter_raw():
                    received += chunk
            peak = tracemalloc.get_traced_memory()[1] - base - len(received)
        finally:
            tracemalloc.stop()
        assert bytes(received) == content
        assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held while forwarding 24 MiB"
