"""The live server instances and where each can be reached by the others.

A lease names a conversation's owner by instance id; to forward a command to that owner,
another instance looks up the address the owner registered (its internal base URL). An
instance registers at start, refreshes its row with the same heartbeat that renews its
leases (the expiry is the database's clock, as for leases), and removes it on a clean stop.
A row that expired is a dead (or cut off) instance: `address_of` no longer answers for it,
and its conversations' leases expire too, so they are claimed rather than forwarded to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trio_openhands.stores.postgres.leases import DEFAULT_LEASE_SECONDS

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

    from trio_openhands.stores.postgres.database import Database

_REGISTER = """
INSERT INTO instances (id, address, expires_at)
VALUES (%(id)s, %(address)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (id) DO UPDATE SET address = excluded.address, expires_at = excluded.expires_at
"""


def new_instance_id() -> str:
    """An id for this process's lifetime: never reused, so a restarted instance holds none
    of the leases of the process it replaces."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    address: str
    expires_at: datetime


class InstanceRegistry:
    """This instance's row (`instance_id` served at `address`), and the others' lookups."""

    def __init__(
        self,
        database: Database,
        instance_id: str,
        address: str,
        *,
        ttl: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.database = database
        self.instance_id = instance_id
        self.address = address
        self.ttl = ttl

    async def register(self) -> None:
        """Announce (or refresh: the heartbeat calls it too) this instance for `ttl` s."""
        params = {"id": self.instance_id, "address": self.address, "ttl": self.ttl}
        await self.database.run(lambda connection: connection.execute(_REGISTER, params))

    async def deregister(self) -> None:
        """Leave on a clean stop: forwarding to this instance stops at once."""
        await self.database.run(
            lambda connection: connection.execute(
                "DELETE FROM instances WHERE id = %s", (self.instance_id,)
            )
        )

    async def address_of(self, instance_id: str) -> str | None:
        """Where a live instance serves; None for an unknown or expired one."""

        def address_of(connection: psycopg.Connection) -> str | None:
            row = connection.execute(
                "SELECT address FROM instances WHERE id = %s AND expires_at > now()",
                (instance_id,),
            ).fetchone()
            return None if row is None else row[0]

        return await self.database.run(address_of)

    async def live(self) -> list[Instance]:
        """Every live instance, by id."""

        def live(connection: psycopg.Connection) -> list[Instance]:
            rows = connection.execute(
                "SELECT id, address, expires_at FROM instances WHERE expires_at > now() ORDER BY id"
            ).fetchall()
            return [Instance(*row) for row in rows]

        return await self.database.run(live)
