"""Fork, profiles, plugins and server-side hooks through the official client
(`RemoteConversation`), as a user of the SDK would drive them: a fork is an ordinary
conversation of the server, `switch_profile` installs a saved profile's LLM, `load_plugin`
adds a marketplace's plugin, and a create's `hook_config` runs the SDK's hooks on the
server, their events in the log."""

from __future__ import annotations

import json
import logging
import stat
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from openhands.sdk import AgentContext
from openhands.sdk.event import HookExecutionEvent
from openhands.sdk.hooks import HookConfig, HookDefinition, HookMatcher
from openhands.sdk.marketplace import MarketplaceRegistration

from tests.test_create_fields import stored_key
from tests.test_plugins import write_plugin
from tests.test_sdk_client import (
    OPEN_FIRST_STORE,
    Client,
    Frames,
    SdkSession,
    Status,
    agent_texts,
    call,
    persisted,
    sdk,
)
from trio_openhands.testing.fake_llm import text, tool_call

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["sdk"]  # the SDK client test's fixture

OPEN = pytest.mark.parametrize("sdk", [OPEN_FIRST_STORE], ids=["open"], indirect=True)


async def event_ids(session: SdkSession, conversation_id: str) -> list[str]:
    page = await session.server.client.get(f"/api/conversations/{conversation_id}/events/search")
    assert page.status_code == 200, page.text
    return [event["id"] for event in page.json()["items"]]


@OPEN
async def test_fork_is_a_conversation_of_its_own_that_runs_to_finished(
    sdk: SdkSession, caplog: pytest.LogCaptureFixture
) -> None:
    first = sdk.fake_llm.script("fork-source", [text("the source's answer")])
    client = await sdk.open()
    source = client.conversation
    await call(source.send_message, f"one {first}")
    await call(source.run)
    before = await event_ids(sdk, client.id)

    forked = await call(source.fork, title="the fork", tags={"kind": "fork"})
    fork = Client(forked, client.workspace, Frames(trio.lowlevel.current_trio_token()))
    sdk.clients.append(fork)
    assert fork.id != client.id
    info = (await sdk.server.client.get(f"/api/conversations/{fork.id}")).json()
    assert info["execution_status"] == "idle"
    assert info["title"] == "the fork"
    assert info["tags"] == {"kind": "fork"}
    assert info["forked_from_conversation_id"] == client.id
    # Its log starts with a copy of the source's, and ends with its own status.
    copied = await event_ids(sdk, fork.id)
    assert copied[: len(before)] == before
    last = (await sdk.server.client.get(f"/api/conversations/{fork.id}/events/{copied[-1]}")).json()
    assert (last["key"], last["value"]) == ("execution_status", "idle")

    second = sdk.fake_llm.script("fork-fork", [text("the fork's answer")])
    await call(forked.send_message, f"two {second}")
    await call(forked.run)
    assert forked.state.execution_status == Status.FINISHED
    request = await sdk.fake_llm.wait_for_request(script="fork-fork", step=0)
    assert "the source's answer" in str(request.messages)  # the source's memory
    assert agent_texts(persisted(forked.state.events))[-2:] == [
        "the source's answer",
        "the fork's answer",
    ]
    # The fork saved the LLM key encrypted with the server secret: it runs after a restart.
    assert await stored_key(sdk.server.settings, str(fork.id)) == "test-key"
    # The source is as it was.
    assert await event_ids(sdk, client.id) == before
    source_info = (await sdk.server.client.get(f"/api/conversations/{client.id}")).json()
    assert source_info["execution_status"] == "finished"

    with pytest.raises(httpx.HTTPStatusError) as taken:
        await call(source.fork, conversation_id=forked.id)
    assert taken.value.response.status_code == 409
    with pytest.raises(httpx.HTTPStatusError) as unknown_event:
        await call(source.fork, from_event_id="no-such-event")
    assert unknown_event.value.response.status_code == 404
    # Deleting the fork leaves the source; so does deleting one that never ran.
    assert (await sdk.server.client.delete(f"/api/conversations/{fork.id}")).status_code == 200
    idle = (await sdk.server.client.post(f"/api/conversations/{client.id}/fork")).json()
    assert (await sdk.server.client.delete(f"/api/conversations/{idle['id']}")).status_code == 200
    assert (await sdk.server.client.get(f"/api/conversations/{client.id}")).status_code == 200
    server_errors = [r for r in caplog.records if r.name.startswith("trio_openhands")]
    assert not [r.getMessage() for r in server_errors if r.levelno >= logging.ERROR]


def deny_once_script(folder: Path) -> Path:
    """A Stop hook: the first time it refuses (exit 2, its reason on stderr), then allows."""
    script = folder / "stop-hook.sh"
    flag = folder / "denied-once"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{flag}" ]; then exit 0; fi\n'
        f'touch "{flag}"\n'
        'echo "not finished: add the second part" >&2\n'
        "exit 2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@OPEN
async def test_a_stop_hook_that_denies_once_keeps_the_agent_going(
    sdk: SdkSession, tmp_path: Path
) -> None:
    script = deny_once_script(tmp_path)
    hooks = HookConfig(stop=[HookMatcher(hooks=[HookDefinition(command=str(script))])])
    tag = sdk.fake_llm.script("stop-hook", [text("first part"), text("second part")])
    client = await sdk.open(hook_config=hooks)
    conversation = client.conversation
    await call(conversation.send_message, f"go {tag}")
    await call(conversation.run)
    assert conversation.state.execution_status == Status.FINISHED
    assert agent_texts(conversation.state.events) == ["first part", "second part"]
    # The hook's reason reached the agent.
    request = await sdk.fake_llm.wait_for_request(script="stop-hook", step=1)
    assert "add the second part" in str(request.messages)
    runs = [e for e in conversation.state.events if isinstance(e, HookExecutionEvent)]
    assert [(e.hook_event_type, e.blocked, e.exit_code) for e in runs] == [
        ("Stop", True, 2),
        ("Stop", False, 0),
    ]
    # The same events in the server's log, for any later reader.
    search = await sdk.server.client.get(
        f"/api/conversations/{client.id}/events/search", params={"kind": "HookExecutionEvent"}
    )
    assert [e["id"] for e in search.json()["items"]] == [e.id for e in runs]
    info = (await sdk.server.client.get(f"/api/conversations/{client.id}")).json()
    assert info["hook_config"]["stop"][0]["hooks"][0]["command"] == str(script)


@OPEN
async def test_a_pre_tool_use_hook_blocks_a_command(sdk: SdkSession, tmp_path: Path) -> None:
    refuse = tmp_path / "refuse.sh"
    refuse.write_text('#!/bin/sh\necho "no commands today" >&2\nexit 2\n')
    refuse.chmod(refuse.stat().st_mode | stat.S_IXUSR)
    hooks = HookConfig(
        pre_tool_use=[HookMatcher(matcher="terminal", hooks=[HookDefinition(command=str(refuse))])],
        user_prompt_submit=[HookMatcher(hooks=[HookDefinition(command="true")])],
    )
    target = sdk.workspace_dir / "blocked.txt"
    tag = sdk.fake_llm.script(
        "pre-tool", [tool_call("terminal", {"command": f"touch {target}"}), text("gave up")]
    )
    client = await sdk.open("terminal", hook_config=hooks)
    await call(client.conversation.send_message, f"try {tag}")
    await call(client.conversation.run)
    assert not target.exists()
    runs = [e for e in client.conversation.state.events if isinstance(e, HookExecutionEvent)]
    assert [(e.hook_event_type, e.blocked) for e in runs] == [
        ("UserPromptSubmit", False),
        ("PreToolUse", True),
    ]
    answered = await sdk.fake_llm.wait_for_request(script="pre-tool", step=1)
    assert "no commands today" in str(answered.messages)  # the agent was told why


@OPEN
async def test_switch_profile_installs_a_saved_profiles_llm(sdk: SdkSession) -> None:
    profile_llm = {
        "model": "openai/fake-profile",
        "base_url": sdk.fake_llm.base_url,
        "api_key": "profile-key",
        "num_retries": 0,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
    }
    saved = await sdk.server.client.post("/api/profiles/cheap", json={"llm": profile_llm})
    assert saved.status_code == 201, saved.text
    client = await sdk.open()
    base = f"/api/conversations/{client.id}/switch_profile"
    missing = await sdk.server.client.post(base, json={"profile_name": "nope"})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Profile 'nope' not found"}
    switched = await sdk.server.client.post(base, json={"profile_name": "cheap"})
    assert switched.status_code == 200, switched.text
    tag = sdk.fake_llm.script("profile", [text("from the profile")])
    await call(client.conversation.send_message, f"hi {tag}")
    await call(client.conversation.run)
    request = await sdk.fake_llm.wait_for_request(script="profile", step=0)
    assert request.model == "fake-profile"
    info = (await sdk.server.client.get(f"/api/conversations/{client.id}")).json()
    assert info["agent"]["llm"]["usage_id"] == "profile:cheap"
    assert info["agent"]["llm"]["api_key"] != "profile-key"  # redacted


def write_marketplace(folder: Path) -> Path:
    """A local marketplace with one plugin, `helper`, that brings the skill `helper-skill`."""
    market = folder / "market"
    write_plugin(market / "plugins", "helper")
    manifest = {
        "name": "local",
        "owner": {"name": "tests"},
        "plugins": [{"name": "helper", "source": "./plugins/helper"}],
    }
    (market / ".claude-plugin").mkdir(parents=True)
    (market / ".claude-plugin" / "marketplace.json").write_text(json.dumps(manifest))
    return market


@OPEN
async def test_load_plugin_from_a_registered_marketplace(sdk: SdkSession, tmp_path: Path) -> None:
    market = write_marketplace(tmp_path)
    context = AgentContext(
        registered_marketplaces=[MarketplaceRegistration(name="local", source=str(market))]
    )
    agent = sdk.agent().model_copy(update={"agent_context": context})
    client = await sdk.open(agent=agent)
    await call(client.conversation.load_plugin, "helper@local")
    info = await sdk.server.client.get(
        f"/api/conversations/{client.id}", params={"include_skills": True}
    )
    skills = info.json()["agent"]["agent_context"]["skills"]
    assert "helper-skill" in [skill["name"] for skill in skills]
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        await call(client.conversation.load_plugin, "absent@local")
    assert unknown.value.response.status_code == 404
    # No marketplace registered: the SDK's own refusal.
    plain = await sdk.open()
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await call(plain.conversation.load_plugin, "helper")
    assert refused.value.response.status_code == 400
    assert "marketplace" in refused.value.response.json()["detail"].lower()
