"""A conversation's record: what the server knows of it without loading it.

The catalog (records.py) holds one per conversation, loaded or not; the store keeps it as
meta.json (the files store) or a row of `conversations` (the shared one). A loaded
conversation (conversation.py) keeps its record up to date.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ConversationRecord:
    """What the server knows of a conversation without loading it (meta.json)."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    request: dict[str, Any]  # what was asked for, api_key removed
    title: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "idle"  # last known; the live one comes from the SDK when loaded
    metrics: dict[str, Any] | None = None  # last known tokens and cost, for listings

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "request": self.request,
            "title": self.title,
            "tags": self.tags,
            "status": self.status,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversationRecord:
        return cls(
            id=uuid.UUID(data["id"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            request=data.get("request", {}),
            title=data.get("title"),
            tags=data.get("tags") or {},
            status=data.get("status", "idle"),
            metrics=data.get("metrics"),
        )
