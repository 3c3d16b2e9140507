"""The supervisor's catalog: every conversation's record, loaded or not.

A dict of `ConversationRecord`s by id (what meta.json, or the shared store's catalog,
holds), with the searches both dialects page through. With the shared store, other
instances create, change and delete conversations too: `sync` re-reads the whole catalog
for a listing, `refresh` one record (with the status its stored log says last), and `find`
reads a record this instance has not seen yet. Records of conversations loaded here are the
live ones and are never replaced.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trio_openhands.core.conversation_record import ConversationRecord
from trio_openhands.core.errors import ApiError

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterable

    from trio_openhands.core.supervisor import Supervisor

log = logging.getLogger(__name__)

# Search orders: the record attribute sorted on, and whether newest first.
_SORT_KEYS = {
    "CREATED_AT": ("created_at", False),
    "CREATED_AT_DESC": ("created_at", True),
    "UPDATED_AT": ("updated_at", False),
    "UPDATED_AT_DESC": ("updated_at", True),
}


class Records(dict["uuid.UUID", ConversationRecord]):
    """The records by id; `supervisor` tells which are loaded and what the store is."""

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self._supervisor = supervisor

    def add_json(self, data: dict[str, Any]) -> ConversationRecord | None:
        try:
            record = ConversationRecord.from_json(data)
        except (KeyError, ValueError) as error:
            log.error("skipping a stored conversation with bad metadata: %s", error)
            return None
        if record.status == "running" and not self._supervisor.store.shared:
            record.status = "paused"  # the server stopped mid-run: not running now
        self[record.id] = record
        return record

    async def sync(self) -> None:
        """With the shared store, the catalog as the database has it now (every instance's
        conversations), for a listing; records of conversations loaded here are kept."""
        if not self._supervisor.store.shared:
            return
        seen: set[uuid.UUID] = set()
        for data in await self._supervisor.store.read_records():
            try:
                record = ConversationRecord.from_json(data)
            except (KeyError, ValueError):
                continue
            seen.add(record.id)
            if record.id not in self._supervisor.loaded:
                self[record.id] = record
        for conversation_id in list(self):
            kept = seen | self._supervisor.loaded.keys() | self._supervisor.loading.keys()
            if conversation_id not in kept:
                del self[conversation_id]

    async def refresh(self, conversation_id: uuid.UUID) -> None:
        """With the shared store, a conversation not loaded here as the database has it
        now: its record, with the status its log says last (what its owner's GET says)."""
        if not self._supervisor.store.shared or conversation_id in self._supervisor.loaded:
            return
        data = await self._supervisor.store.read_record(conversation_id)
        if data is None:
            if conversation_id not in self._supervisor.loading:
                self.pop(conversation_id, None)
            return
        status = await self._supervisor.store.logged_status(conversation_id)
        if conversation_id in self._supervisor.loaded:  # loaded here meanwhile: its record rules
            return
        record = self.add_json(data)
        if record is not None and status is not None:
            record.status = status

    async def find(self, conversation_id: uuid.UUID) -> ConversationRecord | None:
        """The conversation's record; from the shared store when this instance has not seen
        it (another instance created it since this one started)."""
        record = self.get(conversation_id)
        if record is None and self._supervisor.store.shared:
            data = await self._supervisor.store.read_record(conversation_id)
            if data is not None:  # a concurrent `find` may have added it meanwhile
                record = self.get(conversation_id) or self.add_json(data)
        return record

    def page(
        self, *, status: str | None, sort_order: str, page_id: str | None, limit: int
    ) -> tuple[list[ConversationRecord], str | None]:
        """One page of the catalog, for both dialects' search.

        Sorted by the chosen time with ties broken by id, so pages of creation order never
        skip or repeat while conversations are created. `page_id` is the dashless id of the
        page's first item (the reference's format); an unknown one is a 400, not a restart.
        Returns the page and the next page's id.
        """
        attribute, descending = _SORT_KEYS[sort_order]
        records = [r for r in self.listed() if status in (None, r.status)]
        records.sort(key=lambda r: (getattr(r, attribute), r.id.hex), reverse=descending)
        start = 0
        if page_id is not None:
            positions = {r.id.hex: i for i, r in enumerate(records)}
            found = positions.get(page_id.replace("-", "").lower())
            if found is None:
                raise ApiError(400, f"Unknown page_id: {page_id}")
            start = found
        following = records[start + limit : start + limit + 1]
        return records[start : start + limit], following[0].id.hex if following else None

    def listed(self) -> Iterable[ConversationRecord]:
        for record in self.values():
            loaded = self._supervisor.loaded.get(record.id)
            if loaded is not None:
                record.status = loaded.status
            yield record
