"""`POST /api/conversations` with `agent_profile_id`: a stored agent profile launched as the
SDK's launch code does it, with `agent_launch_additions`, its `secret_refs` kept to, and
`launched_agent_profile` shown (the TypeScript client's `deriveSwitchPlan` reads it)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import trio
from openhands.sdk.conversation.impl.remote_conversation import RemoteConversation
from openhands.sdk.conversation.request import StartConversationRequest
from openhands.sdk.event import ObservationEvent
from openhands.sdk.workspace import LocalWorkspace

from tests.conftest import llm_settings, wait_status
from tests.test_create_fields import create, message
from tests.test_sdk_client import Client, Frames, SdkSession, Status, call, sdk
from trio_openhands.testing.fake_llm import finish, text, tool_call

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from trio_openhands.testing.fake_llm import FakeLLM

__all__ = ["sdk"]  # the SDK client test's fixture


async def save_profiles(server: LiveServer, fake_llm: FakeLLM, **agent: Any) -> str:
    """LLM profiles `coder-llm` and `other-llm`, agent profile `coder` over the first; its id."""
    for name, model in (("coder-llm", "openai/fake-coder"), ("other-llm", "openai/fake-other")):
        body = {"llm": llm_settings(fake_llm, model=model)}
        saved = await server.client.post(f"/api/profiles/{name}", json=body)
        assert saved.status_code == 201, saved.text
    profile = {"agent_kind": "openhands", "llm_profile_ref": "coder-llm", **agent}
    saved = await server.client.post("/api/agent-profiles/coder", json=profile)
    assert saved.status_code == 201, saved.text
    shown = await server.client.get("/api/agent-profiles/coder")
    return shown.json()["profile"]["id"]


def launch(server: LiveServer, profile_id: str, **body: Any) -> dict[str, Any]:
    working_dir = server.settings.workspace_dir / "launched"
    return {
        "agent_profile_id": profile_id,
        "workspace": {"working_dir": str(working_dir), "kind": "LocalWorkspace"},
        "autotitle": False,
        **body,
    }


async def test_a_stored_profile_launches_with_its_llm_tools_and_secrets(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    profile_id = await save_profiles(
        server,
        fake_llm,
        tools=[{"name": "terminal"}],
        system_message_suffix="PROFILE-SUFFIX",
        secret_refs=["ALLOWED"],
    )
    command = 'echo "[$ALLOWED][$DENIED]" > seen.txt'
    tag = fake_llm.script("launched", [tool_call("terminal", {"command": command}), text("done")])
    body = launch(
        server,
        profile_id,
        secrets={"ALLOWED": "yes-value", "DENIED": "no-value"},
        agent_launch_additions={"system_message_suffix_append": "DEPLOY-SUFFIX"},
        initial_message=message(f"Look around {tag}"),
    )
    info = await create(server, body)
    assert info["launched_agent_profile"] == {
        "agent_profile_id": profile_id,
        "revision": info["launched_agent_profile"]["revision"],
        "secret_refs": ["ALLOWED"],
        "llm_profile_ref": None,
    }
    assert [tool["name"] for tool in info["agent"]["tools"]] == ["terminal"]
    await wait_status(server, info["id"], "finished")

    assert [r.model for r in fake_llm.requests] == ["fake-coder", "fake-coder"]
    system = str(fake_llm.requests[0].messages[0])
    assert "PROFILE-SUFFIX" in system
    assert "DEPLOY-SUFFIX" in system
    seen = (server.settings.workspace_dir / "launched" / "seen.txt").read_text()
    assert seen == "[yes-value][]\n"  # the profile's secret_refs leave DENIED out

    # Secrets given later keep to the same list.
    update = {"secrets": {"ALLOWED": "newer", "DENIED": "again"}}
    answer = await server.client.post(f"/api/conversations/{info['id']}/secrets", json=update)
    assert answer.status_code == 200, answer.text
    tag = fake_llm.script("later", [tool_call("terminal", {"command": command}), text("ok")])
    sent = await server.client.post(
        f"/api/conversations/{info['id']}/events", json=message(f"Again {tag}")
    )
    assert sent.status_code == 200, sent.text
    await wait_status(server, info["id"], "finished")
    seen = (server.settings.workspace_dir / "launched" / "seen.txt").read_text()
    assert seen == "[newer][]\n"

    listed = await server.client.get(f"/api/conversations/{info['id']}")
    assert listed.json()["launched_agent_profile"]["agent_profile_id"] == profile_id


async def test_an_llm_profile_override_is_recorded(server: LiveServer, fake_llm: FakeLLM) -> None:
    profile_id = await save_profiles(server, fake_llm, tools=[])
    tag = fake_llm.script("override", [text("hello")])
    additions = {"llm_profile_ref": "other-llm"}
    body = launch(
        server, profile_id, agent_launch_additions=additions, initial_message=message(tag)
    )
    info = await create(server, body)
    assert info["launched_agent_profile"]["llm_profile_ref"] == "other-llm"
    assert info["launched_agent_profile"]["secret_refs"] is None
    await wait_status(server, info["id"], "finished")
    assert [r.model for r in fake_llm.requests] == ["fake-other"]
    stored = await server.client.get("/api/agent-profiles/coder")
    assert stored.json()["profile"]["llm_profile_ref"] == "coder-llm"  # left as it was


async def test_launches_that_cannot_be_made_answer_why(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    profile_id = await save_profiles(server, fake_llm, mcp_server_refs=["nowhere"])
    dangling = await server.client.post("/api/conversations", json=launch(server, profile_id))
    assert dangling.status_code == 422, dangling.text
    [problem] = dangling.json()["detail"]
    assert (problem["loc"], problem["type"]) == (
        ["body", "agent_profile_id"],
        "unresolved_profile_references",
    )
    assert problem["ctx"]["dangling_mcp_server_refs"] == ["nowhere"]

    missing_llm = launch(server, profile_id, agent_launch_additions={"llm_profile_ref": "gone"})
    answer = await server.client.post("/api/conversations", json=missing_llm)
    assert answer.json()["detail"][0]["ctx"]["dangling_llm_profile_ref"] == "gone"

    unknown = launch(server, "0b6a7f2e-1c0e-4f7a-9d55-7f0e6c1f9c11")
    assert (await server.client.post("/api/conversations", json=unknown)).status_code == 404

    agent = {"llm": llm_settings(fake_llm)}
    for body, loc in (
        (launch(server, profile_id, agent=agent), ["body", "agent_profile_id"]),
        (launch(server, "not-a-uuid"), ["body", "agent_profile_id"]),
        (
            launch(server, profile_id, agent_launch_additions={"bogus": 1}),
            ["body", "agent_launch_additions", "bogus"],
        ),
        (
            {
                **launch(server, profile_id, agent=agent),
                "agent_profile_id": None,
                "agent_launch_additions": {"llm_profile_ref": "other-llm"},
            },
            ["body", "agent_launch_additions", "llm_profile_ref"],
        ),
    ):
        answer = await server.client.post("/api/conversations", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == loc
    listing = await server.client.get("/api/conversations/search")
    assert listing.json()["items"] == []  # nothing was started by any of them


async def test_additions_and_the_stored_load_memory_apply_to_an_agent_sent_whole(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """As the reference's launch: every source is finalized, not only a profile."""
    diff = {"agent_settings_diff": {"agent_context": {"load_memory": True}}}
    assert (await server.client.patch("/api/settings", json=diff)).status_code == 200
    memory = server.settings.workspace_dir / ".openhands" / "memory"
    memory.mkdir(parents=True)
    (memory / "MEMORY.md").write_text("REMEMBERED-FACT\n")
    tag = fake_llm.script("whole", [text("fine")])
    body = {
        "agent": {"llm": llm_settings(fake_llm), "tools": []},
        "workspace": {"working_dir": str(server.settings.workspace_dir), "kind": "LocalWorkspace"},
        "agent_launch_additions": {"system_message_suffix_append": "DEPLOYED-HERE"},
        "initial_message": message(tag),
        "autotitle": False,
    }
    info = await create(server, body)
    assert info["launched_agent_profile"] is None
    await wait_status(server, info["id"], "finished")
    system = str(fake_llm.requests[0].messages[0])
    assert "DEPLOYED-HERE" in system
    assert "REMEMBERED-FACT" in system


async def test_the_python_client_launches_a_saved_profile(sdk: SdkSession) -> None:
    """`RemoteConversation.create` with the SDK's own `StartConversationRequest` naming a
    saved `agent_profile_id`: the run uses the profile's LLM and tools on the server."""
    profile_id = await save_profiles(sdk.server, sdk.fake_llm, tools=[{"name": "terminal"}])
    steps = [tool_call("terminal", {"command": "echo from-the-profile"}), finish("done")]
    tag = sdk.fake_llm.script("python-client", steps)
    request = StartConversationRequest(
        agent_profile_id=uuid.UUID(profile_id),
        workspace=LocalWorkspace(working_dir=str(sdk.workspace_dir)),
    )
    frames = Frames(trio.lowlevel.current_trio_token())
    workspace = sdk.workspace()
    conversation = await call(
        RemoteConversation.create, workspace, request, callbacks=[frames], visualizer=None
    )
    sdk.clients.append(Client(conversation, workspace, frames))
    await call(conversation.send_message, f"run it {tag}")
    await call(conversation.run)
    assert conversation.state.execution_status == Status.FINISHED
    observations = [e for e in conversation.state.events if isinstance(e, ObservationEvent)]
    assert "from-the-profile" in observations[0].observation.model_dump_json()
    agent_steps = [r.model for r in sdk.fake_llm.requests if r.step is not None]
    assert agent_steps == ["fake-coder", "fake-coder"]
