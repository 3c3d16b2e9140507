"""The `/goal` loop: the agent pursues an objective over several runs of one conversation,
a judge (the conversation's LLM, through the SDK's `GoalController`) deciding after each
run whether it is done, else sending its follow-up.

The loop is a task in the conversation's nursery with a cancel scope of its own:
`goal/stop` cancels it (a run in progress goes on), a user's message supersedes it (see
`Conversation.send_message`), a delete or shutdown ends it with the conversation. Every
step is an ordinary one of the conversation (a message, a run, whose pause ends the loop);
the judge's LLM call runs in a thread owned by the conversation. The loop's status is
logged as the reference logs it, a state update `goal` (`GoalStatus`), so a client shows
it and `goal/resume` continues the last interrupted loop, also after a restart.
"""

from __future__ import annotations

import contextvars
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core import sdk_bridge
from trio_openhands.core.errors import ApiError, Conflict, ValidationFailed
from trio_openhands.core.models import TextPart

if TYPE_CHECKING:
    from openhands.sdk.conversation.goal import GoalController, GoalStep

    from trio_openhands.core.conversation import Conversation

log = logging.getLogger(__name__)

BUSY = "Conversation run or goal loop already running."
GOAL_KEY = "goal"  # the state update's key, as the reference's
# A run that ends so is stopped on purpose, or cannot go on: the goal is interrupted.
_HALTING = frozenset({"paused", "error"})


@dataclass
class GoalLoop:
    """An active loop: its scope, and an event set once it has ended."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended: trio.Event = field(default_factory=trio.Event)
    settled: bool = False  # its final status is being (or has been) logged

    async def stop(self) -> None:
        self.scope.cancel()
        await self.ended.wait()


def start(conversation: Conversation, objective: str, max_iterations: int) -> None:
    """Start a loop on `objective` (a 409 while a run or another loop is in progress)."""
    from openhands.sdk.conversation.goal import GoalController

    _refuse_when_busy(conversation)
    assert conversation.sdk is not None
    try:
        controller = GoalController(
            objective, conversation.sdk.agent.llm, max_iterations=max_iterations
        )
    except ValueError as error:  # a blank objective (the request model refuses it first)
        raise ValidationFailed.single(("body", "objective"), str(error)) from None
    _launch(conversation, controller, resume=False)


def resume(conversation: Conversation) -> None:
    """Continue the last loop that did not complete, from the round it had reached; a 400
    when there is none (never started, or complete or capped)."""
    from openhands.sdk.conversation.goal import GoalController

    # A loop that is logging its end (`settled`) may still be finishing its task: what it
    # logged decides, so a client that read `complete` gets the 400, not a 409 for a moment.
    if conversation.goal is not None and not conversation.goal.settled:
        raise Conflict(BUSY)
    last = last_status(conversation)
    if last is None or last.get("status") in ("complete", "capped"):
        raise ApiError(400, "No goal to resume: none was started, or the last one has ended")
    _refuse_when_busy(conversation)
    assert conversation.sdk is not None
    try:
        controller = GoalController(
            str(last["objective"]),
            conversation.sdk.agent.llm,
            max_iterations=int(last["max_iterations"]),
        )
        # At least one more round is judged: keep it within the cap, as the reference does.
        controller.iteration = min(int(last["iteration"]), controller.max_iterations - 1)
    except (KeyError, TypeError, ValueError):  # a status this server did not write
        raise ApiError(400, "The last goal status cannot be resumed") from None
    _launch(conversation, controller, resume=True)


async def stop(conversation: Conversation) -> None:
    """End the active loop (a no-op without one); it logs `interrupted`, resumable."""
    if conversation.goal is not None:
        await conversation.goal.stop()


def last_status(conversation: Conversation) -> dict[str, Any] | None:
    """The newest `goal` state update's value in the log, or None."""
    for event in conversation.log.iter_from(len(conversation.log) - 1, descending=True):
        # Only a goal's update is parsed (others, an `agent` say, can be large).
        if event.kind == "ConversationStateUpdateEvent" and f'"key":"{GOAL_KEY}"' in event.json:
            data = json.loads(event.json)
            if data.get("key") == GOAL_KEY and isinstance(data.get("value"), dict):
                return data["value"]
    return None


def _refuse_when_busy(conversation: Conversation) -> None:
    if conversation.goal is not None or conversation.running:
        raise Conflict(BUSY)


def _launch(conversation: Conversation, controller: GoalController, *, resume: bool) -> None:
    assert conversation.nursery is not None
    loop = conversation.goal = GoalLoop()
    # Not in the request's context (see Conversation.request_run).
    contextvars.Context().run(
        conversation.nursery.start_soon, _run_loop, conversation, controller, loop, resume
    )


async def _run_loop(
    conversation: Conversation, controller: GoalController, loop: GoalLoop, resume: bool
) -> None:
    try:
        with loop.scope:
            await _pursue(conversation, controller, resume)
        if loop.scope.cancelled_caught:  # stopped, or superseded by a user's message
            await _log_status(conversation, controller, active=False, status="interrupted")
    except trio.Cancelled:  # the conversation is closing: resumable after a restart
        if not conversation.deleted:
            with trio.CancelScope(shield=True):
                await _log_status(conversation, controller, active=False, status="interrupted")
        raise
    finally:
        if conversation.goal is loop:
            conversation.goal = None
        loop.ended.set()


async def _pursue(conversation: Conversation, controller: GoalController, resume: bool) -> None:
    """Message, run, judge, until the judge says done or the cap is reached; a failure
    (the judge's LLM down, say) leaves the goal interrupted, resumable."""
    from openhands.sdk.conversation.goal import GoalDone
    from openhands.sdk.conversation.goal.prompts import RESUME_PROMPT

    try:
        await _log_status(conversation, controller, active=True, status="running")
        nudge = RESUME_PROMPT if resume else controller.start()
        while True:
            await _send(conversation, nudge)
            conversation.request_run()
            await conversation.wait_run_finished()
            if conversation.status in _HALTING:
                log.info("conversation %s: goal halted, %s", conversation.id, conversation.status)
                await _log_status(conversation, controller, active=False, status="interrupted")
                return
            step = await _judge(conversation, controller)
            if isinstance(step, GoalDone):
                outcome = step.outcome
                log.info(
                    "conversation %s: goal %s after %d rounds",
                    conversation.id,
                    outcome.status,
                    outcome.iterations,
                )
                await _log_status(
                    conversation,
                    controller,
                    active=False,
                    status=outcome.status,
                    verdict=outcome.verdict,
                )
                return
            await _log_status(
                conversation, controller, active=True, status="running", verdict=step.verdict
            )
            nudge = step.followup
    except Exception:
        log.exception("conversation %s: the goal loop failed", conversation.id)
        await _log_status(conversation, controller, active=False, status="interrupted")


async def _send(conversation: Conversation, text: str) -> None:
    message = sdk_bridge.to_message([TextPart(text=text)])
    await conversation.send_message(message, run=False, from_goal=True)


async def _judge(conversation: Conversation, controller: GoalController) -> GoalStep:
    """The judge's verdict on the events so far (an LLM call, in an owned thread)."""
    sdk = conversation.sdk
    assert sdk is not None

    def snapshot_and_judge() -> GoalStep:
        with sdk.state:
            events = list(sdk.state.events)
        return controller.on_run_finished(events)

    return await conversation.run_owned(snapshot_and_judge)


async def _log_status(
    conversation: Conversation,
    controller: GoalController,
    *,
    active: bool,
    status: str,
    verdict: Any = None,
) -> None:
    from openhands.sdk.conversation.goal import GoalStatus

    if not active and conversation.goal is not None:
        conversation.goal.settled = True
    try:
        value = GoalStatus(
            active=active,
            status=status,  # pyright: ignore[reportArgumentType]
            iteration=controller.iteration,
            max_iterations=controller.max_iterations,
            objective=controller.objective,
            verdict=verdict,
        )
        await conversation.log_state_update(GOAL_KEY, value.model_dump(mode="json"))
    except Exception:  # never out of the loop's task: it would end the conversation's
        log.exception("conversation %s: could not log its goal status", conversation.id)
