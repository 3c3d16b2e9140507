"""Request and query models at the HTTP edge (pydantic v2). No SDK import here: the SDK
loads in the background, so SDK-specific validation (the LLM settings) happens in
`sdk_bridge` once it is there."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trio_openhands.core.working_dirs import check_working_dir_text

ExecutionStatus = Literal[
    "idle", "running", "paused", "waiting_for_confirmation", "finished", "error", "stuck"
]

# The seed project's tool names, accepted as aliases of the SDK's registry names.
TOOL_ALIASES = {
    "BashTool": "terminal",
    "FileEditorTool": "file_editor",
    "TaskTrackerTool": "task_tracker",
}
KNOWN_TOOLS = frozenset({"terminal", "file_editor", "task_tracker"})
# Tags are labels for search, not storage: bounded so that a record stays small.
MAX_TAGS = 64
TAG_KEY_MAX_LENGTH = 64
# What check_tag_count accepts, for the OpenAPI schema (the validator enforces it).
TAGS_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_TAGS,
    "propertyNames": {"maxLength": TAG_KEY_MAX_LENGTH},
}


def check_tag_count(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags are allowed")
    for key in tags:
        if len(key) > TAG_KEY_MAX_LENGTH:
            raise ValueError(f"tag keys must be at most {TAG_KEY_MAX_LENGTH} characters long")
    return tags


def _type_is_required(schema: dict[str, Any]) -> None:
    """Parts are told apart by `type` (ContentPart): the schema says it must be sent."""
    schema["required"] = ["type", *schema.get("required", [])]


class TextPart(BaseModel):
    model_config = ConfigDict(json_schema_extra=_type_is_required)

    type: Literal["text"] = "text"
    text: str
    cache_prompt: bool = False


class ImagePart(BaseModel):
    type: Literal["image"]
    image_urls: list[str] = Field(min_length=1)
    cache_prompt: bool = False


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class SendMessageRequest(BaseModel):
    """A user message; `run` (default true, as in the seed) also starts the agent on it."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user"] = "user"
    content: list[ContentPart] = Field(min_length=1)
    run: bool = True


class ToolSpec(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_tool(cls, name: str) -> str:
        name = TOOL_ALIASES.get(name, name)
        if name not in KNOWN_TOOLS:
            known = ", ".join(sorted(KNOWN_TOOLS | TOOL_ALIASES.keys()))
            raise ValueError(f"unknown tool {name!r}; known tools: {known}")
        return name


class WorkspaceSpec(BaseModel):
    working_dir: str = Field(min_length=1)

    @field_validator("working_dir")
    @classmethod
    def _usable_path(cls, value: str) -> str:
        return check_working_dir_text(value)


class StartConversationRequest(BaseModel):
    """The seed's StartConversationRequest; only `llm` is required."""

    model_config = ConfigDict(extra="forbid")

    llm: dict[str, Any]
    tools: list[ToolSpec] = Field(default_factory=list)
    mcp_config: dict[str, Any] = Field(default_factory=dict)
    agent_context: dict[str, Any] | None = None
    confirmation_mode: bool = False
    initial_message: SendMessageRequest | None = None
    workspace: WorkspaceSpec | None = None
    max_iterations: int = Field(default=500, ge=1)
    title: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] = Field(default_factory=dict, json_schema_extra=TAGS_SCHEMA)

    @field_validator("tags")
    @classmethod
    def _bounded_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tag_count(tags)


class ConversationSearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page_id: str | None = None
    limit: int = Field(default=100, ge=1, le=100)
    status: ExecutionStatus | None = None
    sort_order: Literal["CREATED_AT", "UPDATED_AT", "CREATED_AT_DESC", "UPDATED_AT_DESC"] = (
        "CREATED_AT_DESC"
    )


class BatchQuery(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=100)


class EventSearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page_id: str | None = None
    limit: int = Field(default=100, ge=1, le=100)
    kind: str | None = None
    source: Literal["agent", "user", "environment", "hook"] | None = None
    body: str | None = None
    timestamp__gte: str | None = None
    timestamp__lt: str | None = None
    sort_order: Literal["TIMESTAMP", "TIMESTAMP_DESC"] = "TIMESTAMP"


class EventBatchQuery(BaseModel):
    event_ids: list[str] = Field(min_length=1, max_length=100)


class ConfirmationResponse(BaseModel):
    accept: bool
    reason: str = "User rejected the action."
