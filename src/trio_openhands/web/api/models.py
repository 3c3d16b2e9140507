"""Request and query models of the `/api` dialect (the reference server's newer API).

The dialect's bodies carry SDK objects (an `agent`, a confirmation `policy`, `secrets`...):
they are plain dicts here, because the SDK loads in the background; `bridge.py` turns them
into SDK objects once it is there, and its errors are 422s that name the field.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from trio_openhands.core.models import (
    TAG_KEY_MAX_LENGTH,
    TAGS_SCHEMA,
    ContentPart,
    ConversationSearchQuery,
    check_tag_count,
)
from trio_openhands.core.validation import check_uuid_text
from trio_openhands.core.working_dirs import check_working_dir_text

StrictUuid = Annotated[uuid.UUID, BeforeValidator(check_uuid_text)]


def _as_utc(moment: datetime) -> datetime:
    """A naive time is UTC (the bash events' clock); an aware one is converted to it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("Datetime is out of range once converted to UTC") from None


AwareOrUtc = Annotated[datetime, AfterValidator(_as_utc)]

ApiExecutionStatus = Literal[
    "idle",
    "running",
    "paused",
    "waiting_for_confirmation",
    "finished",
    "error",
    "stuck",
    "deleting",
]
TAG_KEY = re.compile(r"[a-z0-9]+")
TAG_VALUE_MAX_LENGTH = 256
# What check_tags accepts, for the OpenAPI schema (the validators enforce it).
API_TAGS_SCHEMA: dict[str, Any] = {
    **TAGS_SCHEMA,
    "propertyNames": {"pattern": "^[a-z0-9]+$", "maxLength": TAG_KEY_MAX_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": TAG_VALUE_MAX_LENGTH},
}


def check_tags(tags: dict[str, str] | None) -> dict[str, str] | None:
    """The SDK's rule for tags: lowercase alphanumeric keys, values up to 256 characters;
    and ours: at most MAX_TAGS tags, keys of at most TAG_KEY_MAX_LENGTH characters."""
    check_tag_count(tags or {})
    for key, value in (tags or {}).items():
        if not TAG_KEY.fullmatch(key):
            raise ValueError(f"Tag key {key!r} is invalid: keys must be lowercase alphanumeric")
        if len(value) > TAG_VALUE_MAX_LENGTH:
            raise ValueError(f"Tag value for {key!r} exceeds {TAG_VALUE_MAX_LENGTH} characters")
    return tags


class ApiSendMessageRequest(BaseModel):
    """`POST .../events`: a user message; unlike the seed, `run` defaults to false."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user"] = "user"
    content: list[ContentPart] = Field(min_length=1)
    run: bool = False
    sender: str | None = None


class ApiWorkspace(BaseModel):
    """The client sends its `LocalWorkspace` (`{"working_dir", "kind"}`)."""

    model_config = ConfigDict(extra="ignore")

    working_dir: str = Field(min_length=1)
    kind: str = "LocalWorkspace"

    @field_validator("working_dir")
    @classmethod
    def _usable_path(cls, value: str) -> str:
        return check_working_dir_text(value)


class ApiStartConversationRequest(BaseModel):
    """`POST /api/conversations`. Fields the server has no use for (observability,
    `agent_definitions`, `user_id`, ...) are accepted and ignored, as the reference does."""

    model_config = ConfigDict(extra="ignore")

    agent: dict[str, Any] | None = None
    agent_settings: dict[str, Any] | None = None
    agent_profile_id: StrictUuid | None = None
    workspace: ApiWorkspace
    conversation_id: StrictUuid | None = None
    confirmation_policy: dict[str, Any] | None = None
    security_analyzer: dict[str, Any] | None = None
    initial_message: ApiSendMessageRequest | None = None
    max_iterations: int = Field(default=500, ge=1)
    stuck_detection: bool = True
    secrets: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    tool_module_qualnames: dict[str, str] = Field(default_factory=dict)
    client_tools: list[dict[str, Any]] = Field(default_factory=list)
    plugins: list[dict[str, Any]] | None = None
    hook_config: dict[str, Any] | None = None
    tags: dict[str, str] = Field(default_factory=dict, json_schema_extra=API_TAGS_SCHEMA)
    title: str | None = Field(default=None, max_length=200)
    # Secret values in `agent`/`agent_settings`/`secrets` are Fernet tokens of this server
    # (what GET /api/settings gave with `X-Expose-Secrets: encrypted`): decrypt them.
    secrets_encrypted: bool = False
    worktree: bool = False
    worktree_options: dict[str, Any] | None = None
    parent_conversation_id: StrictUuid | None = None
    autotitle: bool = True  # a title from the conversation's LLM after the first message
    title_llm_profile: str | None = None
    agent_launch_additions: dict[str, Any] | None = None

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags) or {}


class ApiUpdateConversationRequest(BaseModel):
    """`PATCH /api/conversations/{id}`: a title (1-200 characters, stored stripped) and/or
    tags (replacing the old ones)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    tags: dict[str, str] | None = Field(default=None, json_schema_extra=API_TAGS_SCHEMA)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, title: str | None) -> str | None:
        if title is not None and not title.strip():
            raise ValueError("title must not be blank")
        return title.strip() if title is not None else None

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, tags: dict[str, str] | None) -> dict[str, str] | None:
        return check_tags(tags)


class ConfirmationPolicyRequest(BaseModel):
    """`{"policy": {"kind": "AlwaysConfirm" | "NeverConfirm" | "ConfirmRisky", ...}}`."""

    policy: dict[str, Any]


class SecurityAnalyzerRequest(BaseModel):
    security_analyzer: dict[str, Any] | None = None


class UpdateSecretsRequest(BaseModel):
    """Each secret is a plain value, `{"value": ...}`, or an SDK `SecretSource` with a
    `kind` (`StaticSecret`, `LookupSecret`)."""

    secrets: dict[str, str | dict[str, Any]]


class ApiConfirmationResponse(BaseModel):
    accept: bool
    reason: str = "User rejected the action."


class ApiConversationSearchQuery(ConversationSearchQuery):
    """The seed's search, plus the `deleting` status and `include_skills`."""

    status: ApiExecutionStatus | None = None  # pyright: ignore[reportIncompatibleVariableOverride]
    include_skills: bool = False


class ApiCountQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ApiExecutionStatus | None = None


class ApiBatchQuery(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=100)
    include_skills: bool = False


class ApiInfoQuery(BaseModel):
    include_skills: bool = False


class ExecuteBashRequest(BaseModel):
    """A shell command for the workspace API (`start_bash_command`, `execute_bash_command`,
    or a frame on `/sockets/bash-events`)."""

    model_config = ConfigDict(extra="ignore")

    command: str = Field(min_length=1, max_length=1024 * 1024)
    cwd: str | None = None
    timeout: int = Field(default=300, ge=1, le=24 * 3600)

    @field_validator("cwd")
    @classmethod
    def _usable_cwd(cls, value: str | None) -> str | None:
        return None if value is None else check_working_dir_text(value)


class BashEventSearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind__eq: Literal["BashCommand", "BashOutput"] | None = None
    command_id__eq: StrictUuid | None = None
    timestamp__gte: AwareOrUtc | None = None
    timestamp__lt: AwareOrUtc | None = None
    order__gt: int | None = None
    sort_order: Literal["TIMESTAMP", "TIMESTAMP_DESC"] = "TIMESTAMP"
    page_id: str | None = None
    limit: int = Field(default=100, ge=1, le=100)
