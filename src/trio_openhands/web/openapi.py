"""What /openapi.json says each operation answers: the JSON errors, and the spec itself.

The error shapes (errors.py's) are declared once here; each route names its success body
(response_bodies.py) and the statuses of its own with `@responses(...)`, so generated
clients and `make fuzz` can check every answer. `ApiSpec` adds those that security.py and
json_errors.py give any operation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter
from quart_schema import DataSource, document_response
from quart_schema.openapi import OpenAPIProvider

from trio_openhands.web.response_bodies import BinaryBody
from trio_openhands.web.security import OPEN_PATHS

if TYPE_CHECKING:
    from werkzeug.routing import BaseConverter, Rule

# -- errors --------------------------------------------------------------------------------


class Detail(BaseModel):
    """A plain error: `{"detail": "..."}`."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """The request is invalid: each field at fault, as pydantic reports it."""

    detail: list[FieldError]


class InternalError(BaseModel):
    """An unexpected error; `error_id` finds its traceback in the server log."""

    detail: str
    error_id: str


ERROR_MODELS: dict[int, type[BaseModel]] = {422: ValidationErrors, 500: InternalError}

# Statuses shared by many routes: a body is read (`READS_BODY`: too slow, too large), then
# parsed and validated (`BODY`); an id (`LOADS`) names a conversation loaded from disk on
# first use (503 while shutting down).
READS_BODY = (408, 413)
BODY = (*READS_BODY, 422)
LOADS = (404, 422, 503)
# Statuses of every operation (security.py, json_errors.py, connection.py): a Host this
# server does not answer for, headers too large, an unexpected error; on state-changing
# methods, a browser page of a foreign origin without a key and a body that is not JSON;
# with session keys, a missing or wrong key.
EVERY_OPERATION = (421, 431, 500)
STATE_CHANGING = {"post": (403, 415), "put": (403, 415), "patch": (403, 415), "delete": (403, 415)}
ERROR_DESCRIPTIONS = {
    400: "A request the current state refuses: a query that names nothing (an unknown "
    "`page_id`), a relative path, a directory where a file is needed (or the reverse), a "
    "path outside any git repository, a ref or commit the repository does not have",
    401: "No valid `X-Session-API-Key`",
    403: "A request from a browser page of a foreign origin, without a key; or the file "
    "system refused (permission denied, read-only)",
    404: "No such conversation (or event, file, directory, profile)",
    408: "The body did not arrive within the server's `body_timeout`",
    409: "Not possible in the conversation's current state; or the settings or a profile "
    "store cannot be read",
    413: "The body is larger than the server takes (16 MiB; a file upload: `max_upload_bytes`)",
    415: "The body is not `application/json` (nor `multipart/form-data` for an upload)",
    421: "`Host` is not a name this server answers for",
    431: "The request line and headers are larger than the server takes (16 KiB)",
    422: "The request is invalid: each field at fault, as pydantic reports it",
    500: "An unexpected error; `error_id` finds its traceback in the server log",
    503: "The server is shutting down; git is missing or took too long; or a profile store "
    "stayed locked (retry)",
    507: "Not enough space left on the server's disk for the file",
}
# Query parameters the handlers parse further than their models say (a 422 otherwise); an
# empty time is no filter.
# A rule's `<converter:name>`, one at a time (quart-schema's own pattern takes `<a>/<path:b>`
# for one argument).
RULE_ARGUMENT = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")
TIME_FILTER = {"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}]}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "timestamp__gte": TIME_FILTER,
    "timestamp__lt": TIME_FILTER,
}

# -- the decorator and the spec ------------------------------------------------------------


def responses[F: Callable[..., Any]](
    ok: type[BaseModel] | dict[int, type[BaseModel]], *errors: int
) -> Callable[[F], F]:
    """Document the success body (200 unless given by status) and each error status."""
    declared = dict(ok) if isinstance(ok, dict) else {200: ok}
    declared.update({status: ERROR_MODELS.get(status, Detail) for status in errors})

    def decorate(func: F) -> F:
        for status, model in declared.items():
            func = document_response(model, status)(func)
        return func

    return decorate


class ApiSpec(OpenAPIProvider):
    """quart-schema's spec, made exact for this server.

    Each path once (a trailing-slash alias answers the same); operation ids unique across
    both dialects; the conversation id named and typed as the 422s name it; the statuses
    every operation can answer; and, when this server has session keys, the key and 401 on
    every operation but the open ones."""

    def schema(self) -> dict[str, Any]:
        self._paths_served: dict[Callable[..., Any], int] = {}
        for rule in self.generate_rules():
            func = self._app.view_functions[rule.endpoint]
            self._paths_served[func] = self._paths_served.get(func, 0) + 1
        return super().schema()

    def generate_rules(self) -> Any:
        for rule in super().generate_rules():
            if rule.rule == "/" or not rule.rule.endswith("/"):
                yield rule

    def build_querystring_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """quart-schema looks for `required` on each property, where pydantic never puts it."""
        parameters, components = super().build_querystring_parameters(model)
        required = set(TypeAdapter(model).json_schema().get("required", ()))
        for parameter in parameters:
            if parameter["name"] in required:
                parameter["required"] = True
            if (schema := QUERY_SCHEMAS.get(parameter["name"])) is not None:
                parameter["schema"] = {
                    **{
                        k: v
                        for k, v in parameter["schema"].items()
                        if k not in ("anyOf", "default")
                    },
                    **schema,
                }
        return parameters, components

    def build_request_body(
        self, model: type[Any], source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, components = super().build_request_body(model, source)
        return {**body, "required": True}, components  # no body is a 422

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not (isinstance(model, type) and issubclass(model, BinaryBody)):
            return super().build_response_object(model, headers_model)
        binary = {"schema": {"type": "string", "format": "binary"}}
        answer: dict[str, Any] = {
            "description": model.__doc__ or "",
            "content": {media_type: binary for media_type in model.media_types},
        }
        if model.headers:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in model.headers.items()
            }
        return answer, {}

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if name == "raw_id":
            parameter.update(name="conversation_id", schema={"type": "string", "format": "uuid"})
        return parameter

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        keyed = bool(self._app.settings.session_api_keys)  # pyright: ignore[reportAttributeAccessIssue]
        renamed: dict[str, Any] = {}
        for path, operations in paths.items():
            secured = keyed and path not in OPEN_PATHS
            for method, operation in operations.items():
                statuses = (*EVERY_OPERATION, *STATE_CHANGING.get(method, ()))
                answers = operation["responses"] = dict(operation["responses"])
                for status in (*statuses, 401) if secured else statuses:
                    model = ERROR_MODELS.get(status, Detail)
                    answers[status], defs = self.build_response_object(model, None)
                    components.update(defs)
                for status, answer in answers.items():
                    if _is_error(answer) and status in ERROR_DESCRIPTIONS:
                        answers[status] = {**answer, "description": ERROR_DESCRIPTIONS[status]}
                if secured:
                    operation["security"] = [{"SessionKey": []}]
            path = RULE_ARGUMENT.sub(r"{\1}", rule.rule)  # not quart-schema's path (above)
            renamed[path.replace("{raw_id}", "{conversation_id}")] = operations
        return renamed, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        """`{method}_{handler}`, `api_` for the /api dialect; a handler serving several
        paths (/alive and /health) is named by each path instead."""
        name = func.__name__
        if self._paths_served.get(func, 1) > 1:
            name = path.strip("/").replace("/", "_") or "root"
        elif path.startswith("/api/"):
            name = f"api_{name}"
        return f"{method.lower()}_{name}"


def _is_error(answer: dict[str, Any]) -> bool:
    schema = answer["content"].get("application/json", {}).get("schema", {})
    return schema.get("title") in {model.__name__ for model in (Detail, *ERROR_MODELS.values())}
