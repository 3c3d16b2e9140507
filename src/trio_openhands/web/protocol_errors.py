"""Hypercorn answers requests it cannot parse itself, with an empty body; JsonErrorH11Protocol
gives those answers the JSON body every other error has. It is the HTTP/1.1 protocol every
connection gets (`install_h11_protocol`), so it also answers liveness probes as
liveness.py does, times idleness as keep_alive.py does and writes as direct_writes.py
does. No Quart here: the early app (early.py) installs it before the full app is imported.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import h11
import hypercorn.protocol as hypercorn_protocols

from trio_openhands.web.liveness import LivenessH11Protocol


class JsonErrorH11Protocol(LivenessH11Protocol):
    """Hypercorn's HTTP/1.1 protocol, whose own error answers (a request line or headers
    over `h11_max_incomplete_size`: 431; unparsable HTTP: 400) carry a JSON body like every
    other error of ours, instead of an empty one."""

    async def _send_error_response(self, status_code: int) -> None:
        detail = PROTOCOL_ERROR_DETAILS.get(status_code, HTTPStatus(status_code).phrase)
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


PROTOCOL_ERROR_DETAILS = {
    400: "Bad Request: the request is not valid HTTP/1.1",
    431: "Request Header Fields Too Large: the request line and headers must fit in 16 KiB",
}


def install_h11_protocol() -> None:
    """Make Hypercorn build its HTTP/1.1 connections from JsonErrorH11Protocol (it looks
    the class up in `hypercorn.protocol` for each connection). Idempotent."""
    hypercorn_protocols.H11Protocol = JsonErrorH11Protocol  # type: ignore[misc]
