"""What /openapi.json says each operation answers: success bodies and the JSON errors.

The error shapes (errors.py's) are declared once here; each route names the statuses of its
own with `@responses(...)`, so generated clients and `make fuzz` can check every answer.
`ApiSpec` adds those that security.py and json_errors.py give any operation. SDK events and
states stay free-form objects: only the fields we rely on are fixed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter
from quart_schema import DataSource, document_response
from quart_schema.openapi import OpenAPIProvider

from trio_openhands.web.api.models import ApiExecutionStatus
from trio_openhands.web.security import OPEN_PATHS

if TYPE_CHECKING:
    from werkzeug.routing import BaseConverter, Rule

Status = ApiExecutionStatus  # one list of statuses for the models and the spec

# -- errors --------------------------------------------------------------------------------


class Detail(BaseModel):
    """A plain error: `{"detail": "..."}`."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """The request is invalid: each field at fault, as pydantic reports it."""

    detail: list[FieldError]


class InternalError(BaseModel):
    """An unexpected error; `error_id` finds its traceback in the server log."""

    detail: str
    error_id: str


ERROR_MODELS: dict[int, type[BaseModel]] = {422: ValidationErrors, 500: InternalError}

# Statuses shared by many routes: a body is read (`READS_BODY`: too slow, too large), then
# parsed and validated (`BODY`); an id (`LOADS`) names a conversation loaded from disk on
# first use (503 while shutting down).
READS_BODY = (408, 413)
BODY = (*READS_BODY, 422)
LOADS = (404, 422, 503)
# Statuses of every operation (security.py, json_errors.py, connection.py): a Host this
# server does not answer for, headers too large, an unexpected error; on state-changing
# methods, a browser page of a foreign origin without a key and a body that is not JSON;
# with session keys, a missing or wrong key.
EVERY_OPERATION = (421, 431, 500)
STATE_CHANGING = {"post": (403, 415), "put": (403, 415), "patch": (403, 415), "delete": (403, 415)}
ERROR_DESCRIPTIONS = {
    400: "A request the current state refuses: a query that names nothing (an unknown "
    "`page_id`), a relative path, a directory where a file is needed (or the reverse), a "
    "path outside any git repository, a ref or commit the repository does not have",
    401: "No valid `X-Session-API-Key`",
    403: "A request from a browser page of a foreign origin, without a key; or the file "
    "system refused (permission denied, read-only)",
    404: "No such conversation (or event, file, directory)",
    408: "The body did not arrive within the server's `body_timeout`",
    409: "Not possible in the conversation's current state",
    413: "The body is larger than the server takes (16 MiB; a file upload: `max_upload_bytes`)",
    415: "The body is not `application/json` (nor `multipart/form-data` for an upload)",
    421: "`Host` is not a name this server answers for",
    431: "The request line and headers are larger than the server takes (16 KiB)",
    422: "The request is invalid: each field at fault, as pydantic reports it",
    500: "An unexpected error; `error_id` finds its traceback in the server log",
    503: "The server is shutting down; or git is missing or took too long",
    507: "Not enough space left on the server's disk for the file",
}
# Query parameters the handlers parse further than their models say (a 422 otherwise); an
# empty time is no filter.
# A rule's `<converter:name>`, one at a time (quart-schema's own pattern takes `<a>/<path:b>`
# for one argument).
RULE_ARGUMENT = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")
TIME_FILTER = {"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}]}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "timestamp__gte": TIME_FILTER,
    "timestamp__lt": TIME_FILTER,
}

# -- success bodies --------------------------------------------------------------------------


class Alive(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Ready once the SDK is imported (503 until then, or if it failed)."""

    status: Literal["ready", "initializing", "failed"]
    detail: str | None = None


class ServerInfo(BaseModel):
    """Versions, uptime and the supervisor's counters.

    `version` is the reference server's API version implemented here; `server_name` and
    `server_version` are this server's own.
    """

    title: str
    version: str
    server_name: str
    server_version: str | None
    sdk_version: str | None
    tools_version: str | None
    python_version: str
    uptime: float
    sdk_ready: bool
    usable_tools: list[str]
    conversation_runtime: Literal["local"]
    available_conversation_runtimes: list[str]
    capabilities: list[str]
    docs: str
    statistics: dict[str, int]


class Event(BaseModel):
    """An SDK event as the SDK serializes it; its other fields depend on its `kind`."""

    model_config = ConfigDict(extra="allow")

    kind: str
    id: str
    timestamp: str  # the SDK's naive local time
    source: str


class EventPage(BaseModel):
    """One page; `next_page_id` is the first item of the next page, null on the last."""

    items: list[Event]
    next_page_id: str | None


class Events(RootModel[list[Event | None]]):
    """The events asked for, in order; null for an unknown id."""


class Count(RootModel[int]):
    """How many match."""

    root: int = Field(ge=0)


class ConversationInfo(BaseModel):
    """A conversation: what was asked for (the LLM key redacted) and its live status."""

    id: uuid.UUID
    status: Status
    title: str | None
    tags: dict[str, str]
    llm: dict[str, Any]
    tools: list[dict[str, Any]]
    mcp_config: dict[str, Any]
    agent_context: dict[str, Any] | None
    confirmation_mode: bool
    workspace: dict[str, Any] | None
    max_iterations: int | None
    created_at: datetime
    updated_at: datetime
    metrics: dict[str, Any] | None
    event_count: int | None
    waiting_for_run_slot: bool


class ConversationPage(BaseModel):
    """One page; `next_page_id` is the first item of the next page, null on the last."""

    items: list[ConversationInfo]
    next_page_id: str | None


class Conversations(RootModel[list[ConversationInfo | None]]):
    """The conversations asked for, in order; null for an unknown id."""


class ApiConversationInfo(BaseModel):
    """The SDK's ConversationState (events aside) plus what the server keeps."""

    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    execution_status: Status
    title: str | None
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    agent: dict[str, Any]
    workspace: dict[str, Any]
    confirmation_policy: dict[str, Any]
    max_iterations: int
    stuck_detection: bool
    event_count: int = Field(default=0, description="only while the conversation is loaded")
    waiting_for_run_slot: bool = Field(
        default=False, description="only while the conversation is loaded"
    )
    hook_config: dict[str, Any] | None = Field(default=None, description="the SDK's HookConfig")
    forked_from_conversation_id: uuid.UUID | None = Field(
        default=None, description="the conversation this one is a fork of"
    )
    forked_from_event_id: str | None = Field(default=None, description="the fork's branch point")


class ApiConversationPage(BaseModel):
    """One page; `next_page_id` is the first item of the next page, null on the last."""

    items: list[ApiConversationInfo]
    next_page_id: str | None


class ApiConversations(RootModel[list[ApiConversationInfo | None]]):
    """The conversations asked for, in order; null for an unknown id."""


class Success(BaseModel):
    """Done."""

    success: Literal[True]


class SuccessStatus(BaseModel):
    """Done; the conversation's status right after."""

    success: Literal[True]
    status: Status


class ApiSuccessStatus(BaseModel):
    """Done; the conversation's status right after."""

    success: Literal[True]
    execution_status: Status


class FinalResponse(BaseModel):
    """The agent's last answer (its finish message or last message), "" if none yet."""

    response: str


# -- the workspace: files and git ----------------------------------------------------------


class BinaryBody(BaseModel):
    """Bytes, not JSON: `ApiSpec` declares `media_types` with a binary schema, and
    `headers` (name: description) as response headers."""

    media_types: ClassVar[tuple[str, ...]] = ("application/octet-stream",)
    headers: ClassVar[dict[str, str]] = {}


class FileBytes(BinaryBody):
    """The file's bytes (`Content-Disposition` names it)."""


class ArchiveBytes(BinaryBody):
    """The archive: a git patch (`git-delta`) or a gzip tarball (`tar.gz`)."""

    media_types = ("text/x-patch", "application/gzip")
    headers = {
        "X-Archive-Repo-Root": "The repository archived (percent-encoded), if any",
        "X-Archive-Repo-Remote": "Its `origin` URL, credentials removed (percent-encoded)",
        "X-Archive-Branch": "Its branch, or DETACHED",
        "X-Archive-Head-Commit": "Its HEAD commit",
        "X-Archive-Base-Commit": "git-delta: the commit the patch applies to",
        "X-Archive-Base-Ref": "git-delta: the `base_ref` asked for, or `auto`",
    }


class TrajectoryBytes(BinaryBody):
    """A ZIP of the conversation's stored state and events (secrets redacted)."""


class FileUploadResult(BaseModel):
    """Written: the file's size in bytes."""

    success: Literal[True]
    file_size: int = Field(ge=0)


class FileBrowserEntry(BaseModel):
    label: str
    path: str


class Home(BaseModel):
    """The server user's home, the directories in it, and the file system's roots."""

    home: str
    favorites: list[FileBrowserEntry]
    locations: list[FileBrowserEntry]


class Subdirectory(BaseModel):
    name: str
    path: str


class SubdirectoryPage(BaseModel):
    """One page of a directory's subdirectories, by name; `next_page_id` is the name the
    next page starts at, null on the last."""

    items: list[Subdirectory]
    next_page_id: str | None


class GitChange(BaseModel):
    status: Literal["MOVED", "ADDED", "DELETED", "UPDATED"]
    path: str


class GitChanges(RootModel[list[GitChange]]):
    """The files changed since the base, by path."""


class GitDiff(BaseModel):
    """A file's two sides, lines joined by `\\n`; "" for a side that does not exist."""

    modified: str | None
    original: str | None


class GitCommit(BaseModel):
    sha: str
    short_sha: str
    subject: str
    author: str
    timestamp: str = Field(description="The author date, ISO 8601 with its UTC offset")


class GitCommitsPage(BaseModel):
    """The newest commits reachable from HEAD, newest first."""

    commits: list[GitCommit]
    has_more: bool


class BashEvent(BaseModel):
    """A `BashCommand` (a command started) or a `BashOutput` (a chunk of its output; the
    last one has `exit_code`)."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["BashCommand", "BashOutput"]
    id: uuid.UUID
    timestamp: datetime
    command_id: uuid.UUID | None = None
    order: int | None = None
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    command: str | None = None
    cwd: str | None = None
    timeout: int | None = None


class BashEventPage(BaseModel):
    """A page of bash events; `next_page_id` is the first event of the next page."""

    items: list[BashEvent]
    next_page_id: str | None


class BashEvents(RootModel[list[BashEvent | None]]):
    """The events asked for, in order; `null` for an unknown id."""


class ClearedCount(BaseModel):
    """How many bash events were cleared."""

    cleared_count: int


# -- the decorator and the spec ------------------------------------------------------------


def responses[F: Callable[..., Any]](
    ok: type[BaseModel] | dict[int, type[BaseModel]], *errors: int
) -> Callable[[F], F]:
    """Document the success body (200 unless given by status) and each error status."""
    declared = dict(ok) if isinstance(ok, dict) else {200: ok}
    declared.update({status: ERROR_MODELS.get(status, Detail) for status in errors})

    def decorate(func: F) -> F:
        for status, model in declared.items():
            func = document_response(model, status)(func)
        return func

    return decorate


class ApiSpec(OpenAPIProvider):
    """quart-schema's spec, made exact for this server.

    Each path once (a trailing-slash alias answers the same); operation ids unique across
    both dialects; the conversation id named and typed as the 422s name it; the statuses
    every operation can answer; and, when this server has session keys, the key and 401 on
    every operation but the open ones."""

    def schema(self) -> dict[str, Any]:
        self._paths_served: dict[Callable[..., Any], int] = {}
        for rule in self.generate_rules():
            func = self._app.view_functions[rule.endpoint]
            self._paths_served[func] = self._paths_served.get(func, 0) + 1
        return super().schema()

    def generate_rules(self) -> Any:
        for rule in super().generate_rules():
            if rule.rule == "/" or not rule.rule.endswith("/"):
                yield rule

    def build_querystring_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """quart-schema looks for `required` on each property, where pydantic never puts it."""
        parameters, components = super().build_querystring_parameters(model)
        required = set(TypeAdapter(model).json_schema().get("required", ()))
        for parameter in parameters:
            if parameter["name"] in required:
                parameter["required"] = True
            if (schema := QUERY_SCHEMAS.get(parameter["name"])) is not None:
                parameter["schema"] = {
                    **{
                        k: v
                        for k, v in parameter["schema"].items()
                        if k not in ("anyOf", "default")
                    },
                    **schema,
                }
        return parameters, components

    def build_request_body(
        self, model: type[Any], source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, components = super().build_request_body(model, source)
        return {**body, "required": True}, components  # no body is a 422

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not (isinstance(model, type) and issubclass(model, BinaryBody)):
            return super().build_response_object(model, headers_model)
        binary = {"schema": {"type": "string", "format": "binary"}}
        answer: dict[str, Any] = {
            "description": model.__doc__ or "",
            "content": {media_type: binary for media_type in model.media_types},
        }
        if model.headers:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in model.headers.items()
            }
        return answer, {}

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if name == "raw_id":
            parameter.update(name="conversation_id", schema={"type": "string", "format": "uuid"})
        return parameter

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        keyed = bool(self._app.settings.session_api_keys)  # pyright: ignore[reportAttributeAccessIssue]
        renamed: dict[str, Any] = {}
        for path, operations in paths.items():
            secured = keyed and path not in OPEN_PATHS
            for method, operation in operations.items():
                statuses = (*EVERY_OPERATION, *STATE_CHANGING.get(method, ()))
                answers = operation["responses"] = dict(operation["responses"])
                for status in (*statuses, 401) if secured else statuses:
                    model = ERROR_MODELS.get(status, Detail)
                    answers[status], defs = self.build_response_object(model, None)
                    components.update(defs)
                for status, answer in answers.items():
                    if _is_error(answer) and status in ERROR_DESCRIPTIONS:
                        answers[status] = {**answer, "description": ERROR_DESCRIPTIONS[status]}
                if secured:
                    operation["security"] = [{"SessionKey": []}]
            path = RULE_ARGUMENT.sub(r"{\1}", rule.rule)  # not quart-schema's path (above)
            renamed[path.replace("{raw_id}", "{conversation_id}")] = operations
        return renamed, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        """`{method}_{handler}`, `api_` for the /api dialect; a handler serving several
        paths (/alive and /health) is named by each path instead."""
        name = func.__name__
        if self._paths_served.get(func, 1) > 1:
            name = path.strip("/").replace("/", "_") or "root"
        elif path.startswith("/api/"):
            name = f"api_{name}"
        return f"{method.lower()}_{name}"


def _is_error(answer: dict[str, Any]) -> bool:
    schema = answer["content"].get("application/json", {}).get("schema", {})
    return schema.get("title") in {model.__name__ for model in (Detail, *ERROR_MODELS.values())}
