"""A conversation's `stats` (tokens, cost) logged after each LLM response, as the reference
streams them: a client's live view of the costs (the SDK's `RemoteConversation`
`conversation_stats`, a web UI's counter) is otherwise stale until the run ends.

The SDK calls back from its LLM path with the state lock released (the network wait), so
the callback only marks the stats changed. The update is logged with the next event the
SDK emits (the step's action or message, which follows the response), from inside that
event's callback: on the SDK's thread, its lock held, as the SDK logs its own state
changes, so it is persisted and ordered like them, and no thread waits for the lock. An
LLM call that no event follows (a title) is counted in the next update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trio_openhands.core import sdk_bridge

if TYPE_CHECKING:
    from collections.abc import Callable

    from openhands.sdk.event import Event

STATS_KEY = "stats"


class StatsUpdates:
    def __init__(self) -> None:
        self._changed = False

    def watch(self, sdk: Any) -> None:
        """Be called back by every LLM of the agent (again after its LLM is switched)."""
        for llm in sdk.agent.get_all_llms():
            llm.telemetry.set_stats_update_callback(self._on_response)

    def _on_response(self) -> None:
        self._changed = True

    def log_if_changed(self, sdk: Any, keep: Callable[[Event], bool]) -> None:
        """On the SDK's thread, inside an event's callback (its lock held)."""
        if not self._changed:
            return
        self._changed = False  # first: the update's own callback comes back here
        sdk_bridge.log_state_change(sdk, keep, STATS_KEY, sdk.state.stats)
