"""The errors the core and the services raise, each with the HTTP status it answers as
(web/json_errors.py turns them into `{"detail": ...}`)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status that handlers raise to answer `{"detail": ...}`."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class NotFound(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


class Conflict(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


class ValidationFailed(ApiError):
    """422 listing each field at fault, as pydantic reports it."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, errors)

    @classmethod
    def single(
        cls, loc: tuple[str | int, ...], msg: str, type_: str = "value_error"
    ) -> ValidationFailed:
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])
