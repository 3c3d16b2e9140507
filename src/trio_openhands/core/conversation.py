"""One conversation: its SDK object, its event log, and the cancel scopes that run it.

    conversation scope (DELETE / shutdown cancels it; owned by the supervisor's task)
    └── conversation nursery
        └── run task: run scope (pause cancels it)
            └── waits for a run slot, then AsyncioHost.run(sdk.arun) (the supervisor's loop)

Pause records the SDK's `PauseEvent`, then cancels the run scope: the SDK's asyncio task
is cancelled mid-LLM-call and the SDK records an InterruptEvent (interrupt does only the
latter). Resume starts a new run task. Delete cancels the
conversation scope; the supervisor then closes the SDK (terminals and other tool
processes), closes the sockets and removes the files.

Its base, `DurableSdkCalls` (durable_calls.py), holds the SDK object and makes every SDK
call durable before it returns; its record (conversation_record.py) is what the server
keeps of it when it is not loaded.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core import sdk_bridge
from trio_openhands.core.conversation_record import utc_now
from trio_openhands.core.durable_calls import DurableSdkCalls
from trio_openhands.core.errors import Conflict
from trio_openhands.core.event_log import EventLog
from trio_openhands.core.llm_telemetry import LlmTelemetry
from trio_openhands.core.message_batches import MessageBatches
from trio_openhands.core.terminal_close import settle_terminals
from trio_openhands.core.token_stream import TokenStream

if TYPE_CHECKING:
    import uuid

    from openhands.sdk import LocalConversation, Message
    from openhands.sdk.event import Event

    from trio_openhands.core.asyncio_host import AsyncioHost
    from trio_openhands.core.conversation_record import ConversationRecord
    from trio_openhands.core.goals import GoalLoop

log = logging.getLogger(__name__)

# `resume` is a no-op in these: nothing to do, or an approval is owed (respond_to_confirmation).
_NOTHING_TO_RESUME = frozenset({"finished", "waiting_for_confirmation"})


class Conversation(DurableSdkCalls):
    """Runtime state of one loaded conversation. Methods are called on the Trio thread."""

    def __init__(
        self,
        record: ConversationRecord,
        *,
        run_limiter: trio.CapacityLimiter,
        asyncio_host: AsyncioHost,
        subscriber_buffer: int,
        save: Callable[[Conversation], Awaitable[None]],
    ) -> None:
        super().__init__()
        self.record = record
        self.log = EventLog(subscriber_buffer)
        self.token_stream = TokenStream(self.log)  # a streaming LLM's deltas, to sockets
        self.scope = trio.CancelScope()  # the conversation's lifetime
        self.nursery: trio.Nursery | None = None
        self.closed = trio.Event()
        self.deleted = False
        self.unloading = False
        self.last_used = trio.current_time()
        self._host = asyncio_host  # shared by every conversation: see asyncio_host.py
        self._run_limiter = run_limiter
        self._save = save  # persists the record: a restart must know a run was in progress
        self._run_scope: trio.CancelScope | None = None
        self._run_finished = trio.Event()
        self.kept_sessions: list[int] = []  # see close_runtime
        self._run_finished.set()
        self._run_wanted = False
        # A resume that came while the run task was ending (its settled status already
        # shown): the next run starts as soon as this one has ended.
        self._run_again = False
        self._pausing = False  # a pause (not an interrupt) is cancelling the run
        # The log's execution_status, kept as REST shows it (see keep_state_update). Both
        # are read and written under the SDK's state lock, on whichever thread holds it.
        self._status_held = False
        self._logged_status: str | None = None
        # What REST shows of the run task: "none", "starting" (until its `running` update
        # is logged), "running", "settled" (its settled status logged, the task ending).
        self._run_phase = "none"
        self.waiting_for_slot = False
        self.goal: GoalLoop | None = None  # an active /goal loop (core/goals.py)
        # Messages posted while one is being sent go to the SDK together (its module).
        self.messages = MessageBatches(self.send_batch_durably)
        # Called on the Trio thread when a run task ends, after its settled status is
        # published (the /api sockets send a full_state snapshot then). Must not raise.
        self.run_end_listeners: set[Callable[[], None]] = set()
        self.llm_telemetry = LlmTelemetry()  # stats, completion logs: after each LLM call
        self._token = trio.lowlevel.current_trio_token()

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def running(self) -> bool:
        """Whether a run is in progress (waiting for a slot included) and has not settled."""
        return self._run_phase in ("starting", "running") or self._run_again

    @property
    def status(self) -> str:
        """The status a client may rely on: `running` from the moment a run is asked for
        (unless it waits for a slot; its `running` update follows at once), and once the
        run has ended, its settled status (the SDK's), at the instant it enters the log,
        after every event of the run: a client that reads `error` finds the error event,
        one that reads `paused` finds the pause, one woken by a status frame reads it."""
        if self.sdk is None:
            return self.record.status
        if self.running and not self.waiting_for_slot:
            return "running"
        return sdk_bridge.status_of(self.sdk)

    def touch(self) -> None:
        """Note a use: an unused conversation is unloaded after `idle_unload_seconds`."""
        self.last_used = trio.current_time()

    async def wait_unused(self, idle_seconds: float) -> None:
        """Return once no run, goal loop, socket or request has used the conversation for
        `idle_seconds`."""
        while True:
            await trio.sleep_until(self.last_used + idle_seconds)
            busy = self._run_scope is not None or self.goal is not None
            if busy or self.log.statistics()["subscribers"]:
                self.touch()
            elif trio.current_time() >= self.last_used + idle_seconds:
                return

    # -- events from the SDK (its threads, its lock held: hand over, never wait) --------

    def on_sdk_event(self, event: Event) -> None:
        try:
            if self.files is not None and not self.files.deferring:
                self.files.sync()  # a run's event is on disk before a subscriber sees it
            text = sdk_bridge.serialize_event(event)
            self._token.run_sync_soon(self._append, event, text)
            if self.sdk is not None:
                self.llm_telemetry.after_event(self.sdk, event, self.keep_state_update)
        except trio.RunFinishedError:
            pass
        except Exception:  # a raising callback would end the SDK's run in error
            log.exception("conversation %s: could not hand over an event", self.id)

    def keep_state_update(self, event: Event) -> bool:
        """Whether a state change enters the log (on an SDK thread, its lock held).

        The log's `execution_status` updates follow the status REST shows: `running` is
        logged when a run starts, and the SDK's other statuses are held back during the
        run, whose settled status is logged once it has ended, after its last event
        (REST says `running` until then). So a client that sees a status frame reads the
        same status over REST, and one waiting for a run's end is woken when it ends."""
        status = sdk_bridge.logged_status_of(event)
        if status is None:
            return True
        if (self._status_held and status != "running") or status == self._logged_status:
            return False
        self._logged_status = status
        return True

    def _append(self, event: Event, text: str) -> None:
        logged = self.log.append(event, text)
        if self.events is not None:
            self.events.add(logged)
        self.record.updated_at = utc_now()
        # The status REST shows changes with the log's, at the same instant.
        if (status := sdk_bridge.logged_status_of(event)) is not None:
            if self._run_phase == "starting" and status == "running":
                self._run_phase = "running"
            elif self._run_phase == "running" and status != "running":
                self._run_phase = "settled"

    def adopt(self, sdk: LocalConversation) -> None:
        """Take a freshly opened SDK conversation and rebuild the log from its events."""
        self.sdk = sdk
        self.llm_telemetry.watch(sdk)
        for event in list(sdk.state.events):
            logged = self.log.append(event, sdk_bridge.serialize_event(event))
            if self.events is not None:  # what a previous owner had not stored yet
                self.events.add(logged)
            self._logged_status = sdk_bridge.logged_status_of(event) or self._logged_status

    # -- runs ---------------------------------------------------------------------------

    def request_run(self) -> None:
        """Make sure a run will see everything sent so far: start one, or flag the current
        one to go again, so a message that lands as a run ends is never stranded."""
        self._run_wanted = True
        if self._run_scope is None and self.nursery is not None and not self.deleted:
            self._run_scope = trio.CancelScope()
            self._run_phase = "starting"
            self._run_finished = trio.Event()
            # Not in the caller's context: a request's (and its body) would stay referenced
            # from the run, and from the SDK's asyncio tasks it starts, long after.
            contextvars.Context().run(self.nursery.start_soon, self._run, self._run_scope)

    async def _run(self, run_scope: trio.CancelScope) -> None:
        assert self.sdk is not None
        sdk = self.sdk
        run_finished = self._run_finished
        try:
            with run_scope:
                self.waiting_for_slot = True
                async with self._run_limiter:
                    self.waiting_for_slot = False
                    await self._log_state_update("execution_status", "running")
                    self._run_phase = "running"  # also when the log said so already
                    self._status_held = True
                    await self._save(self)
                    while self._run_wanted:
                        self._run_wanted = False
                        log.info("conversation %s: run started", self.id)
                        try:
                            await self._host.run(sdk.arun, before_cancel=self._pause_on_loop)
                        except Exception as error:
                            await self._report_run_failure(sdk, error)
                            break
                        log.info(
                            "conversation %s: run ended %s", self.id, sdk_bridge.status_of(sdk)
                        )
            if run_scope.cancelled_caught:
                log.info("conversation %s: run cancelled, %s", self.id, sdk_bridge.status_of(sdk))
        finally:
            self.waiting_for_slot = False
            self._run_wanted = False
            self._pausing = False
            self._status_held = False
            with trio.CancelScope(shield=True):
                # The run's events are all in the log now: its settled status follows them.
                if not self.deleted and not self.lost:
                    await self._log_state_update("execution_status", sdk_bridge.status_of(sdk))
                self._run_phase = "none"
                self._run_scope = None
                if self._run_wanted or self._run_again:  # asked for once settled
                    self._run_again = False
                    self.request_run()
                for listener in list(self.run_end_listeners):
                    listener()
                await self._save(self)
            run_finished.set()

    async def _report_run_failure(self, sdk: LocalConversation, error: Exception) -> None:
        """The SDK reports what fails inside its run; what failed before it could (its
        plugins, its agent's start) becomes an error event and the `error` status here."""
        try:
            reported = await self._call_durably(sdk_bridge.blocking_report_run_failure, sdk, error)
        except Exception:
            log.exception("conversation %s: could not report its failed run", self.id)
            return
        if not reported or sdk_bridge.is_plugin_failure(error):
            log.warning("conversation %s: run failed: %s", self.id, error)
        else:
            log.error("conversation %s: run failed", self.id, exc_info=error)

    async def _log_state_update(self, key: str, value: Any) -> None:
        try:
            await self.log_state_update(key, value)
        except Exception:  # the run goes on (or ends) all the same
            log.exception("conversation %s: could not log its %s", self.id, key)

    def _pause_on_loop(self) -> None:
        """Called on the asyncio loop's thread right before the run's task is cancelled:
        for a pause, the SDK's `pause()` (status `paused` and a `PauseEvent`). The run holds
        the state lock on that thread across a step, and the lock is re-entrant per thread,
        so this never waits for the step; the step is cancelled right after."""
        if self._pausing and self.sdk is not None:
            self.sdk.pause()

    async def pause(self) -> None:
        """Stop the agent now, as the SDK's `pause()` would between steps: a `PauseEvent`
        (a no-op unless running or idle), then the step in flight aborted (its
        `InterruptEvent`). `paused` when this returns."""
        self._pausing = self._run_scope is not None
        await self.interrupt()

    async def interrupt(self) -> None:
        """Abort the step in flight (the SDK records an `InterruptEvent` and `paused`); with
        no run in progress, a pause, as the SDK's `interrupt()` falls back to."""
        assert self.sdk is not None
        self._run_again = False  # a resume it comes after is overruled
        if self._run_scope is not None:
            self._run_scope.cancel()
            await self._run_finished.wait()
        if self.status in ("idle", "running"):
            # Not running, or cancelled while waiting for a slot: the SDK records the pause.
            await self._call_durably(self.sdk.pause)
            await self._save(self)  # an ended run task has saved the record itself

    async def log_state_update(self, key: str, value: Any) -> None:
        """A change made outside the SDK (title, tags), logged as the SDK logs its own."""
        assert self.sdk is not None
        await self._call_durably(
            sdk_bridge.blocking_log_state_update, self.sdk, self.keep_state_update, key, value
        )

    def resume(self) -> None:
        """Start a run unless one is going or there is nothing to do. A run task that is
        ending already shows its settled status (say `error`) while it stores it: a resume
        then is not dropped, it starts the next run once the task has ended."""
        if self.status in _NOTHING_TO_RESUME:
            return
        if self._run_scope is None:
            self.request_run()
        elif self._run_phase == "settled":
            self._run_again = True

    async def wait_run_finished(self) -> None:
        await self._run_finished.wait()

    async def send_message(self, message: Message, run: bool, *, from_goal: bool = False) -> None:
        """A new message supersedes an action waiting for approval: the action is rejected,
        as the SDK itself does when a message lands mid-step, so that the next run cannot
        execute it unapproved. A user's message also supersedes a /goal loop, as in the
        reference (the loop's own messages are `from_goal`)."""
        assert self.sdk is not None
        if self.goal is not None and not from_goal:
            await self.goal.stop()
        if sdk_bridge.status_of(self.sdk) == "waiting_for_confirmation":
            await self._call_durably(
                self.sdk.reject_pending_actions, "Superseded by a new user message"
            )
        try:
            await self.messages.send(message)
        except Exception as error:
            if not sdk_bridge.is_plugin_failure(error):
                raise
            log.warning("conversation %s: its plugins could not be loaded: %s", self.id, error)
            raise Conflict(f"The conversation's plugins could not be loaded: {error}") from None
        await self.flush_events()
        if run:
            self.request_run()

    async def respond_to_confirmation(self, accept: bool, reason: str) -> None:
        assert self.sdk is not None
        if accept:
            self.request_run()  # the SDK runs the pending actions as an implicit approval
        else:
            await self._call_durably(self.sdk.reject_pending_actions, reason)

    # -- end of life --------------------------------------------------------------------

    async def close_runtime(
        self, close_code: int, reason: str, *, keep_background_jobs: bool = False
    ) -> None:
        """Release what the conversation holds, its terminals' background jobs too unless
        told to keep them (an idle unload: see terminal_close.py; their sessions are then in
        `kept_sessions`). Shielded by the caller."""
        if self._run_scope is not None:
            self._run_scope.cancel()
            await self._run_finished.wait()
        self.log.close(close_code, reason)
        if self.sdk is not None:
            self.record.status = self.status
            try:
                self.kept_sessions = await trio.to_thread.run_sync(
                    self._close_sdk, self.sdk, keep_background_jobs
                )
            except Exception:
                log.exception("conversation %s: closing the SDK conversation failed", self.id)

    def _close_sdk(self, sdk: Any, keep_background_jobs: bool) -> list[int]:
        # The SDK's close races its terminal readers otherwise.
        kept = settle_terminals(sdk, keep_background_jobs=keep_background_jobs)
        self._durably(sdk.close)
        return kept

    def workspace_dir(self, default: Path) -> Path:
        working_dir = (self.record.request.get("workspace") or {}).get("working_dir")
        return Path(working_dir) if working_dir else default
