"""What a create request may carry beyond an `agent`, as the web UI sends it:
`agent_settings` (built into an agent by the SDK), `secrets_encrypted`, `client_tools`,
`parent_conversation_id`, `worktree`, `autotitle`, `plugins` (`hook_config`:
tests/test_sdk_controls.py); and a 422 naming what we cannot do."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import trio
from openhands.sdk.utils.cipher import Cipher
from trio_websocket import open_websocket_url

from tests import stored
from tests.conftest import LiveServer, llm_settings, start_server, test_settings, wait_status
from tests.test_plugins import write_plugin
from trio_openhands.testing.fake_llm import FakeLLM, finish, http_error, text, tool_call

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.settings import Settings

KEY = "sk-plain-CREATE-key"


def message(text_: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text_}], "run": True}


def ui_request(server: LiveServer, settings: dict[str, Any], **body: Any) -> dict[str, Any]:
    """A create as the web UI makes it: the settings it read, a working dir under home."""
    working_dir = server.settings.workspace_dir / "from-ui"
    return {
        "agent_settings": settings,
        "workspace": {"working_dir": str(working_dir), "kind": "LocalWorkspace"},
        **body,
    }


async def create(server: LiveServer, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await server.client.post("/api/conversations", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def agent_texts(server: LiveServer, conversation_id: str) -> list[str]:
    events = await server.client.get(f"/api/conversations/{conversation_id}/events/search")
    return [
        event["llm_message"]["content"][0]["text"]
        for event in events.json()["items"]
        if event["kind"] == "MessageEvent" and event["source"] == "agent"
    ]


async def wait_title(server: LiveServer, conversation_id: str) -> str:
    """The title, once the socket says one was set (or GET already shows it)."""
    url = server.ws_url(f"/sockets/events/{conversation_id}")
    with trio.fail_after(30):
        async with open_websocket_url(url) as socket:
            while True:
                got = await server.client.get(f"/api/conversations/{conversation_id}")
                if got.json()["title"]:
                    return got.json()["title"]
                frame = json.loads(await socket.get_message())
                if frame.get("key") == "title":
                    return frame["value"]


async def stored_key(settings: Settings, conversation_id: str) -> str:
    """The LLM key the SDK stored for the conversation (encrypted at rest), decrypted."""
    state = json.loads(
        await trio.to_thread.run_sync(
            stored.conversation_file, settings, conversation_id, "base_state.json"
        )
    )
    decrypted = Cipher(secret_key="test-secret").decrypt(state["agent"]["llm"]["api_key"])
    assert decrypted is not None
    return decrypted.get_secret_value()


async def test_the_web_ui_create_with_agent_settings_and_encrypted_secrets(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    diff = {"agent_kind": "openhands", "llm": llm_settings(fake_llm, api_key=KEY)}
    assert (
        await server.client.patch("/api/settings", json={"agent_settings_diff": diff})
    ).is_success
    read = await server.client.get("/api/settings", headers={"X-Expose-Secrets": "encrypted"})
    settings = read.json()["agent_settings"]
    assert settings["llm"]["api_key"].startswith("gAAAAA")
    fake_llm.default = text("Greeting")  # the title request (it offers no tools)
    tag = fake_llm.script("ui", [text("Hello from the agent")])
    body = ui_request(
        server,
        settings,
        secrets_encrypted=True,
        autotitle=True,
        worktree=True,  # not a git repository: nothing to do, as in the reference
        initial_message=message(f"Say hello {tag}"),
    )
    info = await create(server, body)
    assert [tool["name"] for tool in info["agent"]["tools"]] == [
        "terminal",
        "file_editor",
        "task_tracker",
    ]  # the settings' default tools, the browser left out: none runs here
    await wait_status(server, info["id"], "finished")
    assert await agent_texts(server, info["id"]) == ["Hello from the agent"]
    assert await wait_title(server, info["id"]) == "Greeting"
    # The ciphertext the UI sent back was decrypted: the conversation has the real key.
    assert await stored_key(server.settings, info["id"]) == KEY


async def test_agent_settings_that_cannot_be_served_are_a_422_naming_them(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    llm = llm_settings(fake_llm)
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"agent_kind": "acp"}, ["body", "agent_settings", "agent_kind"]),
        ({"llm": {**llm, "temperature": "hot"}}, ["body", "agent_settings", "llm", "temperature"]),
        ({"llm": llm, "tools": [{"name": "nope"}]}, ["body", "agent_settings", "tools", 0, "name"]),
    ]
    for settings, loc in cases:
        refused = await create(server, ui_request(server, settings), 422)
        assert refused["detail"][0]["loc"][: len(loc)] == loc, refused
    hooks = {"stop": [{"hooks": [{"type": "command", "command": ""}]}]}  # a command is required
    refused = await create(server, ui_request(server, {"llm": llm}, hook_config=hooks), 422)
    assert refused["detail"][0]["loc"][:2] == ["body", "hook_config"], refused
    assert (await server.client.get("/api/conversations/count")).json() == 0


async def hooks_run_after_a_message(
    server: LiveServer, fake_llm: FakeLLM, conversation_id: str, script: str
) -> list[tuple[str, bool]]:
    """A message answered by `script`; then every hook the conversation has run, in order."""
    tag = fake_llm.script(script, [text("answered")])
    sent = await server.client.post(
        f"/api/conversations/{conversation_id}/events", json=message(f"go {tag}")
    )
    assert sent.status_code == 200, sent.text
    await wait_status(server, conversation_id, "finished")
    search = await server.client.get(
        f"/api/conversations/{conversation_id}/events/search",
        params={"kind": "HookExecutionEvent"},
    )
    return [(e["hook_event_type"], e["success"]) for e in search.json()["items"]]


async def test_hooks_outlive_a_restart(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The SDK keeps no hooks on disk: the server gives them back at every open."""
    settings = test_settings(tmp_path)
    first = await start_server(nursery, settings)
    hooks = {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]}  # PascalCase too
    info = await create(
        first, ui_request(first, {"llm": llm_settings(fake_llm)}, hook_config=hooks)
    )
    await first.aclose()
    second = await start_server(nursery, settings)
    try:
        ran = await hooks_run_after_a_message(second, fake_llm, info["id"], "hooks-restart")
        assert ran == [("Stop", True)]
    finally:
        await second.aclose()


async def test_plugins_load_at_the_first_message_and_after_a_restart(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """`plugins` (the SDK's `PluginSource`s): kept in the record, given to the SDK at every
    open, which loads them (skills, hooks) at the first message or run."""
    root = write_plugin(tmp_path / "plugins", "helper", "A helper plugin")
    hooks = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]}}
    (root / "hooks").mkdir()
    (root / "hooks" / "hooks.json").write_text(json.dumps(hooks))
    settings = test_settings(tmp_path)
    first = await start_server(nursery, settings)
    llm = {"llm": llm_settings(fake_llm)}
    for bad, loc in (
        ({"source": str(root), "repo_path": "/absolute"}, ["body", "plugins", 0, "repo_path"]),
        ({"source": str(tmp_path / "nowhere")}, ["body", "plugins", 0, "source"]),  # fetched
        # A git remote that refuses: the caller's input, not an error of the server's.
        ({"source": "http://127.0.0.1:9/repo.git"}, ["body", "plugins", 0, "source"]),
    ):
        with caplog.at_level(logging.WARNING):
            refused = await create(first, ui_request(first, llm, plugins=[bad]), 422)
        assert refused["detail"][0]["loc"] == loc
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("Git command failed" in r.getMessage() for r in caplog.records)

    tag = fake_llm.script("plugged", [text("with the plugin")])
    body = ui_request(
        first,
        {"llm": llm_settings(fake_llm)},
        plugins=[{"source": str(root)}],
        initial_message=message(f"go {tag}"),
        autotitle=False,
    )
    info = await create(first, body)
    assert info["plugins"] == [{"source": str(root), "ref": None, "repo_path": None}]
    await wait_status(first, info["id"], "finished")
    assert "helper-skill" in str(fake_llm.requests[0].messages[0])  # the plugin's skill
    await first.aclose()

    second = await start_server(nursery, settings)
    try:
        shown = (await second.client.get(f"/api/conversations/{info['id']}")).json()
        assert shown["plugins"] == info["plugins"]
        ran = await hooks_run_after_a_message(second, fake_llm, info["id"], "plugged-again")
        assert ran == [("Stop", True), ("Stop", True)]  # the plugin's hook, before and after

        # A plugin gone since the create: a new conversation's first message is a 409.
        gone = write_plugin(tmp_path / "plugins", "gone")
        later = await create(second, ui_request(second, llm, plugins=[{"source": str(gone)}]))
        shutil.rmtree(gone)
        sent = await second.client.post(
            f"/api/conversations/{later['id']}/events", json=message("hello")
        )
        assert sent.status_code == 409, sent.text
        assert "plugins could not be loaded" in sent.json()["detail"]
        # A run that fails on it before the SDK's own run loop says why, as the reference.
        ran = await second.client.post(f"/api/conversations/{later['id']}/run")
        assert ran.status_code == 200, ran.text
        await wait_status(second, later["id"], "error")
        errors = await second.client.get(
            f"/api/conversations/{later['id']}/events/search",
            params={"kind": "ConversationErrorEvent"},
        )
        [error] = errors.json()["items"]
        assert (error["code"], error["source"]) == ("PluginFetchError", "environment")
        assert str(gone) in error["detail"]
    finally:
        await second.aclose()


async def test_client_tools_are_called_and_acknowledged(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    spec = {
        "name": "show_chart",
        "description": "Show a chart to the user",
        "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
    }
    tag = fake_llm.script(
        "client", [tool_call("show_chart", {"title": "Sales"}), finish("charted")]
    )
    body = ui_request(
        server,
        {"llm": llm_settings(fake_llm)},
        client_tools=[spec],
        autotitle=False,
        initial_message=message(f"chart it {tag}"),
    )
    info = await create(server, body)
    assert info["client_tools"] == [spec]
    await wait_status(server, info["id"], "finished")
    events = (await server.client.get(f"/api/conversations/{info['id']}/events/search")).json()
    actions = [e for e in events["items"] if e["kind"] == "ActionEvent"]
    assert [a["tool_name"] for a in actions] == ["show_chart", "finish"]
    observed = [e for e in events["items"] if e["kind"] == "ObservationEvent"]
    assert observed[0]["tool_name"] == "show_chart"
    assert (await server.client.get(f"/api/conversations/{info['id']}")).json()["title"] is None
    duplicate = ui_request(server, {"llm": llm_settings(fake_llm)}, client_tools=[spec, spec])
    refused = await create(server, duplicate, 422)
    assert refused["detail"][0]["loc"] == ["body", "client_tools"]


async def test_a_title_llm_that_fails_never_fails_the_run(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    fake_llm.default = http_error(500)  # every title request fails
    tag = fake_llm.script("titled", [text("answered")])
    body = ui_request(
        server, {"llm": llm_settings(fake_llm)}, initial_message=message(f"Plan the trip {tag}")
    )
    info = await create(server, body)
    await wait_status(server, info["id"], "finished")
    assert await agent_texts(server, info["id"]) == ["answered"]
    # The SDK's fallback: the first message, as the title.
    assert (await wait_title(server, info["id"])).startswith("Plan the trip")


async def test_a_parent_conversation_and_its_children(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    settings = {"llm": llm_settings(fake_llm)}
    parent = await create(server, ui_request(server, settings, autotitle=False))
    child = await create(server, ui_request(server, settings, parent_conversation_id=parent["id"]))
    assert child["parent_conversation_id"] == parent["id"]
    again = (await server.client.get(f"/api/conversations/{parent['id']}")).json()
    assert again["sub_conversation_ids"] == [child["id"]]
    orphan = ui_request(server, settings, parent_conversation_id=str(uuid.uuid4()))
    refused = await create(server, orphan, 422)
    assert refused["detail"][0]["loc"] == ["body", "parent_conversation_id"]
    elsewhere = {"working_dir": str(server.settings.workspace_dir / "other")}
    refused = await create(
        server,
        {
            **ui_request(server, settings, parent_conversation_id=parent["id"]),
            "workspace": elsewhere,
        },
        422,
    )
    assert refused["detail"][0]["loc"] == ["body", "parent_conversation_id"]


async def git(repo: Path, *args: str) -> str:
    done = await trio.run_process(["git", "-C", str(repo), *args], capture_stdout=True)
    return done.stdout.decode()


async def test_worktree_in_a_repository_is_the_conversations_own(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    repo = server.settings.workspace_dir / "repo"
    (repo / "src").mkdir(parents=True)
    await git(repo, "init", "-q", "-b", "main")
    settings = {"llm": llm_settings(fake_llm)}
    in_repo = ui_request(server, settings, worktree=True, autotitle=False)
    in_repo["workspace"] = {"working_dir": str(repo / "src")}
    refused = await create(server, in_repo, 422)  # nothing to branch from yet
    assert refused["detail"][0]["loc"] == ["body", "worktree"]
    (repo / "src" / "a.txt").write_text("a\n")
    await git(repo, "add", ".")
    await git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")

    info = await create(server, in_repo)
    hex_id = info["id"].replace("-", "")
    top = server.settings.conversations_dir / ".worktrees" / hex_id / "repo"
    assert info["workspace"]["working_dir"] == str(top / "src")  # the same place, inside it
    assert (top / "src" / "a.txt").read_text() == "a\n"
    assert f"openhands/{hex_id}" in await git(repo, "branch", "--list")
    assert str(top) in await git(repo, "worktree", "list")
    assert (await server.client.delete(f"/api/conversations/{info['id']}")).status_code == 200
    assert not top.exists()
    assert str(top) not in await git(repo, "worktree", "list")
