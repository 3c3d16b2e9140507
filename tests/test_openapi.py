"""The app and its /openapi.json agree.

Every operation declares what it answers; real answers of a live server, on every operation
of both dialects (success and error paths), have a declared status, a declared content type
and a body that validates against the declared schema. `make fuzz` explores the same spec
with generated requests; this is the deterministic part that `make test` runs.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from jsonschema import Draft202012Validator

from tests.conftest import (
    STORE_INDEPENDENT,
    LiveServer,
    llm_settings,
    start_server,
    test_settings,
    wait_status,
)
from tests.controls_spec import reach_control_operations
from tests.extras_spec import PATH_IDS, reach_extras_operations
from tests.settings_spec import reach_settings_operations
from tests.workspace_spec import reach_workspace_operations
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


KEY = "openapi-key"
METHODS = ("get", "put", "post", "patch", "delete")


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, path) for path, item in spec["paths"].items() for m in item if m in METHODS}


class SpecClient:
    """Sends a request to an operation of the spec and checks the answer against it."""

    def __init__(self, server: LiveServer, spec: dict[str, Any]) -> None:
        self.server = server
        self.spec = spec
        self.answered: dict[tuple[str, str], set[int]] = {}

    async def __call__(
        self,
        method: str,
        template: str,
        expect: int | set[int],
        path: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        **kw: Any,
    ) -> httpx.Response:
        url = template.format(**(path or {}))
        response = await (client or self.server.client).request(method.upper(), url, **kw)
        expected = expect if isinstance(expect, set) else {expect}
        assert response.status_code in expected, (method, url, response.text)
        self.check(response, method, template)
        return response

    def check(self, response: httpx.Response, method: str, template: str) -> None:
        declared = self.spec["paths"][template][method]["responses"]
        status = str(response.status_code)
        assert status in declared, f"{method.upper()} {template}: {status} is not declared"
        if response.status_code == 204:  # no body, no content type
            assert not response.content
            self.answered.setdefault((method, template), set()).add(204)
            return
        content = declared[status]["content"]
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in content, (method.upper(), template, status, media_type)
        if media_type != "application/json":  # bytes (a file, an archive): a binary schema
            assert content[media_type]["schema"] == {"type": "string", "format": "binary"}
            self.answered.setdefault((method, template), set()).add(response.status_code)
            return
        schema = {**content["application/json"]["schema"], "components": self.spec["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [error.message for error in validator.iter_errors(response.json())]
        assert not errors, (method.upper(), template, status, errors[:3], response.text[:500])
        self.answered.setdefault((method, template), set()).add(response.status_code)


async def spec_of(server: LiveServer) -> dict[str, Any]:
    response = await server.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def text_message(words: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": words}], **extra}


@STORE_INDEPENDENT
async def test_spec_declares_every_answer_of_every_operation(server: LiveServer) -> None:
    spec = await spec_of(server)
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) >= 37  # unique: generated clients need that
    assert not [path for path in spec["paths"] if path != "/" and path.endswith("/")]
    for method, path in operations(spec):
        operation = spec["paths"][path][method]
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), (method, path)
        assert {"421", "431", "500"} <= statuses, (method, path)
        if "requestBody" in operation:
            assert {"408", "413"} <= statuses, (method, path)
        if operation["parameters"] or "requestBody" in operation:
            assert "422" in statuses, (method, path)
        if method != "get":
            assert {"403", "415"} <= statuses, (method, path)
        assert "401" not in statuses  # no key on this server
        assert "security" not in operation
        for status, answer in operation["responses"].items():
            binary = {"type": "string", "format": "binary"}
            if status == "200" and "application/json" not in answer["content"]:
                assert all(item["schema"] == binary for item in answer["content"].values())
            else:
                assert set(answer["content"]) == {"application/json"}
            assert answer["description"]


async def test_real_answers_match_the_spec_on_every_operation(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    spec = await spec_of(server)
    call = SpecClient(server, spec)
    unknown = {"conversation_id": str(uuid.uuid4())}
    malformed = {"conversation_id": "not-a-uuid"}

    await call("get", "/ready", {200, 503})  # 503 while the SDK is still being imported
    for path in ("/alive", "/health", "/", "/server_info"):
        await call("get", path, 200)

    # -- the seed dialect, on a conversation waiting for a confirmation ------------------------
    tag = fake_llm.script("ask", [tool_call("terminal", {"command": "echo hi"}), finish("done")])
    body = {
        "llm": llm_settings(fake_llm),
        "tools": [{"name": "terminal"}],
        "confirmation_mode": True,
        "initial_message": text_message(f"go {tag}"),
    }
    created = await call("post", "/conversations", 201, json=body)
    await call("post", "/conversations", 422, json={"llm": "nope"})
    seed = {"conversation_id": created.json()["id"]}
    await call("get", "/ready", 200)
    await wait_status(server, seed["conversation_id"], "waiting_for_confirmation")
    one = "/conversations/{conversation_id}"
    await call("get", one, 200, seed)
    await call("get", one, 404, unknown)
    await call("get", one, 422, malformed)
    batch = [("ids", seed["conversation_id"]), ("ids", unknown["conversation_id"])]
    await call("get", "/conversations", 200, params=batch)
    await call("get", "/conversations", 422, params={"ids": "x"})
    await call("get", "/conversations/search", 200)
    await call("get", "/conversations/search", 400, params={"page_id": "nope"})
    await call("get", "/conversations/search", 422, params={"limit": 0})
    events = (await call("get", one + "/events/search", 200, seed)).json()["items"]
    await call("get", one + "/events/search", 404, unknown)
    await call("get", one + "/events/search", 400, seed, params={"page_id": "nope"})
    event = {**seed, "event_id": events[-1]["id"]}
    await call("get", one + "/events/{event_id}", 200, event)
    await call("get", one + "/events/{event_id}", 404, {**seed, "event_id": "nope"})
    await call("get", one + "/events", 200, seed, params={"event_ids": [event["event_id"], "x"]})
    await call("get", one + "/events", 422, seed)
    confirm = one + "/events/respond_to_confirmation"
    await call("post", confirm, 200, seed, json={"accept": False})
    await call("post", confirm, 409, seed, json={"accept": False})
    await call("post", confirm, 422, seed, json={"accept": "maybe"})
    await call("post", one + "/events", 200, seed, json=text_message("hi", run=False))
    await call("post", one + "/events", 422, seed, json={"content": []})
    await call("post", one + "/events", 404, unknown, json=text_message("hi"))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as own:  # answered early:
        huge = b"[" * (17 * 1024 * 1024)  # the connection is not reused (issue 12, item 3)
        headers = {"Content-Type": "application/json"}
        await call("post", one + "/events", 413, seed, own, content=huge, headers=headers)
    await call("post", one + "/pause", 200, seed)
    await call("post", one + "/resume", 200, seed)
    await call("post", one + "/resume", 404, unknown)
    await call("delete", one, 200, seed)
    await call("delete", one, 404, seed)

    # -- the /api dialect -----------------------------------------------------------------------
    workspace = {"working_dir": str(server.settings.workspace_dir), "kind": "LocalWorkspace"}
    agent = {"kind": "Agent", "llm": {**llm_settings(fake_llm), "usage_id": "agent"}}
    api_id = str(uuid.uuid4())
    start = {"agent": agent, "workspace": workspace, "conversation_id": api_id}
    await call("post", "/api/conversations", 201, json=start)
    await call("post", "/api/conversations", 200, json=start)
    await call("post", "/api/conversations", 422, json={"workspace": workspace})
    conv = {"conversation_id": api_id}
    one = "/api/conversations/{conversation_id}"
    await call("get", one, 200, conv)
    await call("get", one, 404, unknown)
    await call("get", "/api/conversations", 200, params=[("ids", api_id), ("ids", api_id)])
    await call("get", "/api/conversations", 422)
    await call("get", "/api/conversations/search", 200, params={"include_skills": True})
    await call("get", "/api/conversations/search", 400, params={"page_id": "nope"})
    await call("get", "/api/conversations/count", 200)
    await call("get", "/api/conversations/count", 422, params={"status": "sleepy"})
    await call("patch", one, 200, conv, json={"title": "spec", "tags": {"k": "v"}})
    await call("patch", one, 422, conv, json={"title": ""})
    await call("patch", one, 404, unknown, json={"title": "spec"})
    held = fake_llm.script("held", [text("late", delay=3)])
    await call("post", one + "/events", 200, conv, json=text_message(f"wait {held}"))
    await call("post", one + "/events", 422, conv, json={"role": "user"})
    await call("post", one + "/run", 200, conv)
    await fake_llm.wait_for_request(script="held", step=0)
    await call("post", one + "/run", 409, conv)
    await call("post", one + "/interrupt", 200, conv)
    await call("post", one + "/pause", 200, conv)
    await call("post", one + "/pause", 404, unknown)
    await call("get", one + "/agent_final_response", 200, conv)
    await call("post", one + "/secrets", 200, conv, json={"secrets": {"TOKEN": "s3cret"}})
    await call("post", one + "/secrets", 422, conv, json={"secrets": {"X": {"kind": "Nope"}}})
    policy = {"policy": {"kind": "NeverConfirm"}}
    await call("post", one + "/confirmation_policy", 200, conv, json=policy)
    await call("post", one + "/confirmation_policy", 422, conv, json={"policy": {"kind": "?"}})
    await call("post", one + "/security_analyzer", 200, conv, json={"security_analyzer": None})
    await call("post", one + "/security_analyzer", 404, unknown, json={"security_analyzer": None})
    events = (await call("get", one + "/events/search", 200, conv)).json()["items"]
    await call("get", one + "/events/search", 422, conv, params={"limit": "many"})
    await call("get", one + "/events/count", 200, conv, params={"kind": "MessageEvent"})
    await call("get", one + "/events/count", 404, unknown)
    event = {**conv, "event_id": events[0]["id"]}
    await call("get", one + "/events/{event_id}", 200, event)
    await call("get", one + "/events/{event_id}", 404, {**conv, "event_id": "nope"})
    await call("get", one + "/events", 200, conv, params={"event_ids": event["event_id"]})
    await call("get", one + "/events", 200, conv, json=[event["event_id"], "nope"])
    await call("get", one + "/events", 422, conv, json={"not": "a list"})
    confirm = one + "/events/respond_to_confirmation"
    await call("post", confirm, 200, conv, json={"accept": False})
    await call("post", confirm, 422, conv, json={})
    await reach_workspace_operations(call, server.settings.workspace_dir, api_id)
    scratch, workspace = server.settings.conversations_dir.parent, server.settings.workspace_dir
    await reach_extras_operations(call, scratch, workspace, api_id)
    await reach_settings_operations(call, llm_settings(fake_llm))
    await reach_control_operations(call, api_id, llm_settings(fake_llm), workspace)
    await call("delete", one, 200, conv)
    await call("delete", one, 404, conv)
    await call("delete", one, 422, malformed)

    untested = operations(spec) - set(call.answered)
    assert not untested, f"operations no request here reached: {sorted(untested)}"
    answered = set().union(*call.answered.values())
    assert {200, 201, 400, 404, 409, 413, 422} <= answered


@pytest.fixture
async def keyed_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[LiveServer]:
    live = await start_server(nursery, test_settings(tmp_path, session_api_keys=(KEY,)))
    try:
        yield live
    finally:
        await live.aclose()


async def test_a_keyed_server_declares_its_key_and_every_401(keyed_server: LiveServer) -> None:
    spec = await spec_of(keyed_server)
    assert spec["components"]["securitySchemes"]["SessionKey"]["name"] == "X-Session-API-Key"
    call = SpecClient(keyed_server, spec)
    ids = {"conversation_id": str(uuid.uuid4()), "event_id": "e"}
    ids |= {"trajectory_id": str(uuid.uuid4()), "sha": "abcdef1", "command_id": str(uuid.uuid4())}
    ids |= PATH_IDS
    ids |= {"name": "x", "profile_id": str(uuid.uuid4())}
    for method, path in sorted(operations(spec)):
        operation = spec["paths"][path][method]
        if path in ("/alive", "/health", "/ready", "/", "/server_info"):
            assert "security" not in operation
            assert "401" not in operation["responses"]
            await call(method, path, {200, 503} if path == "/ready" else 200)
            continue
        assert operation["security"] == [{"SessionKey": []}], path
        await call(method, path, 401, ids, headers={"X-Session-API-Key": "wrong"})
