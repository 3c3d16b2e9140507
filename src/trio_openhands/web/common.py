"""Small helpers shared by the route modules."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from quart import Response, current_app

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.validation import strict_uuid

if TYPE_CHECKING:
    from trio_openhands.core.supervisor import Supervisor
    from trio_openhands.web.app import OpenHandsApp


def app() -> OpenHandsApp:
    return cast("OpenHandsApp", current_app)


def supervisor() -> Supervisor:
    return app().supervisor


def project_dir(text: str | None) -> Path | None:
    """A request's `project_dir` (skills, plugins, sub-agents, hooks): a relative one lies in
    the server's workspace directory, as a client cannot know the server's current one."""
    if not text:
        return None
    return app().settings.workspace_dir / Path(text)  # an absolute one wins


def parse_conversation_id(raw: str, field: str = "conversation_id") -> uuid.UUID:
    """Dashed or dashless UUID; anything else is a 422 naming the path parameter."""
    if (parsed := strict_uuid(raw)) is None:
        raise ValidationFailed.single(
            ("path", field), "Input should be a valid UUID", "uuid_parsing"
        )
    return parsed


def json_response(data: Any, status: int = 200) -> Response:
    return raw_json(json.dumps(data, default=str), status)


def raw_json(text: str, status: int = 200) -> Response:
    return Response(text, status=status, content_type="application/json")


def page_json(item_texts: list[str], next_page_id: str | None) -> Response:
    """A page built from already-serialized items: each event is serialized only once."""
    return raw_json(
        '{"items":[' + ",".join(item_texts) + '],"next_page_id":' + json.dumps(next_page_id) + "}"
    )
