"""Leases: which instance owns a conversation (its live SDK object and its runs).

A lease is a row (conversation, owner instance id, fencing token, expiry). An instance
*claims* a conversation only if nobody holds it or the holder's lease has expired; each claim
gets the previous token + 1, so tokens only grow and a token names one tenure exactly. The
holder *renews* it (a heartbeat, about every ttl / 3) to keep it; a renewal fails once the
token changed, i.e. another instance took over. *Release* frees it without forgetting the
token. Every time is the database's clock (`now()`), never an instance's: instances' clocks
may disagree, the database's is the one both sides of a takeover read.

Every write an owner makes goes through `fencing` with the lease's `fence`, which is what
actually protects the data; the expiry only decides when another instance may claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trio_openhands.stores.postgres.fencing import Fence, LeaseLost

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    import psycopg

    from trio_openhands.stores.postgres.database import Database

DEFAULT_LEASE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Lease:
    """One tenure of one conversation: `expires_at` is on the database's clock (UTC)."""

    conversation_id: uuid.UUID
    owner: str
    token: int
    expires_at: datetime

    @property
    def fence(self) -> Fence:
        return Fence(self.conversation_id, self.owner, self.token)


_CLAIM = """
INSERT INTO leases AS held (conversation_id, owner, token, expires_at)
VALUES (%(conversation)s, %(owner)s, 1, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (conversation_id) DO UPDATE
    SET owner = excluded.owner, token = held.token + 1, expires_at = excluded.expires_at
    WHERE held.owner IS NULL OR held.expires_at <= now()
RETURNING conversation_id, owner, token, expires_at
"""

_RENEW = """
UPDATE leases SET expires_at = now() + make_interval(secs => %(ttl)s)
WHERE conversation_id = %(conversation)s AND owner = %(owner)s AND token = %(token)s
RETURNING conversation_id, owner, token, expires_at
"""

_RENEW_MANY = """
UPDATE leases SET expires_at = now() + make_interval(secs => %(ttl)s)
FROM unnest(%(conversations)s::uuid[], %(tokens)s::bigint[]) AS mine(conversation_id, token)
WHERE leases.conversation_id = mine.conversation_id AND leases.token = mine.token
    AND leases.owner = %(owner)s
RETURNING leases.conversation_id, leases.owner, leases.token, leases.expires_at
"""

_RELEASE = """
UPDATE leases SET owner = NULL, expires_at = now()
WHERE conversation_id = %(conversation)s AND owner = %(owner)s AND token = %(token)s
"""

_HOLDER = """
SELECT conversation_id, owner, token, expires_at FROM leases
WHERE conversation_id = %(conversation)s AND owner IS NOT NULL AND expires_at > now()
"""

_EXPIRED = """
SELECT conversation_id FROM leases
WHERE owner IS NOT NULL AND expires_at <= now() ORDER BY expires_at LIMIT %(limit)s
"""


def _lease(row: tuple[uuid.UUID, str, int, datetime]) -> Lease:
    return Lease(row[0], row[1], int(row[2]), row[3])


def blocking_claim(
    connection: psycopg.Connection, conversation_id: uuid.UUID, owner: str, ttl: float
) -> Lease | None:
    """`LeaseStore.claim` on a connection of the caller's (in a worker thread)."""
    params = {"conversation": conversation_id, "owner": owner, "ttl": ttl}
    row = connection.execute(_CLAIM, params).fetchone()
    return None if row is None else _lease(row)


class LeaseStore:
    """The leases of one instance (`owner`, its instance id), with the expiry it asks for.

    `ttl` is in seconds (default 10). Every method is async and runs in a worker thread.
    """

    def __init__(self, database: Database, owner: str, *, ttl: float = DEFAULT_LEASE_SECONDS):
        if not owner:
            raise ValueError("an instance id is required")
        self.database = database
        self.owner = owner
        self.ttl = ttl

    async def claim(self, conversation_id: uuid.UUID) -> Lease | None:
        """Take the conversation if it is free or its lease expired: the new lease (its token
        one more than the last one), or None while another live holder has it.

        This instance's own live lease is not claimed again (None too): a second claim would
        fence off the first holder's writers in this very process. Ask `holder` to tell."""
        return await self.database.run(
            lambda connection: blocking_claim(connection, conversation_id, self.owner, self.ttl)
        )

    async def renew(self, lease: Lease) -> Lease:
        """Extend the lease by `ttl` from now; raises `LeaseLost` once it is not ours (taken
        over, or released). An expired lease nobody claimed meanwhile is renewed."""
        params = {**self._key(lease), "ttl": self.ttl}

        def renew(connection: psycopg.Connection) -> Lease:
            row = connection.execute(_RENEW, params).fetchone()
            if row is None:
                raise LeaseLost(lease.fence)
            return _lease(row)

        return await self.database.run(renew)

    async def renew_many(self, leases: Sequence[Lease]) -> tuple[list[Lease], list[Lease]]:
        """The heartbeat for all of this instance's leases in one statement: (renewed, lost).

        `renewed` holds the new leases (new expiry); `lost` the given ones that are not ours
        any more: their conversations must be stopped here without writing anything."""
        mine = [lease for lease in leases if lease.owner == self.owner]
        params = {
            "owner": self.owner,
            "ttl": self.ttl,
            "conversations": [lease.conversation_id for lease in mine],
            "tokens": [lease.token for lease in mine],
        }

        def renew_many(connection: psycopg.Connection) -> list[Lease]:
            return [_lease(row) for row in connection.execute(_RENEW_MANY, params).fetchall()]

        renewed = await self.database.run(renew_many) if mine else []
        kept = {lease.conversation_id for lease in renewed}
        return renewed, [lease for lease in leases if lease.conversation_id not in kept]

    async def release(self, lease: Lease) -> bool:
        """Give the conversation up (its token stays, so its writers stay fenced off): whether
        it was still ours to release."""
        params = self._key(lease)

        def release(connection: psycopg.Connection) -> bool:
            return connection.execute(_RELEASE, params).rowcount == 1

        return await self.database.run(release)

    async def holder(self, conversation_id: uuid.UUID) -> Lease | None:
        """The live lease on the conversation (any instance's), or None if it is free."""
        params = {"conversation": conversation_id}

        def holder(connection: psycopg.Connection) -> Lease | None:
            row = connection.execute(_HOLDER, params).fetchone()
            return None if row is None else _lease(row)

        return await self.database.run(holder)

    async def expired(self, limit: int = 100) -> list[uuid.UUID]:
        """Conversations whose holder let the lease expire (a dead instance's), oldest first:
        what a sweeper claims and restores."""

        def expired(connection: psycopg.Connection) -> list[uuid.UUID]:
            return [row[0] for row in connection.execute(_EXPIRED, {"limit": limit})]

        return await self.database.run(expired)

    def _key(self, lease: Lease) -> dict[str, object]:
        return {"conversation": lease.conversation_id, "owner": lease.owner, "token": lease.token}
