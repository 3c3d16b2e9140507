"""The reference server's LLM catalog (`/api/llm/providers`, `/models`, `/models/verified`):
what a UI offers in its model picker, from the data litellm and the SDK ship (no network)."""

from __future__ import annotations

import trio
from quart import Blueprint, Response
from quart_schema import document_querystring

from trio_openhands.core import llm_catalog
from trio_openhands.web.api.settings_models import Models, ModelsQuery, Providers, VerifiedModels
from trio_openhands.web.common import app, json_response
from trio_openhands.web.openapi import responses
from trio_openhands.web.request_parsing import parse_query

blueprint = Blueprint("api_llm", __name__)


@blueprint.get("/api/llm/providers")
@responses(Providers)
async def list_providers() -> Response:
    """Every provider litellm supports, by name."""
    await app().sdk_loader.wait_ready()
    return json_response({"providers": await trio.to_thread.run_sync(llm_catalog.providers)})


@blueprint.get("/api/llm/models")
@document_querystring(ModelsQuery)
@responses(Models, 422)
async def list_models() -> Response:
    """Every model litellm knows, or those of `provider` (an unknown one has none)."""
    query = parse_query(ModelsQuery)
    await app().sdk_loader.wait_ready()
    found = await trio.to_thread.run_sync(llm_catalog.models, query.provider)
    return json_response({"models": found})


@blueprint.get("/api/llm/models/verified")
@responses(VerifiedModels)
async def list_verified_models() -> Response:
    """The models the SDK's authors verified, by provider."""
    await app().sdk_loader.wait_ready()
    return json_response({"models": llm_catalog.verified_models()})
