"""A fork: a new conversation with a copy of another's history.

The SDK's own `LocalConversation.fork` copies the events into the fork's folder, in a
worker thread owned by the source's scope (a delete of the source does not wait for it);
the store adopts that folder (`adopt_folder`: the files store keeps it where it is, the
shared store copies it into the database and removes it), and the supervisor opens it as
an ordinary conversation of ours, claimed like any, with a record, an event log and scopes
of its own, so pause, delete and sockets work on it as on any, from any instance.
"""

from __future__ import annotations

import copy
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import NotFound
from trio_openhands.stores import file_store

if TYPE_CHECKING:
    from trio_openhands.core.conversation import Conversation
    from trio_openhands.core.supervisor import Supervisor


async def fork(
    supervisor: Supervisor,
    source: Conversation,
    *,
    fork_id: uuid.UUID | None = None,
    title: str | None = None,
    tags: dict[str, str] | None = None,
    reset_metrics: bool = True,
    from_event_id: str | None = None,
) -> Conversation:
    """The fork, idle, with the source's history (up to `from_event_id`, if given: 404
    for an event the source does not have) and its settings; a 409 if `fork_id` is taken.

    The fork keeps the source's creation options (hooks, client tools...), confirmation
    policy, security analyzer and secrets, as the reference's does, but not its git
    worktree: deleting the fork must not remove the source's."""
    sdk = source.sdk
    assert sdk is not None
    if from_event_id is not None and source.log.get(from_event_id) is None:
        raise NotFound(f"Unknown from_event_id: {from_event_id}")
    fork_id = fork_id or uuid.uuid4()
    stored: dict[str, Any] = copy.deepcopy(source.record.request)
    stored.pop("worktree", None)
    stored["forked_from_conversation_id"] = str(source.id)
    stored["forked_from_event_id"] = from_event_id
    state = sdk.state
    policy, analyzer = state.confirmation_policy, state.security_analyzer
    secrets = dict(state.secret_registry.secret_sources)
    copying = partial(
        sdk_bridge.blocking_fork,
        sdk,
        fork_id,
        tags=tags,
        reset_metrics=reset_metrics,
        from_event_id=from_event_id,
    )
    folder = file_store.conversation_dir(supervisor.settings.conversations_dir, fork_id.hex)
    copied = False

    async def prepare() -> Any:  # once the fork's id is claimed
        nonlocal copied
        copied = True
        agent = await source.run_owned(copying)
        await supervisor.store.adopt_folder(fork_id, folder)
        return agent

    try:
        conversation, _ = await supervisor.create_with_agent(
            fork_id, None, stored, title=title, tags=tags, prepare=prepare
        )
    except BaseException:
        if copied and fork_id not in supervisor.records:  # a half-made fork's files
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(file_store.remove_tree, folder)
                if supervisor.store.holds(fork_id):
                    await supervisor.store.remove(fork_id)
        raise
    await conversation.set_confirmation_policy(policy)
    if analyzer is not None:
        await conversation.set_security_analyzer(analyzer)
    if secrets:
        await conversation.update_secrets(secrets)
    # The copied log ends with the source's status; the fork's is its own (idle).
    await conversation.log_state_update("execution_status", conversation.status)
    return conversation
