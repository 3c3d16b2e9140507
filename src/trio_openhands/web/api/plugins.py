"""The reference server's plugins routes: the plugins an agent would load (`POST
/api/plugins`: the user's and the project's, with the skills and files each holds) and the
user's installed plugins (installed.py's routes).

What needs another host answers 501: the marketplace catalog (the public repository on
GitHub) and `fetch` (a strict git fetch into the plugin cache).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from quart import Blueprint, Response

from trio_openhands.core.errors import ApiError
from trio_openhands.core.working_dirs import check_working_dir_text
from trio_openhands.services import plugins
from trio_openhands.web.api.installed import Installed, add_installed_routes, run_sdk
from trio_openhands.web.api.workspace import install_service_errors
from trio_openhands.web.common import json_response, project_dir
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

blueprint = Blueprint("api_plugins", __name__)
install_service_errors(blueprint)


class PluginsRequest(BaseModel):
    load_user: bool = True
    load_project: bool = True
    project_dir: Annotated[str, AfterValidator(check_working_dir_text)] | None = Field(
        default=None, description="Relative: in the server's workspace directory"
    )


class PluginSkill(BaseModel):
    name: str
    description: str | None


class PluginInfo(BaseModel):
    name: str
    version: str
    description: str
    path: str
    skills: list[PluginSkill]
    files: list[str] = Field(description="Relative to `path`, at most 2,000")


class Plugins(BaseModel):
    """The plugins found, a project's winning a name over the user's."""

    plugins: list[PluginInfo]


class InstalledPlugin(Installed):
    """A plugin installed in the user's `~/.openhands/plugins/installed/`; `skills` and
    `files` are null when it no longer loads."""

    skills: list[PluginSkill] | None
    files: list[str] | None


class InstalledPlugins(BaseModel):
    """Every installed plugin, enabled or not."""

    plugins: list[InstalledPlugin]


class RefreshedPlugin(BaseModel):
    """Installed again from its source."""

    message: str
    plugin: InstalledPlugin


class FetchedPlugin(BaseModel):
    """The reference's answer (this server answers 501: a fetch is a git clone)."""

    path: str
    resolved_ref: str | None
    source: str
    repo_path: str | None
    manifest: dict[str, object]
    skills: list[str]
    commands: list[str]


class MarketplacePlugin(BaseModel):
    name: str
    description: str | None
    source: str
    ref: str | None
    repo_path: str | None
    installed: bool
    path: str | None
    skills: list[PluginSkill] | None
    files: list[str] | None


class PluginsMarketplace(BaseModel):
    """The reference's answer (this server answers 501: the catalog is on GitHub)."""

    plugins: list[MarketplacePlugin]


@blueprint.post("/api/plugins")
@responses(Plugins, *BODY)
async def list_plugins() -> Response:
    """The user's plugins (installed ones last) and the project's."""
    body = await parse_body(PluginsRequest)
    directory = project_dir(body.project_dir)
    found = await run_sdk(plugins.available, body.load_user, body.load_project, directory)
    return json_response({"plugins": found})


@blueprint.post("/api/plugins/fetch")
@responses(FetchedPlugin, 501)
async def fetch_plugin() -> Response:
    raise ApiError(501, "Fetching a plugin clones its repository: this server does not fetch")


@blueprint.get("/api/plugins/marketplace")
@responses(PluginsMarketplace, 501)
async def plugins_marketplace() -> Response:
    raise ApiError(501, "The plugins marketplace is read from GitHub: this server does not fetch")


add_installed_routes(
    blueprint, "/api/plugins", plugins.PLUGINS, InstalledPlugin, InstalledPlugins, RefreshedPlugin
)
