"""The fence every write of a conversation's owner passes: its lease must still be its own.

An owner is known by its instance id (`owner`) and the token its claim was given. Each of its
writes checks, in the write's own transaction, that the lease row still names that owner
and token, and locks the row (`FOR SHARE`) until the write commits. A takeover (a claim
increments the token) takes the same row's lock to update it, so the two serialize: either
the write commits first and the new owner reads it when it loads, or the claim commits first
and the write sees the new token, raises `LeaseLost` and changes nothing. An instance that
was paused, cut off or just slow can therefore never write after another took over.

Expiry is not part of the check: an expired lease nobody has claimed yet conflicts with no
one, and the holder may still renew it. What matters is that once another instance holds
the token, the old holder's writes fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid

    import psycopg


@dataclass(frozen=True, slots=True)
class Fence:
    """The right to write one conversation: the holder's instance id and its lease token."""

    conversation_id: uuid.UUID
    owner: str
    token: int

    def params(self) -> dict[str, object]:
        """The fence as query parameters, for `HELD` (and any query embedding it)."""
        return {
            "fence_conversation": self.conversation_id,
            "fence_owner": self.owner,
            "fence_token": self.token,
        }


class LeaseLost(RuntimeError):
    """The writer no longer holds the conversation's lease: nothing was written."""

    def __init__(self, fence: Fence) -> None:
        super().__init__(
            f"conversation {fence.conversation_id.hex}: lease token {fence.token} of "
            f"{fence.owner!r} is no longer current; the write was refused"
        )
        self.fence = fence


# A query yielding one row while the fence holds, and locking the lease row against a claim
# until the transaction ends. Embed it in a statement's WITH clause, or run it alone.
HELD = (
    "SELECT 1 FROM leases WHERE conversation_id = %(fence_conversation)s"
    " AND owner = %(fence_owner)s AND token = %(fence_token)s FOR SHARE"
)


def blocking_check(connection: psycopg.Connection, fence: Fence) -> None:
    """Raise `LeaseLost` unless `fence` holds; call it inside the write's transaction
    (`with connection.transaction():`), before the write."""
    from psycopg.pq import TransactionStatus

    if connection.info.transaction_status != TransactionStatus.INTRANS:
        raise RuntimeError("a fence check outside a transaction would protect nothing")
    if connection.execute(HELD, fence.params()).fetchone() is None:
        raise LeaseLost(fence)
