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
from quart import Response, current_app, request

from trio_openhands.core.validation import strict_uuid
from trio_openhands.stores.postgres.fencing import LeaseLost
from trio_openhands.web import stored_events
from trio_openhands.web.json_errors import json_error
from trio_openhands.web.security import API_KEY_HEADER
from trio_openhands.web.streamed_body import StreamableBody

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_openhands.stores.postgres.conversation_store import PostgresStore
    from trio_openhands.web.app import OpenHandsApp

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-OpenHands-Forwarded"
# Headers of the request that go along to the owner, and of its answer that come back.
# Content-Length goes both ways: the owner applies its own size limits to a streamed body.
_REQUEST_HEADERS = ("Content-Type", "Content-Length", "Accept", API_KEY_HEADER, "X-Expose-Secrets")
_RESPONSE_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition", "Location")
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
    """The current request, answered by the instance at `address`. Both bodies stream
    (an upload or a download of any size goes through in chunks, not held in memory)."""
    headers = {name: value for name in _REQUEST_HEADERS if (value := request.headers.get(name))}
    headers[FORWARDED_HEADER] = instance_id
    url = address.rstrip("/") + request.path
    outgoing = client.build_request(
        request.method,
        url,
        params=list(request.args.items(multi=True)),
        content=_request_body() if _has_body() else b"",
        headers=headers,
    )
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as error:
        log.warning(
            "forwarding %s %s to %s failed: %s", request.method, request.path, address, error
        )
        return json_error(503, "The instance running this conversation did not answer; retry")
    log.info("forwarded %s %s to %s: %d", request.method, request.path, address, answer.status_code)
    response = Response(_answer_body(answer), status=answer.status_code)
    for name in _RESPONSE_HEADERS:
        if (value := answer.headers.get(name)) is not None:
            response.headers[name] = value
    return response


def _has_body() -> bool:
    return "Content-Length" in request.headers or "Transfer-Encoding" in request.headers


async def _request_body() -> AsyncIterator[bytes]:
    """The client's body as it arrives, at most HIGH_WATER bytes of it held here; the
    owner's route applies its own size limit (this instance's 16 MiB does not)."""
    body = request.body
    assert isinstance(body, StreamableBody)  # the app's request class makes one
    body.stream()
    idle_seconds = current_app.config["BODY_TIMEOUT"]
    while (chunk := await body.next_chunk(idle_seconds)) is not None:
        yield chunk


async def _answer_body(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The owner's body as it arrives; its connection goes back to the pool at the end,
    or when the client here goes away (the generator is closed)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()
