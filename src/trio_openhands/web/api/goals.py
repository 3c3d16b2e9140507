"""The reference's `/goal` routes: start, stop and resume a conversation's goal loop
(`core.goals`, the SDK's `GoalController` judging each run). Thin: parse, call, answer."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from quart import Blueprint, Response
from quart_schema import document_request

from trio_openhands.core import goals
from trio_openhands.web.api.conversations import loaded, success
from trio_openhands.web.openapi import BODY, LOADS, responses
from trio_openhands.web.request_parsing import parse_body
from trio_openhands.web.response_bodies import Success

blueprint = Blueprint("api_goals", __name__)


class StartGoalRequest(BaseModel):
    objective: str = Field(
        description="The goal to pursue and audit", json_schema_extra={"pattern": r"\S"}
    )
    max_iterations: int = Field(default=10, ge=1, description="Audit rounds before giving up")

    @field_validator("objective")
    @classmethod
    def _not_blank(cls, objective: str) -> str:
        if not objective.strip():  # the SDK's GoalController refuses it too
            raise ValueError("the objective must not be blank")
        return objective


@blueprint.post("/api/conversations/<raw_id>/goal")
@document_request(StartGoalRequest)
@responses(Success, 409, *BODY, *LOADS)
async def start_goal(raw_id: str) -> Response:
    """Starts the loop in this conversation (its messages and runs are the conversation's
    own) and answers at once; the `goal` state updates tell its progress. 409 while a run
    or another loop is in progress."""
    request = await parse_body(StartGoalRequest)
    conversation = await loaded(raw_id)
    goals.start(conversation, request.objective, request.max_iterations)
    return success()


@blueprint.post("/api/conversations/<raw_id>/goal/stop")
@responses(Success, *LOADS)
async def stop_goal(raw_id: str) -> Response:
    """Ends the loop (not the run in progress), recorded as `interrupted`: resumable."""
    conversation = await loaded(raw_id)
    await goals.stop(conversation)
    return success()


@blueprint.post("/api/conversations/<raw_id>/goal/resume")
@responses(Success, 400, 409, *LOADS)
async def resume_goal(raw_id: str) -> Response:
    """Continues the last loop that was interrupted, from its round; 400 when there is
    none, 409 while a run or a loop is in progress."""
    conversation = await loaded(raw_id)
    goals.resume(conversation)
    return success()
