"""The success bodies /openapi.json declares, one model per shape a route answers with.

Routes name them in `@responses(...)` (openapi.py, with the error shapes). SDK events and
states stay free-form objects: only the fields we rely on are fixed. A `BinaryBody` is bytes,
not JSON: `ApiSpec` declares it with a binary schema.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from trio_openhands.web.api.models import ApiExecutionStatus

Status = ApiExecutionStatus  # one list of statuses for the models and the spec

# -- the server, events and conversations --------------------------------------------------


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
    tool_module_qualnames: dict[str, str] = Field(
        default_factory=dict,
        description="each tool's module (the client's, and those the server resolved by name)",
    )
    runtime_info: dict[str, Any] = Field(
        description="always `available`, `can_resume`: conversations run in this process"
    )


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
