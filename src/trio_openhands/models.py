"""Request and query models at the HTTP edge (pydantic v2). No SDK import here: the SDK
loads in the background, so SDK-specific validation (the LLM settings) happens in
`sdk_bridge` once it is there."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class TextPart(BaseModel):
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
    working_dir: str


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
    tags: dict[str, str] = Field(default_factory=dict)


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
