"""The request's body and query string as a pydantic model, or a 422 naming the field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import request

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.validation import load_json, validate


async def parse_body[M: BaseModel](model: type[M]) -> M:
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        raise ValidationFailed.single(("body",), "Field required", "missing")
    return validate(model, load_json(raw), ("body",))


async def parse_optional_body[M: BaseModel](model: type[M]) -> M:
    """A body the client may leave out: none is the model's defaults."""
    raw = await request.get_data(as_text=False)
    data = load_json(raw) if raw.strip() else {}
    return validate(model, data, ("body",))


def parse_query[M: BaseModel](model: type[M], list_fields: frozenset[str] = frozenset()) -> M:
    """Query parameters; the names in `list_fields` may repeat (`?ids=a&ids=b`)."""
    args = request.args
    data: dict[str, Any] = {}
    for key in args:
        data[key] = args.getlist(key) if key in list_fields else args.get(key)
    return validate(model, data, ("query",))
