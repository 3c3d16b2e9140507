"""The routes of the user's installed skills and plugins, the same for both kinds as in the
reference: install (from a local directory), list, one, enable/disable, uninstall, refresh.

`add_installed_routes` puts them on a kind's blueprint; each view is named for its kind, so
the spec's operation ids stay unique.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import trio
from pydantic import BaseModel, Field
from quart import Response

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.services import installed
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from quart import Blueprint

    from trio_openhands.services.installed import Kind

NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"  # the SDK's names: lowercase words joined by hyphens


class Installed(BaseModel):
    """An installed skill or plugin, as the reference answers it."""

    name: str
    version: str
    description: str
    enabled: bool
    source: str
    resolved_ref: str | None
    repo_path: str | None
    installed_at: str
    install_path: str


class InstallRequest(BaseModel):
    source: str = Field(min_length=1, description="A local directory (git sources: 501)")
    ref: str | None = None
    repo_path: str | None = Field(default=None, description="A directory within `source`")
    force: bool = Field(default=False, description="Replace an installed one of that name")


class EnabledState(BaseModel):
    enabled: bool


class NamedState(BaseModel):
    """Its state now."""

    name: str
    enabled: bool


class Message(BaseModel):
    """Done."""

    message: str


async def run_sdk[T](fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread, once the SDK is imported."""
    await app().sdk_loader.wait_ready()
    return await trio.to_thread.run_sync(fn, *args)


def add_installed_routes(
    blueprint: Blueprint,
    prefix: str,
    kind: Kind,
    info: type[BaseModel],
    listing: type[BaseModel],
    refreshed: type[BaseModel],
) -> None:
    """`prefix` is `/api/skills` or `/api/plugins`; `info`, `listing` and `refreshed` the
    answers' models (documentation: the service builds the answers)."""
    param = f"{kind.noun}_name"
    plural = f"{kind.noun}s"

    def name_of(raw: str) -> str:
        if not (1 <= len(raw) <= 255) or re.fullmatch(NAME, raw) is None:
            message = f"String should match pattern '{NAME}'"
            raise ValidationFailed.single(("path", param), message, "string_pattern_mismatch")
        return raw

    async def install() -> Response:
        body = await parse_body(InstallRequest)
        answer = await run_sdk(installed.install, kind, body.source, body.repo_path, body.force)
        return json_response(answer)

    async def list_installed() -> Response:
        return json_response({plural: await run_sdk(installed.list_installed, kind)})

    async def get_installed(**path: str) -> Response:
        return json_response(await run_sdk(installed.get_installed, kind, name_of(path[param])))

    async def set_enabled(**path: str) -> Response:
        name = name_of(path[param])
        body = await parse_body(EnabledState)
        await run_sdk(installed.set_enabled, kind, name, body.enabled)
        return json_response({"name": name, "enabled": body.enabled})

    async def uninstall(**path: str) -> Response:
        name = name_of(path[param])
        await run_sdk(installed.uninstall, kind, name)
        return json_response({"message": f"{kind.title} '{name}' uninstalled"})

    async def refresh(**path: str) -> Response:
        name = name_of(path[param])
        answer = await run_sdk(installed.refresh, kind, name)
        return json_response({"message": f"{kind.title} '{name}' updated", kind.noun: answer})

    one = f"{prefix}/installed/<{param}>"
    routes: list[tuple[str, str, Callable[..., Any], str, Callable[[Any], Any]]] = [
        (f"{prefix}/install", "POST", install, f"Install a {kind.noun} from a local directory.",
         responses(info, *BODY, 400, 409, 501)),
        (f"{prefix}/installed", "GET", list_installed, f"Every installed {kind.noun}.",
         responses(listing)),
        (one, "GET", get_installed, f"One installed {kind.noun}.", responses(info, 404, 422)),
        (one, "PATCH", set_enabled, f"Enable or disable an installed {kind.noun}.",
         responses(NamedState, *BODY, 404)),
        (one, "DELETE", uninstall, f"Remove an installed {kind.noun}.",
         responses(Message, 404, 422)),
        (f"{one}/refresh", "POST", refresh,
         f"Install a {kind.noun} again from its recorded source (a local directory).",
         responses(refreshed, 400, 404, 422, 501)),
    ]  # fmt: skip
    for rule, method, view, doc, documented in routes:
        view.__name__ = f"{view.__name__}_{kind.noun}"
        view.__doc__ = doc
        blueprint.add_url_rule(rule, view.__name__, documented(view), methods=[method])
