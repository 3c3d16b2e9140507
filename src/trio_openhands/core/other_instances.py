"""What the shared store reports of the other instances, and what the supervisor does then.

With a database several instances serve the same conversations, each loaded only on the
instance holding its lease (stores/postgres/). The store calls these: another instance
took over a conversation loaded here (it stops here, writing nothing), deleted one (its
record goes), or died holding one (its lease expired: it is claimed and restored here).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from trio_openhands.core.errors import ApiError, NotFound
from trio_openhands.stores.conversation_store import OwnedElsewhere

if TYPE_CHECKING:
    import uuid

    from trio_openhands.core.supervisor import Supervisor

# The supervisor's logger, as before these moved here: the same log lines.
log = logging.getLogger("trio_openhands.core.supervisor")


class OtherInstances:
    """The store's `on_lost`, `on_deleted` and `on_expired`, acted on by `supervisor`."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def lease_lost(self, conversation_id: uuid.UUID) -> None:
        """Another instance took the conversation over: stop it here, writing nothing."""
        conversation = self._supervisor.loaded.get(conversation_id)
        if conversation is not None:
            conversation.lost = True
            conversation.scope.cancel()

    def deleted_elsewhere(self, conversation_id: uuid.UUID) -> None:
        """Its record goes; so do the background jobs an unload here had kept for it."""
        supervisor = self._supervisor
        if conversation_id not in supervisor.loaded:
            supervisor.records.pop(conversation_id, None)
            supervisor.end_kept_jobs_soon(conversation_id)

    async def take_over(self, conversation_id: uuid.UUID) -> None:
        """A dead instance's conversation (its lease expired): claim it and restore it here,
        as after a crash (paused, an interrupted tool call reported)."""
        supervisor = self._supervisor
        if supervisor.shutting_down or conversation_id in supervisor.loaded:
            return
        try:
            conversation = await supervisor.get(conversation_id)
        except OwnedElsewhere:
            return  # another instance was quicker
        except NotFound:  # its instance died before saving its record: nothing to restore
            try:
                await supervisor.store.claim(conversation_id)
                await supervisor.store.release(conversation_id)  # so sweepers stop finding it
            except OwnedElsewhere:
                pass
            return
        except ApiError as error:
            log.warning("conversation %s: taking it over failed: %s", conversation_id, error)
            return
        log.warning(
            "conversation %s: taken over from a dead instance (%s)",
            conversation_id,
            conversation.status,
        )
