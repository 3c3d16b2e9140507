"""Commands for a conversation another instance owns, forwarded to that instance.

With the shared store, a conversation's SDK object and runs live on the instance holding
its lease. A request naming a conversation (`<raw_id>` in its path) that this instance does
not hold is sent on, over HTTP, to the owner's registered internal address, and the
owner's answer is returned as it is (status, body, content type): so a pause from any
instance returns once the owner's run is paused. The session key goes along (the owner
checks it again). When no live instance holds the lease, nothing is forwarded: the route
claims the conversation and loads it here.

What is not forwarded: WebSockets (a socket on any instance follows the store, see
web/followed_socket.py), and the reads every instance serves from the database: the
listings, a conversation's record (`LISTINGS`, `READS`) and its event reads
(web/stored_events.py). A forwarded request carries
`X-OpenHands-Forwarded`; one that arrives with it is never forwarded again (an owner that
changed meanwhile answers itself, 409 if it cannot). An owner that cannot be reached is a
503 (logged): its lease expires if it is dead, and the next request, or the sweeper, takes
the conversation over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
from quart import Response, request

from trio_openhands.core.validation import strict_uuid
from trio_openhands.stores.postgres.fencing import LeaseLost
from trio_openhands.web import stored_events
from trio_openhands.web.json_errors import json_error
from trio_openhands.web.security import API_KEY_HEADER

if TYPE_CHECKING:
    from trio_openhands.stores.postgres.conversation_store import PostgresStore
    from trio_openhands.web.app import OpenHandsApp

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-OpenHands-Forwarded"
# Headers of the request that go along to the owner, and of its answer that come back.
_REQUEST_HEADERS = ("Content-Type", "Accept", API_KEY_HEADER, "X-Expose-Secrets")
_RESPONSE_HEADERS = ("Content-Type", "Content-Disposition", "Location")
# Served by any instance from the database: the listings (the catalog as it is now), and a
# conversation's record (with the status its stored log says last).
LISTINGS = frozenset(
    {
        "/conversations",
        "/conversations/search",
        "/api/conversations",
        "/api/conversations/search",
        "/api/conversations/count",
    }
)
READS = frozenset({"/conversations/<raw_id>", "/api/conversations/<raw_id>"})
# A forwarded command may wait for a run to stop, or a tool call to end (execute_bash).
FORWARD_TIMEOUT = httpx.Timeout(330.0, connect=5.0)


def install_forwarding(app: OpenHandsApp) -> None:
    """Forward requests for conversations owned elsewhere (only with the shared store)."""
    client: list[httpx.AsyncClient] = []

    @app.before_request
    async def _forward() -> Response | None:  # pyright: ignore[reportUnusedFunction]
        rule = request.url_rule.rule.rstrip("/") if request.url_rule is not None else ""
        if request.method == "GET" and rule in LISTINGS and app.supervisor_ready:
            await app.supervisor.records.sync()
            return None
        raw_id = (request.view_args or {}).get("raw_id")
        if not isinstance(raw_id, str) or FORWARDED_HEADER in request.headers:
            return None
        conversation_id = strict_uuid(raw_id)
        if conversation_id is None or not app.supervisor_ready:
            return None  # the route answers its 422 (or 503)
        store: PostgresStore = app.supervisor.store  # type: ignore[assignment]
        if store.holds(conversation_id) or conversation_id in app.supervisor.loaded:
            return None
        if request.method == "GET" and rule in READS:
            await app.supervisor.records.refresh(conversation_id)  # served from the database
            return None
        if request.method == "GET" and rule in stored_events.RULES:
            event_id = (request.view_args or {}).get("event_id")
            return await stored_events.answer(store, rule, conversation_id, event_id)
        address = await store.owner_address(conversation_id)
        if address is None:
            return None
        if not client:
            client.append(httpx.AsyncClient(timeout=FORWARD_TIMEOUT))
        return await forward(client[0], address, store.instance_id)

    @app.errorhandler(LeaseLost)
    async def _lease_lost(error: LeaseLost) -> Response:  # pyright: ignore[reportUnusedFunction]
        # An SDK write refused mid-command: another instance took the conversation over.
        log.warning("%s", error)
        return json_error(503, "The conversation moved to another instance; retry")

    @app.after_serving
    async def _close_client() -> None:  # pyright: ignore[reportUnusedFunction]
        if client:
            await client.pop().aclose()


async def forward(client: httpx.AsyncClient, address: str, instance_id: str) -> Response:
    """The current request, answered by the instance at `address`."""
    headers = {name: value for name in _REQUEST_HEADERS if (value := request.headers.get(name))}
    headers[FORWARDED_HEADER] = instance_id
    body = await request.get_data()
    url = address.rstrip("/") + request.path
    try:
        answer = await client.request(
            request.method,
            url,
            params=list(request.args.items(multi=True)),
            content=body if isinstance(body, bytes) else body.encode(),
            headers=headers,
        )
    except httpx.HTTPError as error:
        log.warning(
            "forwarding %s %s to %s failed: %s", request.method, request.path, address, error
        )
        return json_error(503, "The instance running this conversation did not answer; retry")
    log.info("forwarded %s %s to %s: %d", request.method, request.path, address, answer.status_code)
    response = Response(answer.content, status=answer.status_code)
    for name in _RESPONSE_HEADERS:
        if (value := answer.headers.get(name)) is not None:
            response.headers[name] = value
    return response
