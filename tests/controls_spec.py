"""Requests that reach every conversation-control operation (ask_agent, condense, fork,
navigate, switch_llm, switch_profile, load_plugin, goal, ...) and `/api/hooks`, for
tests/test_openapi.py's check that real answers match the spec."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import httpx

    Call = Callable[..., Awaitable[httpx.Response]]


async def reach_control_operations(
    call: Call, conversation_id: str, llm: dict[str, Any], workspace: Path
) -> None:
    """`conversation_id` is an /api conversation with events, not running; it runs a goal
    loop's messages once this returns."""
    conv = {"conversation_id": conversation_id}
    unknown = {"conversation_id": "00000000-0000-4000-8000-000000000000"}
    one = "/api/conversations/{conversation_id}"
    await call("post", one + "/ask_agent", 200, conv, json={"question": "and now?"})
    await call("post", one + "/ask_agent", 422, conv, json={})
    await call("post", one + "/ask_agent", 404, unknown, json={"question": "?"})
    await call("post", one + "/condense", 409, conv)
    await call("post", one + "/condense", 404, unknown)
    events = (await call("get", one + "/events/search", 200, conv)).json()["items"]
    await call("post", one + "/navigate", 200, conv, json={"event_id": events[-1]["id"]})
    await call("post", one + "/navigate", 404, conv, json={"event_id": "nope"})
    await call("post", one + "/navigate", 422, conv, json={"event_id": 3})
    await call("post", one + "/switch_llm", 200, conv, json={"llm": llm})
    await call("post", one + "/switch_llm", 422, conv, json={"llm": {"model": 3}})
    await call("post", one + "/switch_llm", 404, unknown, json={"llm": llm})
    await call("post", "/api/profiles/{name}", 201, {"name": "switch"}, json={"llm": llm})
    switch = one + "/switch_profile"
    await call("post", switch, 200, conv, json={"profile_name": "switch"})
    await call("post", switch, 404, conv, json={"profile_name": "absent"})
    await call("post", switch, 404, unknown, json={"profile_name": "switch"})
    await call("post", switch, 422, conv, json={})
    await call("post", switch, 422, conv, json={"profile_name": "../up"})
    await call("post", one + "/load_plugin", 400, conv, json={"plugin_ref": "helper"})
    await call("post", one + "/load_plugin", 404, unknown, json={"plugin_ref": "helper"})
    await call("post", one + "/load_plugin", 422, conv, json={"plugin_ref": 3})
    fork = one + "/fork"
    forked = (await call("post", fork, 201, conv, json={"title": "spec fork"})).json()
    await call("post", fork, 201, conv, params={"include_skills": True})  # no body at all
    await call("post", fork, 409, conv, json={"id": forked["id"]})
    await call("post", fork, 404, conv, json={"from_event_id": "nope"})
    await call("post", fork, 404, unknown, json={})
    await call("post", fork, 422, conv, json={"tags": {"Not-Lower": "x"}})
    await call("post", one + "/switch_acp_model", 400, conv, json={"model": "other"})
    await call("post", one + "/switch_acp_model", 422, conv, json={})
    await call("post", one + "/switch_acp_model", 404, unknown, json={"model": "other"})
    await call("get", one + "/runtime", 200, conv)
    await call("get", one + "/runtime", 404, unknown)
    await call("post", one + "/runtime/reprovision", 200, conv)
    await call("post", one + "/runtime/reprovision", 404, unknown)
    hooks = workspace / "hooked" / ".openhands"
    hooks.mkdir(parents=True)
    stop = {"stop": [{"matcher": "*", "hooks": [{"type": "command", "command": "true"}]}]}
    (hooks / "hooks.json").write_text(json.dumps(stop))
    loaded = (await call("post", "/api/hooks", 200, json={"project_dir": "hooked"})).json()
    assert loaded["hook_config"]["stop"][0]["hooks"][0]["command"] == "true"
    await call("post", "/api/hooks", 200)  # no body: no project
    await call("post", "/api/hooks", 422, json={"project_dir": 3})
    goal = one + "/goal"
    await call("post", goal + "/resume", 400, conv)  # no goal yet
    await call("post", goal, 200, conv, json={"objective": "spec goal", "max_iterations": 1})
    await call("post", goal, 409, conv, json={"objective": "another"})
    await call("post", goal + "/resume", 409, conv)
    await call("post", goal + "/stop", 200, conv)
    await call("post", goal, 422, conv, json={})
    await call("post", goal, 404, unknown, json={"objective": "spec goal"})
    await call("post", goal + "/stop", 404, unknown)
    await call("post", goal + "/resume", 404, unknown)
