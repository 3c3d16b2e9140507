"""A conversation's title, made by its own LLM after its first user message (`autotitle`).

A task in the conversation's nursery (a delete or unload cancels it) follows the event log
until the first user message, then asks the SDK for a title in a worker thread. The run
never waits for it, and it never fails the run: an LLM that errs gives the SDK's fallback
(the message, truncated), and anything else leaves the conversation without a title.
A title set meanwhile (a PATCH) is never overwritten.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core.event_log import LoggedEvent

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_openhands.core.conversation import Conversation

log = logging.getLogger(__name__)

MAX_TITLE_LENGTH = 50


def _is_first_user_message(frame: object) -> bool:
    return (
        isinstance(frame, LoggedEvent) and frame.kind == "MessageEvent" and frame.source == "user"
    )


def blocking_title(sdk: Any, llm: Any | None) -> str:
    """The SDK's title for the conversation (with `llm`, or the agent's when None)."""
    return sdk.generate_title(llm=llm, max_length=MAX_TITLE_LENGTH)


async def title_after_first_message(
    conversation: Conversation,
    set_title: Callable[[str], Awaitable[None]],
    llm: Any | None = None,
) -> None:
    """Run in the conversation's nursery; returns once titled (or if it cannot be)."""
    with conversation.log.subscribe(-1) as subscription:
        async for frame in subscription.frames():
            if _is_first_user_message(frame):
                break
        else:
            return  # the log closed first (deleted, unloaded, shutting down)
    sdk = conversation.sdk
    if sdk is None or conversation.record.title:
        return
    try:
        title = await trio.to_thread.run_sync(blocking_title, sdk, llm, abandon_on_cancel=True)
    except Exception as error:  # e.g. the SDK found no message on the active branch
        log.warning("conversation %s: no title: %s", conversation.id, error)
        return
    title = " ".join(title.split())[:200]
    if title and not conversation.record.title and not conversation.deleted:
        await set_title(title)
        log.info("conversation %s: titled %r", conversation.id, title)
