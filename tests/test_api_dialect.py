"""The `/api` dialect's REST shapes and its socket, driven with httpx and a raw websocket
client on the live server; where we differ from the reference on purpose, the test says so.

The raw socket client is `websockets`' synchronous one (the library the SDK client uses),
run in worker threads; each call has its own timeout.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, llm_settings, start_server, test_settings
from tests.test_sockets import RawSocket
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

KEY = "dialect-key"
REDACTED = "**********"


def agent(fake_llm: FakeLLM, *tools: str) -> dict[str, Any]:
    return {
        "kind": "Agent",
        "llm": {**llm_settings(fake_llm), "usage_id": "agent"},
        "tools": [{"name": name, "params": {}} for name in tools],
    }


def message(text_: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text_}], **extra}


async def create(
    server: LiveServer, fake_llm: FakeLLM, *tools: str, status: int = 201, **body: Any
) -> dict[str, Any]:
    request = {
        "agent": agent(fake_llm, *tools),
        "workspace": {"working_dir": str(server.settings.workspace_dir), "kind": "LocalWorkspace"},
        **body,
    }
    response = await server.client.post("/api/conversations", json=request)
    assert response.status_code == status, response.text
    return response.json()


async def events_of(server: LiveServer, conversation_id: str) -> list[dict[str, Any]]:
    response = await server.client.get(f"/api/conversations/{conversation_id}/events/search")
    assert response.status_code == 200, response.text
    return response.json()["items"]


# -- a raw socket client -------------------------------------------------------------------


async def open_socket(server: LiveServer, path: str, **headers: str) -> ClientConnection:
    url = server.ws_url(path)
    return await trio.to_thread.run_sync(
        partial(connect, url, additional_headers=headers, proxy=None, open_timeout=10)
    )


async def receive(socket: ClientConnection) -> dict[str, Any]:
    raw = await trio.to_thread.run_sync(partial(socket.recv, timeout=10))
    return json.loads(raw)


async def send(socket: ClientConnection, frame: dict[str, Any]) -> None:
    await trio.to_thread.run_sync(socket.send, json.dumps(frame))


async def close_code(socket: ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    while True:
        try:
            await trio.to_thread.run_sync(partial(socket.recv, timeout=10))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def close(socket: ClientConnection) -> None:
    await trio.to_thread.run_sync(socket.close)


def is_full_state(frame: dict[str, Any], *statuses: str) -> bool:
    return (
        frame.get("kind") == "ConversationStateUpdateEvent"
        and frame.get("key") == "full_state"
        and (not statuses or frame["value"]["execution_status"] in statuses)
    )


async def frames_until_run_ends(socket: ClientConnection, *statuses: str) -> list[dict[str, Any]]:
    """Frames up to and including the full_state snapshot that ends a run."""
    frames: list[dict[str, Any]] = []
    while not frames or not is_full_state(frames[-1], *statuses):
        frames.append(await receive(socket))
    return frames


@pytest.fixture
async def keyed_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[LiveServer]:
    live = await start_server(nursery, test_settings(tmp_path, session_api_keys=(KEY,)))
    try:
        yield live
    finally:
        await live.aclose()


# -- conversations -------------------------------------------------------------------------


async def test_create_is_idempotent_on_its_id_and_shares_the_seed_catalog(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    info = await create(server, fake_llm, "terminal")
    assert info["agent"]["llm"]["api_key"] == REDACTED
    assert "test-key" not in json.dumps(info)
    assert info["agent"]["tools"] == [
        {"name": "terminal", "params": {"terminal_type": "subprocess"}}
    ]
    assert info["execution_status"] == "idle"
    assert info["confirmation_policy"]["kind"] == "NeverConfirm"
    assert info["max_iterations"] == 500
    assert info["client_tools"] == []
    # The server's module for the tool it resolved by name, for clients attaching later.
    assert info["tool_module_qualnames"] == {"terminal": "openhands.tools.terminal.definition"}
    assert info["runtime_info"] == {
        "runtime_status": "available",
        "can_resume": True,
        "runtime_error": None,
    }
    # The reference's ACP model picker and profile provenance: none for a native agent.
    assert info["current_model_id"] is None
    assert info["available_models"] == []
    assert info["supports_runtime_model_switch"] is False
    assert info["launched_agent_profile"] is None
    assert info["workspace"]["working_dir"] == str(server.settings.workspace_dir)
    assert info["created_at"].endswith("Z")
    assert info["title"] is None
    assert info["tags"] == {}
    for field in ("stats", "secret_registry", "persistence_dir", "security_analyzer"):
        assert field in info

    wanted = str(uuid.uuid4())
    first = await create(server, fake_llm, conversation_id=wanted, max_iterations=7)
    again = await create(server, fake_llm, status=200, conversation_id=wanted, max_iterations=9)
    assert first["id"] == again["id"] == wanted
    assert again["max_iterations"] == 7  # the existing conversation, unchanged

    got = await server.client.get(f"/api/conversations/{wanted}")
    assert got.status_code == 200
    assert got.json()["max_iterations"] == 7
    assert (await server.client.get(f"/api/conversations/{uuid.uuid4()}")).status_code == 404
    malformed = await server.client.get("/api/conversations/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["path", "conversation_id"]

    # One catalog for both dialects.
    seed_view = (await server.client.get(f"/conversations/{info['id']}")).json()
    assert seed_view["status"] == "idle"
    assert seed_view["llm"]["api_key"] == REDACTED
    seed = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    api_view = (await server.client.get(f"/api/conversations/{seed.json()['id']}")).json()
    assert api_view["agent"]["llm"]["model"] == "openai/fake"
    assert api_view["agent"]["llm"]["api_key"] == REDACTED
    count = await server.client.get("/api/conversations/count")
    assert count.json() == 3


async def test_create_rejects_what_it_cannot_serve(server: LiveServer, fake_llm: FakeLLM) -> None:
    workspace = {"working_dir": str(server.settings.workspace_dir)}
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"agent": agent(fake_llm)}, ["body", "workspace"]),
        ({"workspace": workspace}, ["body", "agent"]),
        ({"agent": agent(fake_llm, "no_such_tool"), "workspace": workspace},
         ["body", "agent", "tools", 0, "name"]),
        ({"agent": agent(fake_llm), "workspace": workspace, "plugins": [{"source": "x"}]},
         ["body", "plugins"]),
        ({"agent": agent(fake_llm), "workspace": workspace, "confirmation_policy": {"kind": "No"}},
         ["body", "confirmation_policy"]),
        ({"agent": agent(fake_llm), "workspace": workspace, "tags": {"Bad Key": "x"}},
         ["body", "tags"]),
        ({"agent": {**agent(fake_llm), "kind": "ACPAgent"}, "workspace": workspace},
         ["body", "agent", "kind"]),
    ]  # fmt: skip
    for body, loc in cases:
        response = await server.client.post("/api/conversations", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"][: len(loc)] == loc, response.text
    assert (await server.client.get("/api/conversations/count")).json() == 0


async def test_patch_persists_and_listing_pages_without_loading(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    settings = test_settings(tmp_path)
    server = await start_server(nursery, settings)
    ids = [(await create(server, fake_llm))["id"] for _ in range(3)]
    patched = await server.client.patch(
        f"/api/conversations/{ids[0]}", json={"title": "  First one  ", "tags": {"team": "a1"}}
    )
    assert patched.status_code == 200
    assert patched.json()["success"] is True
    for bad in ({"title": "   "}, {"title": ""}, {"tags": {"Not-Ok": "x"}}, {"other": 1}):
        response = await server.client.patch(f"/api/conversations/{ids[0]}", json=bad)
        assert response.status_code == 422, bad
    missing = await server.client.patch(f"/api/conversations/{uuid.uuid4()}", json={"title": "x"})
    assert missing.status_code == 404
    await server.aclose()

    server = await start_server(nursery, settings)  # a restart: nothing is loaded
    info = (await server.client.get(f"/api/conversations/{ids[0]}")).json()
    assert (info["title"], info["tags"]) == ("First one", {"team": "a1"})
    assert info["agent"]["llm"]["api_key"] == REDACTED

    oldest_first = await server.client.get(
        "/api/conversations/search", params={"limit": 2, "sort_order": "CREATED_AT"}
    )
    page = oldest_first.json()
    assert [item["id"] for item in page["items"]] == ids[:2]
    assert page["next_page_id"] == ids[2].replace("-", "")
    rest = await server.client.get(
        "/api/conversations/search",
        params={"limit": 2, "sort_order": "CREATED_AT", "page_id": page["next_page_id"]},
    )
    assert [item["id"] for item in rest.json()["items"]] == ids[2:]
    assert rest.json()["next_page_id"] is None
    newest_first = await server.client.get("/api/conversations/search")
    assert [item["id"] for item in newest_first.json()["items"]] == ids[::-1]
    # The reference restarts silently from the first page; an unknown page is an error here.
    unknown = await server.client.get("/api/conversations/search", params={"page_id": "abc"})
    assert unknown.status_code == 400
    idle = await server.client.get("/api/conversations/count", params={"status": "idle"})
    running = await server.client.get("/api/conversations/count", params={"status": "running"})
    assert (idle.json(), running.json()) == (3, 0)
    batch = await server.client.get(
        "/api/conversations", params=[("ids", ids[1]), ("ids", str(uuid.uuid4()))]
    )
    assert [item and item["id"] for item in batch.json()] == [ids[1], None]
    await server.aclose()


# -- runs and events -----------------------------------------------------------------------


async def test_run_409_live_pause_and_event_reads(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("held", [text("late", delay=3)])
    info = await create(server, fake_llm, "terminal")
    base = f"/api/conversations/{info['id']}"
    sent = await server.client.post(f"{base}/events", json=message(f"wait {tag}"))
    assert sent.status_code == 200
    assert sent.json()["execution_status"] == "idle"  # `run` defaults to false here

    assert (await server.client.post(f"{base}/run")).status_code == 200
    request = await fake_llm.wait_for_request(script="held", step=0)
    again = await server.client.post(f"{base}/run")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "Conversation already running. Wait for completion or pause first."
    )
    assert (await server.client.get(base)).json()["execution_status"] == "running"
    paused = await server.client.post(f"{base}/pause")
    # Live status: the reference still said `running` here (its REST read a stale file).
    assert paused.json()["execution_status"] == "paused"
    assert (await server.client.get(base)).json()["execution_status"] == "paused"
    with trio.fail_after(5):
        assert await request.wait_done() == "aborted"

    fake_llm.script("held", [tool_call("terminal", {"command": "echo hi"}), finish("all done")])
    socket = await open_socket(server, f"/sockets/events/{info['id']}")
    assert is_full_state(await receive(socket), "paused")
    assert (await server.client.post(f"{base}/run")).status_code == 200
    await frames_until_run_ends(socket)
    await close(socket)
    final = await server.client.get(f"{base}/agent_final_response")
    assert final.json() == {"response": "all done"}

    events = await events_of(server, info["id"])
    ids = [event["id"] for event in events]
    paged: list[str] = []
    page_id: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"page_id": page_id} if page_id else {})
        page = (await server.client.get(f"{base}/events/search", params=params)).json()
        paged += [event["id"] for event in page["items"]]
        if (page_id := page["next_page_id"]) is None:
            break
    assert paged == ids
    bad_page = await server.client.get(f"{base}/events/search", params={"page_id": "nope"})
    assert bad_page.status_code == 400
    assert (await server.client.get(f"{base}/events/count")).json() == len(ids)
    messages = await server.client.get(f"{base}/events/count", params={"kind": "MessageEvent"})
    assert messages.json() == sum(event["kind"] == "MessageEvent" for event in events)
    one = await server.client.get(f"{base}/events/{ids[1]}")
    assert one.json()["id"] == ids[1]
    assert (await server.client.get(f"{base}/events/{uuid.uuid4()}")).status_code == 404
    by_query = await server.client.get(
        f"{base}/events", params=[("event_ids", ids[0]), ("event_ids", "nope")]
    )
    by_body = await server.client.request("GET", f"{base}/events", json=[ids[0], "nope"])
    assert [e and e["id"] for e in by_query.json()] == [ids[0], None]
    assert by_body.json() == by_query.json()


async def test_policy_secrets_analyzer_and_rejection(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script(
        "risky", [tool_call("terminal", {"command": "touch nope.txt"}), text("fine")]
    )
    info = await create(server, fake_llm, "terminal", confirmation_policy={"kind": "AlwaysConfirm"})
    base = f"/api/conversations/{info['id']}"
    assert info["confirmation_policy"]["kind"] == "AlwaysConfirm"

    secrets = {
        "API_TOKEN": "s3cret-value",
        "OTHER": {"value": "another-s3cret"},
        "REMOTE": {"kind": "LookupSecret", "url": "http://127.0.0.1:9/token"},
    }
    assert (await server.client.post(f"{base}/secrets", json={"secrets": secrets})).is_success
    bad = await server.client.post(f"{base}/secrets", json={"secrets": {"X": {"kind": "Nope"}}})
    assert bad.status_code == 422
    analyzer = {"security_analyzer": {"kind": "LLMSecurityAnalyzer"}}
    assert (await server.client.post(f"{base}/security_analyzer", json=analyzer)).is_success
    shown = (await server.client.get(base)).text
    assert "s3cret" not in shown
    assert set(json.loads(shown)["secret_registry"]["secret_sources"]) == set(secrets)
    assert json.loads(shown)["security_analyzer"]["kind"] == "LLMSecurityAnalyzer"

    socket = await open_socket(server, f"/sockets/events/{info['id']}")
    assert is_full_state(await receive(socket), "idle")
    await server.client.post(f"{base}/events", json=message(f"go {tag}", run=True))
    frames = await frames_until_run_ends(socket)
    assert frames[-1]["value"]["execution_status"] == "waiting_for_confirmation"
    # The settled status comes right before the snapshot, after the run's last event.
    assert (frames[-2]["key"], frames[-2]["value"]) == (
        "execution_status",
        "waiting_for_confirmation",
    )
    assert any(frame.get("kind") == "ActionEvent" for frame in frames)
    rejected = await server.client.post(
        f"{base}/events/respond_to_confirmation", json={"accept": False, "reason": "no thanks"}
    )
    assert rejected.json()["execution_status"] == "idle"
    kinds = [event["kind"] for event in await events_of(server, info["id"])]
    assert "UserRejectObservation" in kinds
    assert "ObservationEvent" not in kinds
    assert not (server.settings.workspace_dir / "nope.txt").exists()

    never = {"policy": {"kind": "NeverConfirm"}}
    assert (await server.client.post(f"{base}/confirmation_policy", json=never)).is_success
    update = await receive(socket)
    while update.get("key") != "confirmation_policy":
        update = await receive(socket)
    assert update["value"]["kind"] == "NeverConfirm"
    unknown = await server.client.post(
        f"{base}/confirmation_policy", json={"policy": {"kind": "?"}}
    )
    assert unknown.status_code == 422
    await close(socket)


# -- the socket ----------------------------------------------------------------------------


async def test_the_typescript_clients_policy_objects_are_taken(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """`new AlwaysConfirm()` of the TypeScript client is `{"type": "always"}` on the wire;
    the reference answers it with a 422 (it reads only the SDK's `kind`)."""
    info = await create(server, fake_llm, confirmation_policy={"type": "always"})
    assert info["confirmation_policy"] == {"kind": "AlwaysConfirm"}
    base = f"/api/conversations/{info['id']}"
    risky = {"kind": "ConfirmRisky"}
    for sent, shown in [
        ({"type": "never"}, {"kind": "NeverConfirm"}),
        (
            {"type": "risk_based", "threshold": "high"},
            risky | {"threshold": "HIGH", "confirm_unknown": False},
        ),
        ({"type": "risk_based"}, risky | {"threshold": "MEDIUM", "confirm_unknown": True}),
        (
            {"type": "risk_based", "threshold": "unknown"},
            risky | {"threshold": "MEDIUM", "confirm_unknown": True},
        ),
        (
            {"type": "risk_based", "threshold": "low"},
            risky | {"threshold": "LOW", "confirm_unknown": True},
        ),
        ({"kind": "AlwaysConfirm", "type": "never"}, {"kind": "AlwaysConfirm"}),  # the SDK's wins
    ]:
        answer = await server.client.post(f"{base}/confirmation_policy", json={"policy": sent})
        assert answer.is_success, answer.text
        assert (await server.client.get(base)).json()["confirmation_policy"] == shown
    for sent, field in [
        ({"type": "tool_based", "toolsRequiringConfirmation": {}}, "type"),
        ({"type": "composite", "policies": [{"type": "always"}]}, "type"),
        ({"type": "risk_based", "threshold": "extreme"}, "threshold"),
    ]:
        answer = await server.client.post(f"{base}/confirmation_policy", json={"policy": sent})
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "policy", field]
    assert (await server.client.get(base)).json()["confirmation_policy"] == {
        "kind": "AlwaysConfirm"
    }


async def test_a_control_answers_once_its_state_update_is_on_the_socket(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """The SDK client reads what it just set from its socket's frames (`RemoteState`'s
    cache), so the state update goes out before the answer, as the reference's does: the
    socket's writer is woken when the event is logged and writes it without another pass of
    the scheduler (web/frame_writer.py), while the answer still has the record to save."""
    info = await create(server, fake_llm)
    base = f"/api/conversations/{info['id']}"
    socket = await RawSocket.open(server, f"/sockets/events/{info['id']}")
    try:
        assert is_full_state(await socket.next_frame() or {}, "idle")
        for kind in ("AlwaysConfirm", "NeverConfirm", "AlwaysConfirm"):
            answer = await server.client.post(
                f"{base}/confirmation_policy", json={"policy": {"kind": kind}}
            )
            assert answer.is_success
            assert socket.has_data()  # in this client's receive buffer before the answer
            update = await socket.next_frame()
            assert update is not None
            assert update["kind"] == "ConversationStateUpdateEvent"
            assert (update["key"], update["value"]["kind"]) == ("confirmation_policy", kind)
        assert (await server.client.post(f"{base}/pause")).is_success
        assert socket.has_data()
        frames = await socket.frames_until(lambda f: f.get("key") == "execution_status")
        assert frames[-1]["value"] == "paused"
    finally:
        await socket.aclose()


async def test_socket_replays_without_duplicates_and_takes_messages(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    first = fake_llm.script("first", [text("one")])
    second = fake_llm.script("second", [text("two")])
    info = await create(server, fake_llm, initial_message=message(f"hi {first}", run=True))
    base = f"/api/conversations/{info['id']}"
    watcher = await open_socket(server, f"/sockets/events/{info['id']}")
    snapshot = await receive(watcher)
    if snapshot["value"]["execution_status"] == "running":
        await frames_until_run_ends(watcher)
    logged = [event["id"] for event in await events_of(server, info["id"])]

    socket = await open_socket(server, f"/sockets/events/{info['id']}?resend_mode=all")
    snapshot = await receive(socket)
    assert is_full_state(snapshot, "finished")
    assert snapshot["value"]["agent"]["llm"]["api_key"] == REDACTED
    replayed = [(await receive(socket))["id"] for _ in logged]
    assert replayed == logged
    # The other ways to ask for history: after an event, or from a time on.
    stamps = [event["timestamp"] for event in await events_of(server, info["id"])]
    first_since = next(i for i, stamp in enumerate(stamps) if stamp >= stamps[2])
    for query, expected in (
        (f"after_event_id={logged[1]}", logged[2:]),
        (f"resend_mode=since&after_timestamp={stamps[2]}", logged[first_since:]),
    ):
        partial_replay = await open_socket(server, f"/sockets/events/{info['id']}?{query}")
        assert is_full_state(await receive(partial_replay))
        assert [(await receive(partial_replay))["id"] for _ in expected] == expected
        await close(partial_replay)
    bad_mode = await open_socket(server, f"/sockets/events/{info['id']}?resend_mode=some")
    assert await close_code(bad_mode) == 1008

    # Inbound frames: an auth frame is ignored, a bad one answered, a message sent and run.
    await send(socket, {"type": "auth", "session_api_key": "whatever"})
    await send(socket, {"role": "user", "content": []})
    error = await receive(socket)
    assert (error["kind"], error["code"]) == ("ServerErrorEvent", 422)
    await send(socket, message(f"again {second}"))
    live = await frames_until_run_ends(socket, "finished")
    # Every live frame but the full_state snapshot is a logged event (state updates too).
    live_ids = [frame["id"] for frame in live if not is_full_state(frame)]
    assert not set(live_ids) & set(replayed)
    everything = [event["id"] for event in await events_of(server, info["id"])]
    assert everything == logged + live_ids
    texts = [e["llm_message"]["content"][0]["text"] for e in live if e["kind"] == "MessageEvent"]
    assert texts[-1] == "two"

    # Delete closes every socket of the conversation with 4004 (the reference left them open).
    assert (await server.client.delete(base)).status_code == 200
    assert await close_code(socket) == 4004
    assert await close_code(watcher) == 4004
    gone = await open_socket(server, f"/sockets/events/{info['id']}")
    assert await close_code(gone) == 4004
    malformed = await open_socket(server, "/sockets/events/not-a-uuid")
    assert await close_code(malformed) == 4004


async def test_session_key_over_rest_and_socket(
    keyed_server: LiveServer, fake_llm: FakeLLM
) -> None:
    server = keyed_server
    assert (await server.client.get("/api/conversations/count")).status_code == 401
    server.client.headers["X-Session-API-Key"] = KEY
    info = await create(server, fake_llm)
    path = f"/sockets/events/{info['id']}"

    by_frame = await open_socket(server, path)
    await send(by_frame, {"type": "auth", "session_api_key": KEY})
    assert is_full_state(await receive(by_frame), "idle")
    await close(by_frame)
    by_header = await open_socket(server, path, **{"X-Session-API-Key": KEY})
    assert is_full_state(await receive(by_header), "idle")
    await close(by_header)
    by_query = await open_socket(server, f"{path}?session_api_key={KEY}")
    assert is_full_state(await receive(by_query), "idle")
    await close(by_query)

    wrong_frame = await open_socket(server, path)
    await send(wrong_frame, {"type": "auth", "session_api_key": "wrong"})
    assert await close_code(wrong_frame) == 4001
    not_auth = await open_socket(server, path)
    await send(not_auth, message("hello"))
    assert await close_code(not_auth) == 4001
    # Unknown conversations are only revealed after authentication.
    unknown = await open_socket(server, f"/sockets/events/{uuid.uuid4()}")
    await send(unknown, {"type": "auth", "session_api_key": "wrong"})
    assert await close_code(unknown) == 4001
    with pytest.raises(InvalidStatus) as rejected:
        await open_socket(server, f"{path}?session_api_key=wrong")
    assert rejected.value.response.status_code == 403
    assert json.loads(rejected.value.response.body) == {"detail": "Invalid session API key"}
