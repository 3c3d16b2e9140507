"""What the end of a conversation's task leaves behind, by why it ended.

Deleted: its runtime closed (sockets told 4004), what an earlier unload kept running ended,
its files or rows removed. Taken over by another instance: closed here (1001), nothing
written, since the store is no longer ours to write. Unloaded or shutting down: closed
(1001), its record saved, its events flushed, its lease released; an unload keeps its
terminals' background jobs (kept_jobs.py). Then, whatever the reason, its files closed and
its events' text freed at once. Called shielded by the conversation's task
(supervisor.py), which then takes it off the loaded list.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from trio_openhands.core import sdk_bridge
from trio_openhands.core.event_log import CLOSE_CONVERSATION_DELETED, CLOSE_GOING_AWAY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.kept_jobs import KeptJobs
    from trio_openhands.stores.conversation_store import ConversationStore

log = logging.getLogger(__name__)


async def release_conversation(
    conversation: Conversation,
    *,
    store: ConversationStore,
    kept_jobs: KeptJobs,
    save: Callable[[Conversation], Awaitable[None]],
) -> None:
    if conversation.deleted:
        await conversation.close_runtime(CLOSE_CONVERSATION_DELETED, "conversation deleted")
        await kept_jobs.end(conversation.id)
        await _logged("removing", store.remove(conversation.id), conversation)
        log.info("conversation %s: deleted", conversation.id)
    elif conversation.lost:
        await conversation.close_runtime(CLOSE_GOING_AWAY, "conversation moved")
        await kept_jobs.end(conversation.id)
        log.info("conversation %s: stopped here (taken over)", conversation.id)
    else:
        reason = "conversation unloaded" if conversation.unloading else "server shutting down"
        await conversation.close_runtime(
            CLOSE_GOING_AWAY, reason, keep_background_jobs=conversation.unloading
        )
        kept_jobs.keep(conversation.id, conversation.kept_sessions)
        await _logged("saving", _save_and_release(conversation, store, save), conversation)
    if conversation.files is not None:  # its events pack's descriptor
        await _logged(
            "closing files", trio.to_thread.run_sync(conversation.files.close), conversation
        )
    # The events' text is freed now, not at the cyclic collector's next full pass.
    conversation.log.release()
    if conversation.sdk is not None:
        sdk_bridge.drop_event_caches(conversation.sdk)


async def _save_and_release(
    conversation: Conversation,
    store: ConversationStore,
    save: Callable[[Conversation], Awaitable[None]],
) -> None:
    await save(conversation)
    await conversation.flush_events()
    await store.release(conversation.id)


async def _logged(what: str, step: Awaitable[None], conversation: Conversation) -> None:
    """A last store write of a closing conversation: a failure is logged, not raised
    (the conversation's task must still end and free what it holds)."""
    try:
        await step
    except Exception as error:
        log.error("conversation %s: %s it failed: %s", conversation.id, what, error)
