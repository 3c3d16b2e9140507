"""LLM profiles, agent profiles and the LLM catalog over HTTP, in the reference's shapes:
keys encrypted at rest and never in a listing, activation applied to the settings, renames
followed by the pointers, the SDK's reference checks between the two kinds of profile."""

from __future__ import annotations

from typing import Any

from openhands.sdk.llm.llm_profile_store import PROFILE_NAME_PATTERN

from tests.conftest import LiveServer, llm_settings
from trio_openhands.core.agent_settings import PROFILE_NAME
from trio_openhands.testing.fake_llm import FakeLLM

KEY = "sk-plain-PROFILE-key"


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_llm_profiles_from_save_to_delete(server: LiveServer, fake_llm: FakeLLM) -> None:
    client = server.client
    llm = llm_settings(fake_llm, api_key=KEY)
    saved = await ok(await client.post("/api/profiles/fast", json={"llm": llm}), 201)
    assert saved == {"name": "fast", "message": "Profile 'fast' saved"}
    keyless = {"llm": llm, "include_secrets": False}
    await ok(await client.post("/api/profiles/nokey", json=keyless), 201)
    listing = await ok(await client.get("/api/profiles"))
    assert listing["active_profile"] is None
    by_name = {p["name"]: p for p in listing["profiles"]}
    assert (by_name["fast"]["api_key_set"], by_name["nokey"]["api_key_set"]) == (True, False)
    assert by_name["fast"]["model"] == "openai/fake"
    assert KEY not in str(listing)

    shown = await ok(await client.get("/api/profiles/fast"))
    assert (shown["config"]["api_key"], shown["api_key_set"]) == (None, True)
    plain = {"X-Expose-Secrets": "plaintext"}
    exposed = await ok(await client.get("/api/profiles/fast", headers=plain))
    assert exposed["config"]["api_key"] == KEY
    stored = (server.settings.conversations_dir / ".profiles" / "llm" / "fast.json").read_text()
    assert KEY not in stored
    assert "gAAAAA" in stored

    activated = await ok(await client.post("/api/profiles/fast/activate"))
    assert activated["llm_applied"] is True
    current = await ok(await client.get("/api/settings", headers=plain))
    assert (current["active_profile"], current["agent_settings"]["llm"]["api_key"]) == ("fast", KEY)
    renamed = await ok(await client.post("/api/profiles/fast/rename", json={"new_name": "quick"}))
    assert renamed["name"] == "quick"
    assert (await ok(await client.get("/api/settings")))["active_profile"] == "quick"
    taken = await client.post("/api/profiles/quick/rename", json={"new_name": "nokey"})
    assert taken.status_code == 409
    gone = await client.post("/api/profiles/fast/rename", json={"new_name": "x"})
    assert gone.status_code == 404

    await ok(await client.delete("/api/profiles/quick"))
    assert (await ok(await client.get("/api/settings")))["active_profile"] is None
    await ok(await client.delete("/api/profiles/quick"))  # idempotent, as the reference
    assert (await client.get("/api/profiles/quick")).status_code == 404
    assert (await client.post("/api/profiles/quick/activate")).status_code == 404
    bad = await client.get("/api/profiles/.hidden")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "name"]
    hot = {"model": "openai/fake", "temperature": "hot"}
    bad_llm = await client.post("/api/profiles/x", json={"llm": hot})
    assert bad_llm.json()["detail"][0]["loc"] == ["body", "llm", "temperature"]


async def test_validate_makes_one_call_and_reports_the_failure(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    good = {"llm": llm_settings(fake_llm)}
    assert await ok(await server.client.post("/api/profiles/p/validate", json=good)) == {
        "valid": True,
        "error": None,
    }
    unreachable = {"llm": llm_settings(fake_llm, base_url="http://127.0.0.1:9/v1")}
    result = await ok(await server.client.post("/api/profiles/p/validate", json=unreachable))
    assert result["valid"] is False
    assert result["error"]["type"]
    assert (await server.client.get("/api/profiles/p")).status_code == 404  # nothing saved


async def test_agent_profiles_seed_default_and_keep_their_id(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    client = server.client
    await ok(await client.post("/api/profiles/fast", json={"llm": llm_settings(fake_llm)}), 201)
    listing = await ok(await client.get("/api/agent-profiles"))
    [seeded] = listing["profiles"]
    assert seeded["name"] == "default"
    assert listing["active_agent_profile_id"] == seeded["id"]

    body = {"agent_kind": "openhands", "llm_profile_ref": "fast"}
    await ok(await client.post("/api/agent-profiles/coder", json=body), 201)
    coder = (await ok(await client.get("/api/agent-profiles/coder")))["profile"]
    assert (coder["name"], coder["llm_profile_ref"]) == ("coder", "fast")
    referenced = await client.delete("/api/profiles/fast")
    assert referenced.status_code == 409  # an agent profile still refers to it

    await ok(await client.post(f"/api/agent-profiles/{coder['id']}/activate"))
    renamed = await client.post("/api/agent-profiles/coder/rename", json={"new_name": "dev"})
    assert (await ok(renamed))["name"] == "dev"
    after = await ok(await client.get("/api/agent-profiles"))
    assert after["active_agent_profile_id"] == coder["id"]  # the id survives the rename
    # The LLM profile's rename follows into the agent profile that refers to it.
    await ok(await client.post("/api/profiles/fast/rename", json={"new_name": "swift"}))
    dev = (await ok(await client.get("/api/agent-profiles/dev")))["profile"]
    assert dev["llm_profile_ref"] == "swift"

    await ok(await client.delete("/api/agent-profiles/dev"))
    final = await ok(await client.get("/api/agent-profiles"))
    assert final["active_agent_profile_id"] == seeded["id"]  # back on default
    assert (await client.get("/api/agent-profiles/dev")).status_code == 404
    unknown = "0b6a7f2e-1c0e-4f7a-9d55-7f0e6c1f9c11"
    assert (await client.post(f"/api/agent-profiles/{unknown}/activate")).status_code == 404
    invalid = await client.post("/api/agent-profiles/x", json={"agent_kind": "robot"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"][0] == "body"
    assert (await client.post("/api/agent-profiles/x", json=[])).status_code == 422


async def test_the_llm_catalog_comes_from_litellm_and_the_sdk(server: LiveServer) -> None:
    providers = (await ok(await server.client.get("/api/llm/providers")))["providers"]
    assert {"openai", "anthropic"} <= set(providers)
    assert providers == sorted(providers)
    everything = (await ok(await server.client.get("/api/llm/models")))["models"]
    openai = await ok(await server.client.get("/api/llm/models", params={"provider": "openai"}))
    assert openai["models"]
    assert set(openai["models"]) <= set(everything)
    none = await ok(await server.client.get("/api/llm/models", params={"provider": "nobody"}))
    assert none == {"models": []}
    verified = (await ok(await server.client.get("/api/llm/models/verified")))["models"]
    assert verified["openhands"]
    assert all(isinstance(v, list) for v in verified.values())
    assert set(verified["openai"]) <= set(openai["models"])  # each verified one is offered


async def test_materialize_previews_a_launch_without_starting_one(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """`POST /api/agent-profiles/{name}/materialize` (the TypeScript client's
    `materializeAgentProfile`): the SDK's dry run of a launch, a stored profile or a draft."""
    client = server.client
    llm = llm_settings(fake_llm, api_key=KEY)
    await ok(await client.post("/api/profiles/fast", json={"llm": llm}), 201)
    coder = {"agent_kind": "openhands", "llm_profile_ref": "fast", "mcp_server_refs": ["nope"]}
    await ok(await client.post("/api/agent-profiles/coder", json=coder), 201)

    report = await ok(await client.post("/api/agent-profiles/coder/materialize"))
    assert (report["valid"], report["llm_profile_resolved"]) == (False, True)
    assert report["dangling_mcp_server_refs"] == ["nope"]
    assert report["llm_api_key_set"] is True
    assert KEY not in str(report)

    tools = [{"name": "terminal"}, {"name": "browser_tool_set"}]
    draft = {"agent_kind": "openhands", "llm_profile_ref": "fast", "tools": tools}
    report = await ok(
        await client.post("/api/agent-profiles/draft/materialize", json={"profile": draft})
    )
    assert (report["valid"], report["errors"]) == (True, [])
    assert report["unusable_tools"] == ["browser_tool_set"]  # left out here, not an error
    resolved = report["resolved_settings"]
    assert resolved["llm"]["model"] == "openai/fake"
    assert resolved["llm"]["api_key"] == "**********"
    assert [tool["name"] for tool in resolved["tools"]] == ["terminal"]
    assert (await client.get("/api/agent-profiles/draft")).status_code == 404  # not saved

    dangling = {"profile": {"agent_kind": "openhands", "llm_profile_ref": "missing"}}
    report = await ok(await client.post("/api/agent-profiles/x/materialize", json=dangling))
    assert report["valid"] is False
    assert any("missing" in error for error in report["errors"])

    assert (await client.post("/api/agent-profiles/missing/materialize")).status_code == 404
    for body, loc in (
        ({"profile": {"agent_kind": "nope"}}, ["body", "profile"]),
        ({"other": 1}, ["body", "other"]),
        ([], ["body"]),
    ):
        answer = await client.post("/api/agent-profiles/coder/materialize", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == loc


def test_profile_names_follow_the_sdks_rule() -> None:
    """Names are checked without the SDK (a request can come while it loads), by its rule."""
    assert PROFILE_NAME == PROFILE_NAME_PATTERN
