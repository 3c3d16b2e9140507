"""The reference server's MCP routes: one named server of the settings' `mcp_config` created,
patched or removed (`/api/settings/mcp/{settings_key}`, through api/settings.py's store, so
secrets are encrypted at rest as every setting), and a candidate server tried before it is
saved (`POST /api/mcp/test`: connect, list its tools, optionally call one).

The test runs the SDK's own MCP client in a worker thread (it drives its own event loop),
bounded by the request's `timeout`; a server that fails is an answer (`ok: false`), not an
error, as in the reference. The OAuth install flow (`/api/mcp/oauth/...`) is not served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import trio
from pydantic import BaseModel, Field, ValidationError, model_validator
from quart import Blueprint, Response

from trio_openhands.core import agent_settings
from trio_openhands.core.errors import Conflict, NotFound, ValidationFailed
from trio_openhands.core.validation import errors_from, load_json
from trio_openhands.web.api.settings import store, update_settings
from trio_openhands.web.api.settings_models import SettingsBody
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

if TYPE_CHECKING:
    from openhands.sdk.mcp.config import MCPServer

    from trio_openhands.stores.settings_store import ServerSettings

blueprint = Blueprint("api_mcp", __name__)

MCP_PATH = "/api/settings/mcp/<settings_key>"


# -- one named server of the settings ------------------------------------------------------


async def _server_body(model_path: str, name: str) -> dict[str, Any]:
    """The body validated by the SDK's model `model_path`.`name`, as a merge patch."""
    from quart import request

    raw = await request.get_data(as_text=False)
    if not raw.strip():
        raise ValidationFailed.single(("body",), "Field required", "missing")
    data = load_json(raw)
    await app().sdk_loader.wait_ready()
    import importlib

    model = getattr(importlib.import_module(model_path), name)
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, ("body",))) from None
    context = {"expose_secrets": "plaintext"}
    if name == "MCPServer":
        return parsed.model_dump(
            mode="python", context=context, exclude_none=True, exclude_defaults=True
        )
    return parsed.model_dump(mode="python", context=context, exclude_unset=True)


def _key(raw: str) -> str:
    if not raw.strip() or len(raw) > 256:
        message = "An MCP server name is 1 to 256 characters, not only spaces"
        raise ValidationFailed.single(("path", "settings_key"), message)
    return raw


async def _change_server(key: str, server: dict[str, Any] | None, exists: bool) -> Response:
    """Merge `{key: server}` into `mcp_config` (None removes it), if `key` is there
    (`exists`) or not; answers the settings, secrets redacted."""
    cipher = await store().cipher()

    def change(current: ServerSettings) -> tuple[ServerSettings, ServerSettings]:
        present = key in current.agent_settings.mcp_config
        if present and not exists:
            raise Conflict(f"MCP server '{key}' already exists")
        if exists and not present:
            raise NotFound(f"MCP server '{key}' was not found")
        diff = {"agent_settings_diff": {"mcp_config": {key: server}}}
        new = agent_settings.apply_patch(current, diff, cipher, None)
        return new, new

    new = await update_settings(change)
    return json_response(
        agent_settings.settings_response(new, None, cipher), status=200 if exists else 201
    )


@blueprint.post(MCP_PATH)
@responses({201: SettingsBody}, *BODY, 409)
async def create_mcp_server(settings_key: str) -> Response:
    """Add a named MCP server (the SDK's `MCPServer`); a name already there is a 409."""
    key = _key(settings_key)
    server = await _server_body("openhands.sdk.mcp.config", "MCPServer")
    return await _change_server(key, server, exists=False)


@blueprint.patch(MCP_PATH)
@responses(SettingsBody, *BODY, 404, 409)
async def patch_mcp_server(settings_key: str) -> Response:
    """Merge a sparse patch (null removes a field) into a named MCP server."""
    key = _key(settings_key)
    patch = await _server_body("openhands.sdk.settings.api_models", "MCPServerPatch")
    return await _change_server(key, patch, exists=True)


@blueprint.delete(MCP_PATH)
@responses(SettingsBody, 404, 409, 422)
async def delete_mcp_server(settings_key: str) -> Response:
    """Remove a named MCP server, its siblings untouched."""
    await app().sdk_loader.wait_ready()
    return await _change_server(_key(settings_key), None, exists=True)


# -- trying a server -----------------------------------------------------------------------


class StdioServer(BaseModel):
    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class RemoteServer(BaseModel):
    type: Literal["http", "shttp", "streamable-http", "sse"]
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: dict[str, Any] | None = None
    timeout: float | None = None
    sse_read_timeout: float | None = None
    keep_alive: bool | None = None


class ToolCall(BaseModel):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class McpTestRequest(BaseModel):
    """A server as the reference's `type` spec, or as the SDK's (`transport`)."""

    name: str = Field(default="test-server", min_length=1, max_length=128)
    server: StdioServer | RemoteServer = Field(discriminator="type")
    timeout: float = Field(default=15.0, gt=0, le=120)
    tool_call: ToolCall | None = None

    @model_validator(mode="before")
    @classmethod
    def _sdk_shape(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("server"), dict):  # pyright: ignore[reportUnknownMemberType]
            return value
        server: dict[str, Any] = dict(value["server"])  # pyright: ignore[reportUnknownArgumentType]
        if "type" not in server:
            transport = server.pop("transport", None)
            server["type"] = transport or ("stdio" if "command" in server else "http")
        return {**value, "server": server}  # pyright: ignore[reportUnknownVariableType]

    def sdk_server(self) -> dict[str, Any]:
        data = self.server.model_dump(exclude_none=True)
        kind = data.pop("type")
        data["transport"] = "http" if kind == "shttp" else kind
        return data


class ToolResult(BaseModel):
    is_error: bool
    text: str


class McpTestAnswer(BaseModel):
    """`ok: true` with the server's tools (and the tool call's result), or `ok: false`
    with why: a failing server is an answer, not an error."""

    ok: bool
    tools: list[str] | None = None
    tool_result: ToolResult | None = None
    error: str | None = None
    error_kind: Literal["timeout", "connection", "unknown"] | None = None


def _probe(body: McpTestRequest, server: MCPServer) -> dict[str, Any]:
    """Blocking: connect, list, call; the SDK's client closes its process on exit."""
    from openhands.sdk.mcp.exceptions import MCPError, MCPTimeoutError
    from openhands.sdk.mcp.utils import create_mcp_tools

    try:
        with create_mcp_tools({body.name: server}, timeout=body.timeout) as client:
            tools = [tool.name for tool in client.tools]
            answer: dict[str, Any] = {"ok": True, "tools": tools}
            if body.tool_call is not None:
                answer["tool_result"] = _call(client, body.tool_call, tools, body.timeout)
            return answer
    except MCPTimeoutError as error:
        return {"ok": False, "error": str(error), "error_kind": "timeout"}
    except MCPError as error:
        cause = error.__cause__ or error.__context__
        detail = str(cause) if cause else str(error) or "Failed to connect to the MCP server"
        return {"ok": False, "error": detail, "error_kind": "connection"}
    except Exception as error:  # anything else the client raised: still an answer
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return {"ok": False, "error": detail, "error_kind": "unknown"}


def _call(client: Any, call: ToolCall, tools: list[str], timeout: float) -> dict[str, Any]:
    """The tool's result as data (`call_tool_mcp` does not raise on `isError`)."""
    if call.name not in tools:
        listed = ", ".join(tools) or "none"
        return {"is_error": True, "text": f"Tool {call.name!r} is not offered ({listed})"}
    try:
        result = client.call_async_from_sync(
            client.call_tool_mcp, name=call.name, arguments=call.arguments, timeout=timeout
        )
    except TimeoutError:
        return {"is_error": True, "text": f"Tool {call.name!r} took more than {timeout} s"}
    text = "\n".join(getattr(block, "text", "") for block in result.content if block.type == "text")
    return {"is_error": bool(result.isError), "text": text}


@blueprint.post("/api/mcp/test")
@responses(McpTestAnswer, *BODY)
async def test_mcp_server() -> Response:
    """Connect to a candidate MCP server and list its tools, saving nothing; encrypted
    `env`/`headers` values (from the settings) are decrypted first."""
    body = await parse_body(McpTestRequest)
    await app().sdk_loader.wait_ready()
    cipher = await store().cipher()

    def resolve() -> MCPServer:
        from openhands.sdk.mcp.config import MCPServer

        return MCPServer.model_validate(body.sdk_server()).with_decrypted_secrets(cipher=cipher)

    try:
        server = await trio.to_thread.run_sync(resolve)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, ("body", "server"))) from None
    answer = await trio.to_thread.run_sync(_probe, body, server)
    return json_response({k: v for k, v in answer.items() if v is not None})
