"""The server-held configuration over HTTP, as the web UI and the official clients use it:
`/api/settings` (diffs, secrets shown as asked, the SDK's schemas), the custom secrets,
a restart, concurrent PATCHes, and `RemoteWorkspace.get_llm()` / `get_secrets()`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
from openhands.sdk.utils.cipher import Cipher
from openhands.sdk.workspace import RemoteWorkspace

from tests import stored
from tests.conftest import LiveServer, llm_settings, start_server, test_settings
from trio_openhands.testing.fake_llm import FakeLLM

if TYPE_CHECKING:
    from pathlib import Path

KEY = "sk-plain-SETTINGS-key"
SECRET = "ghp-plain-SECRET-value"
PLAIN = {"X-Expose-Secrets": "plaintext"}
ENCRYPTED = {"X-Expose-Secrets": "encrypted"}


async def patch(server: LiveServer, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await server.client.patch("/api/settings", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def settings(server: LiveServer, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await server.client.get("/api/settings", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


async def stored_text(server: LiveServer) -> str:
    """Everything the server keeps, as one text (the secret key file aside)."""
    return await trio.to_thread.run_sync(stored.everything, server.settings)


async def test_the_ui_flow_of_settings_and_how_secrets_are_shown(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    fresh = await settings(server)
    assert fresh["agent_settings"]["schema_version"] == 9
    assert fresh["llm_api_key_is_set"] is False
    assert fresh["misc_settings"] == {}
    assert fresh["active_profile"] is None
    await patch(server, {"agent_settings_diff": {"agent_kind": "openhands"}})
    llm = llm_settings(fake_llm, api_key=KEY)
    answer = await patch(server, {"agent_settings_diff": {"llm": llm}})
    assert answer["agent_settings"]["llm"]["api_key"] == "**********"  # never shown back
    assert answer["agent_settings"]["llm"]["base_url"] == fake_llm.base_url

    redacted = await settings(server)
    assert redacted["llm_api_key_is_set"] is True
    assert redacted["agent_settings"]["llm"]["api_key"] == "**********"
    token = (await settings(server, ENCRYPTED))["agent_settings"]["llm"]["api_key"]
    decrypted = Cipher(secret_key="test-secret").decrypt(token)
    assert decrypted is not None
    assert decrypted.get_secret_value() == KEY
    assert (await settings(server, PLAIN))["agent_settings"]["llm"]["api_key"] == KEY
    # The UI sends the token back in a later diff: it is the same key, not a new one.
    await patch(server, {"agent_settings_diff": {"llm": {"api_key": token, "temperature": 0.5}}})
    back = (await settings(server, PLAIN))["agent_settings"]["llm"]
    assert (back["api_key"], back["temperature"]) == (KEY, 0.5)
    bad = await server.client.get("/api/settings", headers={"X-Expose-Secrets": "everything"})
    assert bad.status_code == 400

    # misc_settings are the UI's own: deep-merged, a null inside a map deletes its entry.
    await patch(server, {"misc_settings_diff": {"ui": {"theme": "dark", "lang": "en"}}})
    after = await patch(server, {"misc_settings_diff": {"ui": {"lang": None}, "n": [1, 2]}})
    assert after["misc_settings"] == {"ui": {"theme": "dark"}, "n": [1, 2]}
    conv = await patch(server, {"conversation_settings_diff": {"max_iterations": 42}})
    assert conv["conversation_settings"]["max_iterations"] == 42

    schema = (await server.client.get("/api/settings/agent-schema")).json()
    assert schema["model_name"] == "AgentSettings"
    assert "llm" in {section["key"] for section in schema["sections"]}
    conversation_schema = (await server.client.get("/api/settings/conversation-schema")).json()
    assert conversation_schema["model_name"] == "ConversationSettings"

    assert KEY not in await stored_text(server)
    at_rest = await trio.to_thread.run_sync(stored.document, server.settings, "settings.json")
    assert "gAAAAA" in at_rest


async def test_bad_settings_are_a_422_naming_the_field(server: LiveServer) -> None:
    cases: list[tuple[dict[str, Any], int, list[Any] | None]] = [
        ({"agent_settings_diff": {"llm": {"temperature": "hot"}}}, 422, ["llm", "temperature"]),
        ({"agent_settings_diff": {"agent_kind": "robot"}}, 422, []),
        ({"conversation_settings_diff": {"max_iterations": "x"}}, 422, ["max_iterations"]),
        ({"active_profile": "../x"}, 422, None),
        ({}, 400, None),
        ({"active_profile": "nobody"}, 404, None),
        ({"active_agent_profile_id": "0b6a7f2e-1c0e-4f7a-9d55-7f0e6c1f9c11"}, 404, None),
    ]
    for body, status, field in cases:
        response = await server.client.patch("/api/settings", json=body)
        assert response.status_code == status, (body, response.text)
        if field is not None:
            loc = response.json()["detail"][0]["loc"]
            assert loc == ["body", next(iter(body)), *field], (body, loc)
    # Nothing was changed by the refused requests.
    assert (await settings(server))["conversation_settings"]["max_iterations"] == 500


async def test_settings_and_secrets_survive_a_restart(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    first = await start_server(nursery, test_settings(tmp_path))
    await patch(first, {"agent_settings_diff": {"llm": llm_settings(fake_llm, api_key=KEY)}})
    await patch(first, {"misc_settings_diff": {"kept": True}})
    put = await first.client.put("/api/settings/secrets", json={"name": "GH", "value": SECRET})
    assert put.status_code == 200
    await first.aclose()

    second = await start_server(nursery, test_settings(tmp_path))
    try:
        kept = await settings(second, PLAIN)
        assert kept["agent_settings"]["llm"]["api_key"] == KEY
        assert kept["misc_settings"] == {"kept": True}
        assert (await second.client.get("/api/settings/secrets/GH")).text == SECRET
    finally:
        await second.aclose()
    text = await trio.to_thread.run_sync(stored.everything, second.settings)
    assert KEY not in text
    assert SECRET not in text


async def test_concurrent_patches_never_lose_one(server: LiveServer) -> None:
    async def set_one(index: int) -> None:
        await patch(server, {"misc_settings_diff": {f"k{index}": index}})

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(set_one, index)
    assert (await settings(server))["misc_settings"] == {f"k{i}": i for i in range(20)}


async def test_secrets_are_listed_without_values_and_kept_encrypted(server: LiveServer) -> None:
    client = server.client
    body = {"name": "GITHUB_TOKEN", "value": SECRET, "description": "for git"}
    put = await client.put("/api/settings/secrets", json=body)
    assert put.json() == {"name": "GITHUB_TOKEN", "description": "for git"}
    replaced = await client.put("/api/settings/secrets", json={**body, "description": "new"})
    assert replaced.status_code == 200
    listing = await client.get("/api/settings/secrets")
    assert listing.json() == {"secrets": [{"name": "GITHUB_TOKEN", "description": "new"}]}
    value = await client.get("/api/settings/secrets/GITHUB_TOKEN")
    assert (value.text, value.headers["content-type"]) == (SECRET, "text/plain; charset=utf-8")
    assert SECRET not in await stored_text(server)

    for bad, field in (({**body, "name": "9lives"}, "name"), ({**body, "value": " "}, "value")):
        refused = await client.put("/api/settings/secrets", json=bad)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", field]
    assert (await client.get("/api/settings/secrets/bad-name")).status_code == 422
    assert (await client.get("/api/settings/secrets/MISSING")).status_code == 404
    deleted = await client.delete("/api/settings/secrets/GITHUB_TOKEN")
    assert deleted.json() == {"deleted": True}
    assert (await client.delete("/api/settings/secrets/GITHUB_TOKEN")).status_code == 404
    assert (await client.get("/api/settings/secrets")).json() == {"secrets": []}


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@pytest.mark.slow
async def test_remote_workspace_reads_the_llm_and_the_secrets_saved(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    await patch(server, {"agent_settings_diff": {"llm": llm_settings(fake_llm, api_key=KEY)}})
    await server.client.put("/api/settings/secrets", json={"name": "GH", "value": SECRET})
    workspace = RemoteWorkspace(host=server.url, working_dir=str(server.settings.workspace_dir))
    with workspace:
        llm = await call(workspace.get_llm)
        assert (llm.model, llm.base_url) == ("openai/fake", fake_llm.base_url)
        assert llm.api_key is not None
        assert llm.api_key.get_secret_value() == KEY

        profile = {"llm": llm_settings(fake_llm, api_key="sk-profile", model="openai/other")}
        assert (await server.client.post("/api/profiles/fast", json=profile)).status_code == 201
        named = await call(workspace.get_llm, profile_name="fast")
        assert named.model == "openai/other"
        assert named.api_key.get_secret_value() == "sk-profile"
        assert (await server.client.post("/api/profiles/fast/activate")).status_code == 200
        active = await call(workspace.get_llm)  # the active profile now
        assert active.model == "openai/other"
        with pytest.raises(FileNotFoundError):
            await call(workspace.get_llm, profile_name="missing")

        secrets = await call(workspace.get_secrets)
        assert list(secrets) == ["GH"]
        assert await call(secrets["GH"].get_value) == SECRET  # what a conversation resolves
