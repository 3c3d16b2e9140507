"""The reference server's skills routes: what an agent would load (`POST /api/skills`, which
the Python client's `load_skills_from_agent_server` calls), the public and user catalog, and
the user's installed skills.

The work is in services/skills.py (the SDK's loaders, in a thread). What would need another
host is refused with a 501 naming the field: organisation repositories, auto-loaded
marketplaces, git install sources, the marketplace catalog and the public repository's sync.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from quart import Blueprint, Response

from trio_openhands.core.errors import ApiError
from trio_openhands.core.working_dirs import check_working_dir_text
from trio_openhands.services import skills
from trio_openhands.web.api.installed import Installed, add_installed_routes, run_sdk
from trio_openhands.web.api.workspace import install_service_errors
from trio_openhands.web.common import json_response, project_dir
from trio_openhands.web.openapi import BODY, responses
from trio_openhands.web.request_parsing import parse_body

blueprint = Blueprint("api_skills", __name__)
install_service_errors(blueprint)

OFFLINE = (
    "this server does not fetch from other hosts: public skills are read from a local copy "
    "of the extensions repository named by EXTENSIONS_PATH"
)


class ExposedUrl(BaseModel):
    name: str
    url: str
    port: int


class SandboxConfig(BaseModel):
    exposed_urls: list[ExposedUrl] = Field(default_factory=list)


class OrgConfig(BaseModel):
    repository: str
    provider: str
    org_repo_url: str
    org_name: str


class MarketplaceRegistration(BaseModel):
    name: str
    source: str
    ref: str | None = None
    repo_path: str | None = None
    auto_load: bool | list[str] = False


class SkillsRequest(BaseModel):
    """Which sources to load; `project_dir` relative lies in the server's workspace."""

    load_public: bool = True
    load_user: bool = True
    load_project: bool = True
    load_org: bool = True
    marketplace_path: str | None = "marketplaces/default.json"
    registered_marketplaces: list[MarketplaceRegistration] = Field(default_factory=list)
    project_dir: Annotated[str, AfterValidator(check_working_dir_text)] | None = None
    org_configs: list[OrgConfig] | None = None
    sandbox_config: SandboxConfig | None = None


class SkillInfo(BaseModel):
    name: str
    type: Literal["repo", "knowledge", "agentskills"]
    content: str
    triggers: list[str]
    source: str | None
    description: str | None
    is_agentskills_format: bool
    disable_model_invocation: bool


class SkillsResponse(BaseModel):
    """The merged skills (a later source wins a name) and how many each source gave."""

    skills: list[SkillInfo]
    sources: dict[str, int]


class SkillCatalogEntry(SkillInfo):
    origin: Literal["public", "user"]


class SkillCatalog(BaseModel):
    """The public and user skills an agent profile may choose from."""

    skills: list[SkillCatalogEntry]


class InstalledSkill(Installed):
    """A skill installed in the user's `~/.openhands/skills/installed/`."""


class InstalledSkills(BaseModel):
    """Every installed skill, enabled or not."""

    skills: list[InstalledSkill]


class RefreshedSkill(BaseModel):
    """Installed again from its source."""

    message: str
    skill: InstalledSkill


class SyncResult(BaseModel):
    """The reference's answer (this server answers 501: a sync is a `git pull`)."""

    status: Literal["success", "error"]
    message: str


class MarketplaceSkill(BaseModel):
    name: str
    description: str | None
    source: str
    installed: bool


class MarketplaceCatalog(BaseModel):
    """The reference's answer (this server answers 501: the catalog is on GitHub)."""

    skills: list[MarketplaceSkill]


@blueprint.post("/api/skills")
@responses(SkillsResponse, *BODY, 501)
async def load_skills() -> Response:
    """The skills an agent would load: sandbox hosts < public < user < project."""
    body = await parse_body(SkillsRequest)
    if body.load_org and body.org_configs:
        raise ApiError(501, f"Organisation skills are cloned from their repositories; {OFFLINE}")
    if body.load_public and any(r.auto_load for r in body.registered_marketplaces):
        raise ApiError(501, f"Marketplace skills are fetched from their sources; {OFFLINE}")
    urls = body.sandbox_config.exposed_urls if body.sandbox_config else []
    sources = skills.SkillSources(
        load_public=body.load_public,
        load_user=body.load_user,
        load_project=body.load_project,
        project_dir=project_dir(body.project_dir),
        marketplace_path=body.marketplace_path,
        exposed_urls=[(u.name, u.url, u.port) for u in urls],
    )
    found, counts = await run_sdk(skills.load, sources)
    return json_response({"skills": found, "sources": counts})


@blueprint.get("/api/skills/catalog")
@responses(SkillCatalog)
async def skill_catalog() -> Response:
    """Public and user skills (no project: those load with a conversation's workspace)."""
    return json_response({"skills": await run_sdk(skills.catalog)})


@blueprint.post("/api/skills/sync")
@responses(SyncResult, 501)
async def sync_skills() -> Response:
    """Refreshing the public repository's clone needs GitHub: not done here."""
    raise ApiError(501, f"Syncing public skills needs the network; {OFFLINE}")


@blueprint.get("/api/skills/marketplace")
@responses(MarketplaceCatalog, 501)
async def skills_marketplace() -> Response:
    """The marketplace catalog comes from the public repository on GitHub: not here."""
    raise ApiError(501, f"The skills marketplace is read from GitHub; {OFFLINE}")


add_installed_routes(
    blueprint, "/api/skills", skills.SKILLS, InstalledSkill, InstalledSkills, RefreshedSkill
)
