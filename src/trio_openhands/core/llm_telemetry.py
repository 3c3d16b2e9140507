"""What the SDK's telemetry reports of the agent's LLM calls, logged as the reference
streams it: the `stats` (tokens, cost) after each response, so a client's live view of
the costs (`RemoteConversation.conversation_stats`, a web UI's counter) follows the run;
and, for an LLM with `log_completions`, each call's completion log as an
`LLMCompletionLogEvent`, which the SDK client writes to its own `log_completions_folder`.
With the callback set, the SDK here writes no log file (before, it wrote them on the
server's disk, at whatever folder the client named).

The SDK calls back from its LLM path with the state lock released (the network wait), so
the callbacks only note what happened. It is logged with the next event the SDK emits
(the step's action or message, which follows the response; an error's event, or the run's
settled status), from inside that event's callback: on the SDK's thread, its lock held,
as the SDK logs its own state changes, so it is persisted and ordered like them, and no
thread waits for the lock.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from trio_openhands.core import sdk_bridge

if TYPE_CHECKING:
    from collections.abc import Callable

    from openhands.sdk.event import Event

STATS_KEY = "stats"


class LlmTelemetry:
    def __init__(self) -> None:
        self._stats_changed = False
        # (filename, log data, model, usage id) of each completion log not logged yet
        self._completion_logs: deque[tuple[str, str, str, str]] = deque()
        self._logging = False

    def watch(self, sdk: Any) -> None:
        """Be called back by every LLM of the agent (again after its LLM is switched)."""
        for llm in sdk.agent.get_all_llms():
            telemetry = llm.telemetry
            telemetry.set_stats_update_callback(self._on_response)
            if llm.log_completions:
                on_log = partial(self._on_completion_log, llm.model, llm.usage_id)
                telemetry.set_log_completions_callback(on_log)

    def _on_response(self) -> None:
        self._stats_changed = True

    def _on_completion_log(self, model: str, usage_id: str, filename: str, data: str) -> None:
        self._completion_logs.append((filename, data, model, usage_id))

    def after_event(self, sdk: Any, event: Event, keep: Callable[[Event], bool]) -> None:
        """On the SDK's thread, inside an event's callback (its lock held): log what the
        LLMs reported since the last event. A new agent (its LLM switched, by a request or
        by the agent's own tool) is watched from then on. What this logs comes back through
        the same callback: that call returns at once."""
        if getattr(event, "key", None) == "agent":  # the SDK has installed it already
            self.watch(sdk)
        if self._logging or not (self._stats_changed or self._completion_logs):
            return
        self._logging = True
        try:
            while self._completion_logs:
                filename, data, model, usage_id = self._completion_logs.popleft()
                sdk_bridge.log_completion(sdk, filename, data, model, usage_id)
            if self._stats_changed:
                self._stats_changed = False
                sdk_bridge.log_state_change(sdk, keep, STATS_KEY, sdk.state.stats)
        finally:
            self._logging = False
