"""Meta-profiles (`/api/meta-profiles...`, the TypeScript client's `MetaProfilesClient`) and
the `active_meta_profile` pointer they set in the settings, as the web UI uses them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.conftest import llm_settings, start_server, test_settings, wait_status
from tests.test_create_fields import agent_texts, create, message, ui_request
from tests.test_settings_api import patch, settings
from trio_openhands.testing.fake_llm import text, tool_call

if TYPE_CHECKING:
    from pathlib import Path

    import trio

    from tests.conftest import LiveServer
    from trio_openhands.testing.fake_llm import FakeLLM

ROUTER = {
    "classifier_model": "fast",
    "classes": [
        {"description": "the task needs images", "model": "vision"},
        {"description": "anything else", "model": "coder"},
    ],
}
DIRECT = {
    "classifier_model": "fast",
    "prompt_template": "Pick a model for: {{ instance_text }}\n{{ model_table }}",
    "model_table": "coder: code",
}


async def save(server: LiveServer, name: str, body: Any, status: int = 201) -> dict[str, Any]:
    answer = await server.client.post(f"/api/meta-profiles/{name}", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


async def test_save_list_activate_and_delete(server: LiveServer) -> None:
    listed = (await server.client.get("/api/meta-profiles")).json()
    assert listed == {"meta_profiles": [], "active_meta_profile": None}
    assert (await save(server, "router", ROUTER))["message"] == "Meta-profile 'router' saved"
    await save(server, "direct", DIRECT)

    listed = (await server.client.get("/api/meta-profiles")).json()
    assert listed["meta_profiles"] == [
        {"name": "direct", "classifier_model": "fast", "num_classes": 0},
        {"name": "router", "classifier_model": "fast", "num_classes": 2},
    ]
    shown = (await server.client.get("/api/meta-profiles/router")).json()
    assert shown == {
        "name": "router",
        "config": {**ROUTER, "prompt_template": None, "model_table": None},
    }

    activated = await server.client.post("/api/meta-profiles/router/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["applied"] is True
    current = await settings(server)
    assert current["active_meta_profile"] == "router"
    agent = current["agent_settings"]
    assert agent["active_meta_profile"] == "router"
    assert agent["enable_classify_and_switch_llm_tool"] is True
    assert agent["meta_profile"]["classes"] == ROUTER["classes"]  # the copy agents are built with
    assert (await server.client.get("/api/meta-profiles")).json()["active_meta_profile"] == "router"

    # The settings' pointer: another one set, then cleared.
    pointed = await patch(server, {"active_meta_profile": "direct"})
    assert pointed["active_meta_profile"] == "direct"
    cleared = await patch(server, {"active_meta_profile": None})
    assert cleared["active_meta_profile"] is None
    assert cleared["agent_settings"]["active_meta_profile"] is None
    assert cleared["agent_settings"]["enable_classify_and_switch_llm_tool"] is False
    await patch(server, {"active_meta_profile": "missing"}, status=404)

    # Deleting the active one clears the pointer and the copy; deleting again is no error.
    assert (await server.client.post("/api/meta-profiles/router/activate")).status_code == 200
    deleted = await server.client.delete("/api/meta-profiles/router")
    assert deleted.status_code == 200, deleted.text
    current = await settings(server)
    assert current["active_meta_profile"] is None
    assert current["agent_settings"]["meta_profile"] is None
    assert current["agent_settings"]["enable_classify_and_switch_llm_tool"] is False
    assert (await server.client.delete("/api/meta-profiles/router")).status_code == 200
    assert (await server.client.get("/api/meta-profiles/router")).status_code == 404
    assert (await server.client.post("/api/meta-profiles/router/activate")).status_code == 404
    listed = (await server.client.get("/api/meta-profiles")).json()
    assert [p["name"] for p in listed["meta_profiles"]] == ["direct"]


async def test_bad_meta_profiles_are_a_422_naming_the_field(server: LiveServer) -> None:
    async def loc(name: str, body: Any) -> list[object]:
        answer = await server.client.post(f"/api/meta-profiles/{name}", json=body)
        assert answer.status_code == 422, answer.text
        return answer.json()["detail"][0]["loc"]

    assert await loc(".hidden", ROUTER) == ["path", "name"]
    assert await loc("m", {"classes": []}) == ["body", "classifier_model"]
    assert await loc("m", {**ROUTER, "classes": [{"model": "x"}]}) == [
        *("body", "classes", 0, "description")
    ]
    assert await loc("m", {"classifier_model": "fast"}) == ["body"]  # nothing to route to
    no_slot = {"classifier_model": "fast", "prompt_template": "Pick one."}
    assert await loc("m", no_slot) == ["body"]
    assert await loc("m", {**DIRECT, "classes": ROUTER["classes"]}) == ["body"]  # both modes
    assert await loc("m", []) == ["body"]
    assert (await server.client.get("/api/meta-profiles/.x")).status_code == 422
    assert (await server.client.get("/api/meta-profiles")).json()["meta_profiles"] == []


async def test_at_most_50_meta_profiles(server: LiveServer) -> None:
    for number in range(50):
        await save(server, f"m{number}", ROUTER)
    refused = await save(server, "one-more", ROUTER, status=409)
    assert "limit reached (50)" in refused["detail"]
    await save(server, "m7", DIRECT, status=201)  # overwriting is not a new one


async def test_the_routing_tool_can_be_on_without_an_active_meta_profile(
    server: LiveServer,
) -> None:
    """The SDK then routes with the first saved meta-profile: other changes keep it on."""
    on = await patch(server, {"agent_settings_diff": {"enable_classify_and_switch_llm_tool": True}})
    assert on["agent_settings"]["enable_classify_and_switch_llm_tool"] is True
    kept = await patch(server, {"misc_settings_diff": {"theme": "dark"}})
    assert kept["agent_settings"]["enable_classify_and_switch_llm_tool"] is True
    assert kept["active_meta_profile"] is None


async def test_an_acp_agent_cannot_route(server: LiveServer) -> None:
    await save(server, "router", ROUTER)
    acp = {"agent_kind": "acp", "acp_server": "claude-code"}
    await patch(server, {"agent_settings_diff": acp})
    activated = await server.client.post("/api/meta-profiles/router/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["applied"] is False
    assert (await settings(server))["active_meta_profile"] is None

    # Active on an OpenHands agent, then the agent becomes ACP: the pointer goes.
    await patch(server, {"agent_settings_diff": {"agent_kind": "openhands"}})
    assert (await server.client.post("/api/meta-profiles/router/activate")).json()["applied"]
    assert (await patch(server, {"agent_settings_diff": acp}))["active_meta_profile"] is None


async def test_the_active_meta_profile_survives_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    first = await start_server(nursery, test_settings(tmp_path))
    await save(first, "router", ROUTER)
    assert (await first.client.post("/api/meta-profiles/router/activate")).status_code == 200
    await first.aclose()

    second = await start_server(nursery, test_settings(tmp_path))
    try:
        current = await settings(second)
        assert current["active_meta_profile"] == "router"
        assert current["agent_settings"]["meta_profile"]["classifier_model"] == "fast"
        shown = (await second.client.get("/api/meta-profiles/router")).json()
        assert shown["config"]["classes"] == ROUTER["classes"]
    finally:
        await second.aclose()


async def test_an_agent_routes_its_task_with_the_active_meta_profile(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """The web UI's flow: LLM profiles and a meta-profile saved, the meta-profile activated,
    a conversation made from the settings; the agent's `route_task_to_model` asks the
    classifier profile's LLM, then goes on with the LLM of the profile the class names."""
    await patch(server, {"agent_settings_diff": {"llm": llm_settings(fake_llm)}})
    for name, model in (("fast", "openai/fake-classifier"), ("coder", "openai/fake-coder")):
        body = {"llm": llm_settings(fake_llm, model=model)}
        saved = await server.client.post(f"/api/profiles/{name}", json=body)
        assert saved.status_code == 201, saved.text
    router = {"classifier_model": "fast", "classes": [{"description": "coding", "model": "coder"}]}
    await save(server, "router", router)
    pointed = await patch(server, {"active_meta_profile": "router"})  # the copy goes in too
    assert pointed["agent_settings"]["meta_profile"]["classes"] == router["classes"]

    fake_llm.default = text("1")  # the classifier's answer: class 1 (it offers no tools)
    tag = fake_llm.script("routed", [tool_call("route_task_to_model", {}), text("done")])
    read = await server.client.get("/api/settings", headers={"X-Expose-Secrets": "encrypted"})
    body = ui_request(
        server,
        read.json()["agent_settings"],
        secrets_encrypted=True,
        autotitle=False,
        initial_message=message(f"Write a parser {tag}"),
    )
    info = await create(server, body)
    assert "ClassifyAndSwitchLLMTool" in {tool["name"] for tool in info["agent"]["tools"]}
    await wait_status(server, info["id"], "finished")

    models = [(r.model, r.step) for r in fake_llm.requests]  # the run is over: all are in
    assert models == [("fake", 0), ("fake-classifier", None), ("fake-coder", 1)]
    classified = fake_llm.requests[1]
    assert not classified.tools
    assert "coding" in str(classified.messages)  # the meta-profile's classes
    assert await agent_texts(server, info["id"]) == ["done"]
