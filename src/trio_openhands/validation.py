"""Turning request bodies and query strings into pydantic models, or a 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from quart import request

from trio_openhands.errors import ValidationFailed


def errors_from(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's errors without the `input`/`url`/`ctx` noise, which could echo secrets."""
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


async def parse_body[M: BaseModel](model: type[M]) -> M:
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        raise ValidationFailed.single(("body",), "Field required", "missing")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationFailed.single(("body",), f"Invalid JSON: {error}", "json_invalid") from None
    return validate(model, data, ("body",))


def parse_query[M: BaseModel](model: type[M], list_fields: frozenset[str] = frozenset()) -> M:
    """Query parameters; the names in `list_fields` may repeat (`?ids=a&ids=b`)."""
    args = request.args
    data: dict[str, Any] = {}
    for key in args:
        data[key] = args.getlist(key) if key in list_fields else args.get(key)
    return validate(model, data, ("query",))


def validate[M: BaseModel](model: type[M], data: Any, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, prefix)) from None
