"""Hostile and odd input, over the real server: every one is a 4xx naming the field (or an
error frame on a socket that stays open), never a 500."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.conftest import LiveServer, llm_settings, start_server, test_settings
from trio_openhands.core.validation import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.testing.fake_llm import FakeLLM

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent

JSON = {"Content-Type": "application/json"}
LONE_SURROGATE = '"\\ud800"'  # JSON text for a string no UTF-8 encoder can write
UUID_TEXT = "12345678-1234-5678-1234-567812345678"


def llm_json(fake_llm: FakeLLM) -> str:
    return json.dumps(llm_settings(fake_llm))


def message_json(text_literal: str) -> str:
    return '{"role": "user", "content": [{"type": "text", "text": ' + text_literal + "}]}"


async def post_raw(server: LiveServer, path: str, body: str) -> dict[str, Any]:
    response = await server.client.post(path, content=body.encode(), headers=JSON)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    return response.json()


def first_loc(answer: dict[str, Any]) -> list[Any]:
    return answer["detail"][0]["loc"]


async def test_json_that_breaks_parsers_is_a_422(server: LiveServer, fake_llm: FakeLLM) -> None:
    deep = 100_000
    for path in ("/conversations", "/api/conversations"):
        assert first_loc(await post_raw(server, path, "[" * deep + "]" * deep)) == ["body"]
        assert first_loc(await post_raw(server, path, '{"a":' * deep + "1" + "}" * deep)) == [
            "body"
        ]
        huge_int = '{"max_iterations": ' + "9" * 5000 + "}"
        assert first_loc(await post_raw(server, path, huge_int)) == ["body"]
    # Too deep for the parser's own stack: the body as a whole is at fault.
    inside_llm = '{"llm": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = await post_raw(server, "/conversations", inside_llm)
    assert first_loc(answer) == ["body"]
    assert str(MAX_JSON_DEPTH) in answer["detail"][0]["msg"]
    # Parsable but deeper than the SDK should ever recurse: named by where it is.
    inside_llm = '{"llm": {"extra": ' + "[" * 100 + "]" * 100 + "}}"
    answer = await post_raw(server, "/conversations", inside_llm)
    assert first_loc(answer)[:3] == ["body", "llm", "extra"]
    assert str(MAX_JSON_DEPTH) in answer["detail"][0]["msg"]
    # Under the limit, parsing passes and the model has its say.
    nested_ok = '{"llm": ' + "[" * 40 + "]" * 40 + "}"
    answer = await post_raw(server, "/conversations", nested_ok)
    assert answer["detail"][0]["type"] == "dict_type"


async def test_a_lone_surrogate_is_a_422_naming_the_field(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    start = '{"llm": ' + llm_json(fake_llm) + ', "initial_message": '
    answer = await post_raw(server, "/conversations", start + message_json(LONE_SURROGATE) + "}")
    assert first_loc(answer) == ["body", "initial_message", "content", 0, "text"]
    created = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    conversation_id = created.json()["id"]
    for path in (
        f"/conversations/{conversation_id}/events",
        f"/api/conversations/{conversation_id}/events",
    ):
        answer = await post_raw(server, path, message_json(LONE_SURROGATE))
        assert first_loc(answer) == ["body", "content", 0, "text"]
    # A surrogate *pair* is a real character and is welcome.
    paired = await server.client.post(
        f"/api/conversations/{conversation_id}/events",
        content=message_json('"\\ud83d\\ude00"').encode(),
        headers=JSON,
    )
    assert paired.status_code == 200, paired.text


@pytest.mark.parametrize(
    ("working_dir", "reason"),
    [("bad\x00dir", "NUL"), ("/tmp/" + "d" * 5000, "bytes"), ("/tmp/" + "n" * 300, "name")],
)
async def test_unusable_working_dirs_are_a_422(
    server: LiveServer, fake_llm: FakeLLM, working_dir: str, reason: str
) -> None:
    seed = {"llm": llm_settings(fake_llm), "workspace": {"working_dir": working_dir}}
    api = {
        "agent": {"kind": "Agent", "llm": llm_settings(fake_llm), "tools": []},
        "workspace": {"working_dir": working_dir, "kind": "LocalWorkspace"},
    }
    for path, body in (("/conversations", seed), ("/api/conversations", api)):
        answer = await post_raw(server, path, json.dumps(body))
        assert first_loc(answer) == ["body", "workspace", "working_dir"]
        assert reason in answer["detail"][0]["msg"]


async def test_relative_working_dirs_lie_under_the_workspace(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    workspace = server.settings.workspace_dir
    seed = await server.client.post(
        "/conversations", json={"llm": llm_settings(fake_llm), "workspace": {"working_dir": "a"}}
    )
    assert seed.status_code == 201, seed.text
    assert seed.json()["workspace"]["working_dir"] == str(workspace / "a")
    api = await server.client.post(
        "/api/conversations",
        json={
            "agent": {"kind": "Agent", "llm": llm_settings(fake_llm), "tools": []},
            "workspace": {"working_dir": "../b", "kind": "LocalWorkspace"},
        },
    )
    assert api.status_code == 201, api.text
    assert api.json()["workspace"]["working_dir"] == str(workspace.parent / "b")
    a_file = workspace.parent / "a-file"
    a_file.write_text("not a directory")
    answer = await post_raw(
        server,
        "/conversations",
        json.dumps({"llm": llm_settings(fake_llm), "workspace": {"working_dir": str(a_file)}}),
    )
    assert first_loc(answer) == ["body", "workspace", "working_dir"]
    assert "not a directory" in answer["detail"][0]["msg"]


async def test_working_dir_roots_confine_working_dirs(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "link-out").symlink_to(tmp_path)
    server = await start_server(nursery, test_settings(tmp_path, working_dir_roots=(root,)))
    try:
        for inside in (str(root / "x"), str(root)):
            body = {"llm": llm_settings(fake_llm), "workspace": {"working_dir": inside}}
            response = await server.client.post("/conversations", json=body)
            assert response.status_code == 201, response.text
        for outside in (str(tmp_path / "elsewhere"), str(root / ".." / "x"), "../x"):
            body = {"llm": llm_settings(fake_llm), "workspace": {"working_dir": outside}}
            answer = await post_raw(server, "/conversations", json.dumps(body))
            assert "not under an allowed root" in answer["detail"][0]["msg"]
        through_link = {"working_dir": str(root / "link-out" / "x"), "kind": "LocalWorkspace"}
        body = {
            "agent": {"kind": "Agent", "llm": llm_settings(fake_llm)},
            "workspace": through_link,
        }
        answer = await post_raw(server, "/api/conversations", json.dumps(body))
        assert "not under an allowed root" in answer["detail"][0]["msg"]
    finally:
        await server.aclose()


async def test_timestamps_at_the_edge_of_time_are_a_422(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    created = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    conversation_id = created.json()["id"]
    for prefix in ("", "/api"):
        path = f"{prefix}/conversations/{conversation_id}/events/search"
        for name, value in (
            ("timestamp__gte", "0001-01-01T00:00:00+14:00"),
            ("timestamp__lt", "9999-12-31T23:59:59-14:00"),
        ):
            response = await server.client.get(path, params={name: value})
            assert response.status_code == 422, (path, name, response.text)
            assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_ids_have_one_spelling(server: LiveServer, fake_llm: FakeLLM) -> None:
    for odd in ("{" + UUID_TEXT + "}", "urn:uuid:" + UUID_TEXT):
        for path in (f"/conversations/{odd}", f"/api/conversations/{odd}"):
            response = await server.client.get(path)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["detail"][0]["loc"] == ["path", "conversation_id"]
        body = {
            "agent": {"kind": "Agent", "llm": llm_settings(fake_llm)},
            "workspace": {"working_dir": "w", "kind": "LocalWorkspace"},
            "conversation_id": odd,
        }
        answer = await post_raw(server, "/api/conversations", json.dumps(body))
        assert first_loc(answer) == ["body", "conversation_id"]
    for plain in (UUID_TEXT, UUID_TEXT.replace("-", ""), UUID_TEXT.upper()):
        assert (await server.client.get(f"/api/conversations/{plain}")).status_code == 404


async def test_tags_are_bounded(server: LiveServer, fake_llm: FakeLLM) -> None:
    many = {f"t{index}": "v" for index in range(10_000)}
    seed = {"llm": llm_settings(fake_llm), "tags": many}
    answer = await post_raw(server, "/conversations", json.dumps(seed))
    assert first_loc(answer) == ["body", "tags"]
    api = {
        "agent": {"kind": "Agent", "llm": llm_settings(fake_llm)},
        "workspace": {"working_dir": "w", "kind": "LocalWorkspace"},
        "tags": {"k" * 100: "v"},
    }
    answer = await post_raw(server, "/api/conversations", json.dumps(api))
    assert first_loc(answer) == ["body", "tags"]
    fine = {"llm": llm_settings(fake_llm), "tags": {f"t{index}": "v" for index in range(64)}}
    assert (await server.client.post("/conversations", json=fine)).status_code == 201


async def test_sockets_answer_bad_frames_with_an_error_frame_and_stay_open(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    created = await server.client.post("/conversations", json={"llm": llm_settings(fake_llm)})
    conversation_id = created.json()["id"]
    deep = "[" * 100_000 + "]" * 100_000
    lone = message_json(LONE_SURROGATE)
    for path, code_of in (
        (f"/conversations/{conversation_id}/events/socket", lambda f: f.get("code")),
        (f"/sockets/events/{conversation_id}", lambda f: f.get("code")),
    ):
        async with open_websocket_url(server.ws_url(path), max_message_size=2**24) as socket:
            with trio.fail_after(20):
                for frame in (deep, lone, deep):
                    await socket.send_message(frame)
                    while True:
                        answer = json.loads(await socket.get_message())
                        if answer.get("type") == "error" or answer.get("kind") == (
                            "ServerErrorEvent"
                        ):
                            break
                    assert 400 <= code_of(answer) < 500, (path, answer)
                    assert not socket.closed
