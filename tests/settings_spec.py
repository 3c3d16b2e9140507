"""Requests that reach every settings, secrets, profile and LLM-catalog operation, for
tests/test_openapi.py's check that real answers match the spec (kept here, beside
tests/test_settings_api.py, so that the spec test only calls it)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    Call = Callable[..., Awaitable[httpx.Response]]


async def reach_settings_operations(call: Call, llm: dict[str, Any]) -> None:
    """`llm`: LLM settings of the scripted LLM."""
    plain = {"X-Expose-Secrets": "plaintext"}
    await call("get", "/api/settings", 200)
    await call("get", "/api/settings", 400, headers={"X-Expose-Secrets": "all"})
    await call("patch", "/api/settings", 200, json={"agent_settings_diff": {"llm": llm}})
    await call("patch", "/api/settings", 400, json={})
    await call("patch", "/api/settings", 404, json={"active_profile": "missing"})
    await call("patch", "/api/settings", 422, json={"agent_settings_diff": {"llm": {"model": 1}}})
    await call("get", "/api/settings/agent-schema", 200)
    await call("get", "/api/settings/conversation-schema", 200)

    secret = {"name": "SPEC_TOKEN", "value": "v", "description": "d"}
    await call("put", "/api/settings/secrets", 200, json=secret)
    await call("put", "/api/settings/secrets", 422, json={**secret, "name": "1x"})
    await call("get", "/api/settings/secrets", 200)
    await call("get", "/api/settings/secrets", 404, params={"agent_profile_id": "nope"})
    await call("get", "/api/settings/secrets", 422, params={"other": "x"})
    one = "/api/settings/secrets/{name}"
    await call("get", one, 200, {"name": "SPEC_TOKEN"})
    await call("get", one, 404, {"name": "MISSING"})
    await call("get", one, 422, {"name": "1x"})
    await call("delete", one, 200, {"name": "SPEC_TOKEN"})
    await call("delete", one, 404, {"name": "SPEC_TOKEN"})
    await call("delete", one, 422, {"name": "1x"})

    profile = "/api/profiles/{name}"
    spec = {"name": "spec"}
    await call("post", profile, 201, spec, json={"llm": llm})
    await call("post", profile, 422, spec, json={"llm": {"model": 1}})
    await call("get", "/api/profiles", 200)
    await call("get", profile, 200, spec, headers=plain)
    await call("get", profile, 404, {"name": "missing"})
    await call("get", profile, 422, {"name": ".hidden"})
    await call("get", profile, 400, spec, headers={"X-Expose-Secrets": "all"})
    validate = profile + "/validate"
    await call("post", validate, 200, spec, json={"llm": llm})
    await call("post", validate, 422, spec, json={})
    await call("post", profile + "/activate", 200, spec)
    await call("post", profile + "/activate", 404, {"name": "missing"})
    await call("post", profile + "/activate", 422, {"name": ".x"})
    rename = profile + "/rename"
    await call("post", rename, 200, spec, json={"new_name": "spec2"})
    await call("post", rename, 404, spec, json={"new_name": "spec3"})
    await call("post", rename, 422, spec, json={"new_name": "/"})
    await call("post", profile, 201, spec, json={"llm": llm})
    await call("post", rename, 409, spec, json={"new_name": "spec2"})
    await call("delete", profile, 200, spec)
    await call("delete", profile, 422, {"name": ".x"})

    agents = (await call("get", "/api/agent-profiles", 200)).json()
    agent = "/api/agent-profiles/{name}"
    await call("get", agent, 200, {"name": "default"})
    await call("get", agent, 404, {"name": "missing"})
    await call("get", agent, 422, {"name": ".x"})
    body = {"agent_kind": "openhands", "llm_profile_ref": "spec2"}
    await call("post", agent, 201, {"name": "other"}, json=body)
    await call("post", agent, 422, {"name": "other"}, json={"agent_kind": "nope"})
    # An agent profile refers to the LLM profile: deleting that one is refused.
    await call("delete", profile, 409, {"name": "spec2"})
    arename = agent + "/rename"
    await call("post", arename, 200, {"name": "other"}, json={"new_name": "other2"})
    await call("post", arename, 404, {"name": "other"}, json={"new_name": "other3"})
    await call("post", arename, 409, {"name": "other2"}, json={"new_name": "default"})
    await call("post", arename, 422, {"name": "other2"}, json={})
    activate = "/api/agent-profiles/{profile_id}/activate"
    await call("post", activate, 200, {"profile_id": agents["active_agent_profile_id"]})
    await call("post", activate, 404, {"profile_id": str(uuid.uuid4())})
    await call("post", activate, 422, {"profile_id": "x" * 129})
    materialize = agent + "/materialize"
    await call("post", materialize, 200, {"name": "other2"})
    await call("post", materialize, 200, {"name": "draft"}, json={"profile": body})
    await call("post", materialize, 404, {"name": "missing"})
    await call("post", materialize, 422, {"name": "draft"}, json={"profile": {"agent_kind": 1}})
    await call("delete", agent, 200, {"name": "other2"})
    await call("delete", agent, 422, {"name": ".x"})

    meta = "/api/meta-profiles/{name}"
    router = {"classifier_model": "spec2", "classes": [{"description": "all", "model": "spec2"}]}
    await call("post", meta, 201, {"name": "route"}, json=router)
    await call("post", meta, 422, {"name": "route"}, json={"classifier_model": "spec2"})
    await call("get", "/api/meta-profiles", 200)
    await call("get", meta, 200, {"name": "route"})
    await call("get", meta, 404, {"name": "missing"})
    await call("get", meta, 422, {"name": ".x"})
    await call("post", meta + "/activate", 200, {"name": "route"})
    await call("post", meta + "/activate", 404, {"name": "missing"})
    await call("post", meta + "/activate", 422, {"name": ".x"})
    await call("patch", "/api/settings", 404, json={"active_meta_profile": "missing"})
    await call("delete", meta, 200, {"name": "route"})
    await call("delete", meta, 422, {"name": ".x"})

    await call("get", "/api/llm/providers", 200)
    await call("get", "/api/llm/models", 200, params={"provider": "openai"})
    await call("get", "/api/llm/models", 422, params={"vendor": "openai"})
    await call("get", "/api/llm/models/verified", 200)
