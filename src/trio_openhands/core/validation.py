"""Validating what clients send (JSON text, ids, pydantic models), or a 422 naming the field.

Bodies and socket frames are parsed by `load_json`, which turns every way `json.loads` can
fail (a malformed text, an integer of more than 4,300 digits, nesting deep enough to exhaust
the stack) and every value the SDK could not store (nesting deeper than MAX_JSON_DEPTH, a
lone UTF-16 surrogate in a string) into a 422 that names where it is.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError

from trio_openhands.core.errors import ValidationFailed


def errors_from(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's errors without the `input`/`url`/`ctx` noise, which could echo secrets."""
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def strict_uuid(raw: str) -> uuid.UUID | None:
    """The two spellings ids have here (32 hex digits, or dashed 8-4-4-4-12), not the
    `{...}` and `urn:uuid:` forms `uuid.UUID` also takes: one id, one URL."""
    return uuid.UUID(raw) if UUID_TEXT.fullmatch(raw) else None


def check_uuid_text(value: object) -> object:
    """A pydantic before-validator: the same two spellings in a body."""
    if isinstance(value, str) and not UUID_TEXT.fullmatch(value):
        raise ValueError("Input should be a valid UUID: 32 hex digits, dashed or not")
    return value


# Deeper than any real request (agent settings, MCP configs); the SDK recurses on them.
MAX_JSON_DEPTH = 64


def load_json(raw: str | bytes, loc: tuple[str | int, ...] = ("body",)) -> Any:
    """`json.loads`, with every failure a ValidationFailed at `loc`."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValidationFailed.single(loc, _too_deep(), "json_invalid") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise ValidationFailed.single(loc, f"Invalid JSON: {error}", "json_invalid") from None
    check_json_values(data, loc)
    return data


def _too_deep() -> str:
    return f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


def check_json_values(data: Any, loc: tuple[str | int, ...]) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings that are not valid Unicode."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and not _is_valid_unicode(value):
                raise ValidationFailed.single(
                    (*loc, *path),
                    "String contains a lone surrogate (not valid Unicode)",
                    "string_unicode",
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_JSON_DEPTH:
            raise ValidationFailed.single((*loc, *path[:3]), _too_deep(), "json_invalid")
        if isinstance(value, dict):
            for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
                stack.append((key, (*path, key)))
                stack.append((item, (*path, key)))
        else:
            stack.extend((item, (*path, index)) for index, item in enumerate(value))  # pyright: ignore[reportUnknownArgumentType]


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate[M: BaseModel](model: type[M], data: Any, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors_from(error, prefix)) from None
