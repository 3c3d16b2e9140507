"""The official SDK client (`openhands.sdk.Conversation` with a remote `Workspace`, i.e.
`RemoteConversation`) driving the live server through the `/api` dialect, with and without
a session key, against the scripted LLM. Only the client's public API is used.

The client's blocking calls run in worker threads. Its `close()` stops its socket thread,
which only looks at its stop flag when a frame arrives: `SdkSession.close` sends the
conversation a frame (a PATCH, which the server pushes to sockets) until `close()` has
returned, instead of waiting out the client's 5 s join timeout.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from openhands.sdk import LLM, Agent, Conversation, Tool, Workspace
from openhands.sdk.conversation.impl.remote_conversation import RemoteConversation
from openhands.sdk.conversation.state import ConversationExecutionStatus
from openhands.sdk.event import (
    ActionEvent,
    ConversationStateUpdateEvent,
    InterruptEvent,
    MessageEvent,
    ObservationEvent,
    PauseEvent,
    StreamingDeltaEvent,
    UserRejectObservation,
)
from openhands.sdk.security.confirmation_policy import AlwaysConfirm
from pydantic import SecretStr

from tests import stored
from tests.conftest import LiveServer, start_server, test_settings, test_stores, wait_status
from tests.test_api_dialect import events_of
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from openhands.sdk.event import Event

KEY = "sdk-session-key"
STOPS = (PauseEvent, InterruptEvent)
STOP_KINDS = ("PauseEvent", "InterruptEvent")
CALL_TIMEOUT = 30  # seconds; the client's own timeouts are up to an hour
FULL_STATE = "full_state"
Status = ConversationExecutionStatus


class Frames:
    """What a client's callbacks received, in order; `wait_for` waits on the Trio side."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._changed = trio.Event()

    def __call__(self, event: Event) -> None:  # on the client's socket thread
        with self._lock:
            self._events.append(event)
        with contextlib.suppress(trio.RunFinishedError):  # the test is over
            self._token.run_sync_soon(self._notify)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> None:
        with trio.fail_after(20):
            while True:
                changed = self._changed
                if predicate(self.events):
                    return
                await changed.wait()


@dataclass
class Client:
    conversation: RemoteConversation
    workspace: Any
    frames: Frames

    @property
    def id(self) -> str:
        return str(self.conversation.id)


@dataclass
class SdkSession:
    server: LiveServer
    fake_llm: FakeLLM
    api_key: str | None
    clients: list[Client] = field(default_factory=list)

    @property
    def workspace_dir(self) -> Path:
        return self.server.settings.workspace_dir

    def agent(self, *tools: str) -> Agent:
        llm = LLM(
            model="openai/fake",
            base_url=self.fake_llm.base_url,
            api_key=SecretStr("test-key"),
            usage_id="agent",
            num_retries=0,
            input_cost_per_token=0,
            output_cost_per_token=0,
        )
        return Agent(llm=llm, tools=[Tool(name=name) for name in tools])

    def workspace(self) -> Any:
        return Workspace(
            host=self.server.url, api_key=self.api_key, working_dir=str(self.workspace_dir)
        )

    async def open(
        self,
        *tools: str,
        conversation_id: Any = None,
        delete_on_close: bool = False,
        **options: Any,
    ) -> Client:
        """A new conversation, or an attached one when `conversation_id` is given;
        `options` go to `Conversation` as they are (`hook_config=`, `agent=`...)."""
        frames = Frames(trio.lowlevel.current_trio_token())
        workspace = self.workspace()
        options.setdefault("agent", self.agent(*tools))
        conversation = await call(
            Conversation,
            workspace=workspace,
            conversation_id=conversation_id,
            callbacks=[frames],
            visualizer=None,
            delete_on_close=delete_on_close,
            **options,
        )
        assert isinstance(conversation, RemoteConversation)
        client = Client(conversation, workspace, frames)
        self.clients.append(client)
        return client

    async def close(self, client: Client) -> None:
        """`client.conversation.close()`, waking its socket thread with frames until done."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        closed = trio.Event()

        async def close_in_thread() -> None:
            await call(client.conversation.close)
            closed.set()

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close_in_thread)
                nudge = 0
                while not closed.is_set():
                    seen = len(client.frames.events)
                    nudge += 1
                    # A 404 is fine: the conversation may be deleted by now.
                    await self.server.client.patch(
                        f"/api/conversations/{client.id}", json={"tags": {"closing": str(nudge)}}
                    )
                    # Either close() is done, or the frame reached the callbacks: the socket
                    # thread was not stopped yet, so it needs another.
                    await first_of(
                        closed.wait,
                        partial(client.frames.wait_for, partial(_longer_than, seen)),
                    )
        await call(client.workspace.reset_client)

    async def aclose(self) -> None:
        for client in list(self.clients):
            await self.close(client)


def _longer_than(length: int, events: list[Event]) -> bool:
    return len(events) > length


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking client call, in a worker thread; a call that hangs fails the test (its
    thread is abandoned) rather than the suite."""
    with trio.fail_after(CALL_TIMEOUT):
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), abandon_on_cancel=True)


async def first_of(*waits: Callable[[], Any]) -> None:
    async with trio.open_nursery() as nursery:

        async def run_then_cancel(wait: Callable[[], Any]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(run_then_cancel, wait)


# The official clients against both stores without doubling the time: an open server over
# the files store, and a keyed one over PostgreSQL (the key and the store are independent);
# with one store chosen (`make test-postgres`), open and keyed over that one.
OPEN_FIRST_STORE = (None, test_stores()[0])
_SDK_SERVERS = [OPEN_FIRST_STORE, (KEY, test_stores()[-1])]


@pytest.fixture(
    params=_SDK_SERVERS,
    ids=[f"{'open' if key is None else 'session-key'}-{store}" for key, store in _SDK_SERVERS],
)
async def sdk(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> AsyncIterator[SdkSession]:
    api_key, store = request.param
    keys = () if api_key is None else (api_key,)
    settings = test_settings(tmp_path, session_api_keys=keys)
    if store == "postgres":
        url = request.getfixturevalue("postgres_url")
        settings = settings.with_changes(database_url=url, lease_seconds=3.0)
    server = await start_server(nursery, settings)
    if api_key is not None:
        server.client.headers["X-Session-API-Key"] = api_key
    session = SdkSession(server, fake_llm, api_key)
    try:
        yield session
    finally:
        with trio.CancelScope(shield=True):
            await session.aclose()
            await server.aclose()


def persisted(events: Sequence[Event]) -> list[Event]:
    """The events of the conversation's log, state updates left out."""
    return [e for e in events if not isinstance(e, ConversationStateUpdateEvent)]


def logged(events: Sequence[Event]) -> list[Event]:
    """The events of the conversation's log: all but the sockets' `full_state` snapshots."""
    return [
        e
        for e in events
        if not (isinstance(e, ConversationStateUpdateEvent) and e.key == FULL_STATE)
    ]


def titled(events: Sequence[Event]) -> bool:
    return any(isinstance(e, ConversationStateUpdateEvent) and e.key == "title" for e in events)


def agent_texts(events: Sequence[Event]) -> list[str]:
    return [
        "".join(getattr(part, "text", "") for part in e.llm_message.content)
        for e in events
        if isinstance(e, MessageEvent) and e.source == "agent"
    ]


def is_policy_update(event: Event) -> bool:
    return isinstance(event, ConversationStateUpdateEvent) and event.key == "confirmation_policy"


async def rest_status(sdk: SdkSession, client: Client) -> str:
    response = await sdk.server.client.get(f"/api/conversations/{client.id}")
    assert response.status_code == 200, response.text
    return response.json()["execution_status"]


async def test_message_answered_with_text(sdk: SdkSession) -> None:
    tag = sdk.fake_llm.script("hello", [text("Hello from the server")])
    client = await sdk.open()
    conversation = client.conversation
    await call(conversation.send_message, f"say hello {tag}")
    await call(conversation.run)
    assert conversation.state.execution_status == Status.FINISHED
    assert await rest_status(sdk, client) == "finished"
    assert agent_texts(conversation.state.events) == ["Hello from the server"]
    # The run's events all reached the callbacks before the run's end snapshot.
    received = client.frames.events
    last_snapshot = max(
        i
        for i, e in enumerate(received)
        if isinstance(e, ConversationStateUpdateEvent) and e.key == FULL_STATE
    )
    assert agent_texts(received[:last_snapshot]) == ["Hello from the server"]


async def test_terminal_tool_runs_on_the_server(sdk: SdkSession) -> None:
    command = "echo sdk-was-here > proof.txt && cat proof.txt"
    tag = sdk.fake_llm.script(
        "terminal", [tool_call("terminal", {"command": command}), finish("wrote it")]
    )
    client = await sdk.open("terminal")
    await call(client.conversation.send_message, f"write the proof {tag}")
    await call(client.conversation.run)
    events = client.conversation.state.events
    observations = [e for e in events if isinstance(e, ObservationEvent)]
    assert [o.tool_name for o in observations] == ["terminal", "finish"]
    assert "sdk-was-here" in observations[0].observation.model_dump_json()
    assert (sdk.workspace_dir / "proof.txt").read_text().strip() == "sdk-was-here"
    assert client.conversation.state.execution_status == Status.FINISHED


async def test_the_stats_are_updated_after_each_llm_response(sdk: SdkSession) -> None:
    """As the reference streams them: a `stats` update follows each LLM response, during
    the run, so the client's live `conversation_stats` counts tokens as they are spent;
    they are logged, so a client attaching later reads the same."""
    tag = sdk.fake_llm.script("stats", [tool_call("terminal", {"command": "true"}), text("ok")])
    client = await sdk.open("terminal")
    await call(client.conversation.send_message, f"count {tag}")

    def is_stats(event: Event) -> bool:
        return isinstance(event, ConversationStateUpdateEvent) and event.key == "stats"

    # The title is made with the agent's LLM after the first message: let it be done.
    await client.frames.wait_for(lambda events: titled(events) and any(map(is_stats, events)))
    await call(client.conversation.run)

    def prompt_tokens(event: Event) -> int:
        assert isinstance(event, ConversationStateUpdateEvent)
        return event.value["usage_to_metrics"]["agent"]["accumulated_token_usage"]["prompt_tokens"]

    events = logged(client.frames.events)
    kinds = [
        f"stats {prompt_tokens(e)}" if is_stats(e) else type(e).__name__
        for e in events
        if not isinstance(e, ConversationStateUpdateEvent) or is_stats(e)
    ]
    titling, first, second = (int(k.split()[1]) for k in kinds if k.startswith("stats"))
    assert 0 < titling < first < second  # each call's prompt holds the exchange before
    # Each with the event that followed its response: the action, then the answer.
    assert kinds[-5:] == [
        "ActionEvent",
        f"stats {first}",
        "ObservationEvent",
        "MessageEvent",
        f"stats {second}",
    ]
    stats = await call(lambda: client.conversation.conversation_stats)
    assert stats.get_combined_metrics().accumulated_token_usage.prompt_tokens == second
    later = await sdk.open(conversation_id=client.conversation.id)
    assert logged(later.conversation.state.events)[-len(events) :] == events


async def test_a_streaming_llms_tokens_reach_the_clients_token_callbacks(
    sdk: SdkSession,
) -> None:
    """As from the reference: an LLM with `stream: true` streams; its deltas go to the
    sockets as `StreamingDeltaEvent`s, never into the log, and the client hands them to
    its token callbacks before the message they make."""
    tag = sdk.fake_llm.script("stream", [text("streamed words arrive in pieces")])
    agent = sdk.agent()
    agent = agent.model_copy(update={"llm": agent.llm.model_copy(update={"stream": True})})
    tokens: list[str] = []

    def on_token(chunk: Any) -> None:  # on the client's socket thread
        tokens.extend(choice.delta.content or "" for choice in chunk.choices)

    client = await sdk.open(agent=agent, token_callbacks=[on_token])
    await call(client.conversation.send_message, f"stream {tag}")
    await call(client.conversation.run)

    assert "".join(tokens) == "streamed words arrive in pieces"
    assert sdk.fake_llm.requests[-1].stream
    frames = client.frames.events
    deltas = [i for i, e in enumerate(frames) if isinstance(e, StreamingDeltaEvent)]
    [answer] = [
        i for i, e in enumerate(frames) if isinstance(e, MessageEvent) and e.source == "agent"
    ]
    assert deltas
    assert max(deltas) < answer
    assert agent_texts(client.conversation.state.events) == ["streamed words arrive in pieces"]
    assert not any(isinstance(e, StreamingDeltaEvent) for e in client.conversation.state.events)
    logged_kinds = {e["kind"] for e in await events_of(sdk.server, client.id)}
    assert "StreamingDeltaEvent" not in logged_kinds
    assert "MessageEvent" in logged_kinds


async def test_completion_logs_go_to_the_clients_folder_not_the_servers_disk(
    sdk: SdkSession, tmp_path: Path
) -> None:
    """As from the reference: for an LLM with `log_completions`, each call's log is an
    `LLMCompletionLogEvent`, which the client writes to its own `log_completions_folder`.
    The server writes none (the folder is the client's: here both share one disk, so a
    file the server wrote would be one no event names)."""
    folder = tmp_path / "client-completion-logs"
    tag = sdk.fake_llm.script("logs", [text("a logged answer")])
    agent = sdk.agent()
    llm = agent.llm.model_copy(
        update={"log_completions": True, "log_completions_folder": str(folder)}
    )
    client = await sdk.open(agent=agent.model_copy(update={"llm": llm}))
    await call(client.conversation.send_message, f"log it {tag}")
    await call(client.conversation.run)

    events = await events_of(sdk.server, client.id)
    logs = [e for e in events if e["kind"] == "LLMCompletionLogEvent"]
    assert logs  # the title's call, and the answer's
    assert {(e["usage_id"], e["model_name"]) for e in logs} == {("agent", "openai/fake")}
    assert sorted(p.name for p in folder.iterdir()) == sorted(e["filename"] for e in logs)
    assert "a logged answer" in (folder / logs[-1]["filename"]).read_text()


async def test_the_sdks_first_remote_example(sdk: SdkSession) -> None:
    """As the SDK's own remote-server example does: a command on the workspace before any
    conversation exists, then a conversation on that same workspace."""
    workspace = sdk.workspace()
    try:
        result = await call(workspace.execute_command, "pwd")
        assert result.exit_code == 0
        assert result.stdout.strip() == str(sdk.workspace_dir)
    finally:
        await call(workspace.reset_client)
    tag = sdk.fake_llm.script("first", [tool_call("terminal", {"command": "pwd"}), finish("ok")])
    client = await sdk.open("terminal")
    await call(client.conversation.send_message, f"where are we {tag}")
    await call(client.conversation.run)
    observations = [e for e in client.conversation.state.events if isinstance(e, ObservationEvent)]
    assert str(sdk.workspace_dir) in observations[0].observation.model_dump_json()
    assert client.conversation.state.execution_status == Status.FINISHED


async def test_always_confirm_waits_then_approve_and_reject(sdk: SdkSession) -> None:
    approve = sdk.fake_llm.script(
        "approve", [tool_call("terminal", {"command": "touch approved.txt"}), finish("ok")]
    )
    reject = sdk.fake_llm.script(
        "reject", [tool_call("terminal", {"command": "touch rejected.txt"}), text("understood")]
    )
    client = await sdk.open("terminal")
    conversation = client.conversation
    await call(conversation.set_confirmation_policy, AlwaysConfirm())
    # The client's cache takes the update on its socket thread, right after this callback:
    # it may not have it yet (the server sent it first: test_api_dialect), REST has.
    await client.frames.wait_for(lambda events: any(is_policy_update(e) for e in events))
    await call(conversation.state.refresh_from_server)
    assert isinstance(conversation.state.confirmation_policy, AlwaysConfirm)

    await call(conversation.send_message, f"make a file {approve}")
    await call(conversation.run)
    assert conversation.state.execution_status == Status.WAITING_FOR_CONFIRMATION
    assert any(isinstance(e, ActionEvent) for e in conversation.state.events)
    assert not any(isinstance(e, ObservationEvent) for e in conversation.state.events)
    assert not (sdk.workspace_dir / "approved.txt").exists()

    await call(conversation.run)  # approves the pending action
    assert conversation.state.execution_status == Status.FINISHED
    assert (sdk.workspace_dir / "approved.txt").exists()
    assert any(isinstance(e, ObservationEvent) for e in conversation.state.events)

    await call(conversation.send_message, f"another file {reject}")
    await call(conversation.run)
    assert conversation.state.execution_status == Status.WAITING_FOR_CONFIRMATION
    await call(conversation.reject_pending_actions, "not this one")
    assert await rest_status(sdk, client) == "idle"
    await call(conversation.run)
    assert conversation.state.execution_status == Status.FINISHED
    rejections = [e for e in conversation.state.events if isinstance(e, UserRejectObservation)]
    assert [r.rejection_reason for r in rejections] == ["not this one"]
    assert not (sdk.workspace_dir / "rejected.txt").exists()
    assert agent_texts(conversation.state.events)[-1] == "understood"


async def test_pause_and_interrupt_abort_a_held_llm_call(sdk: SdkSession) -> None:
    tag = sdk.fake_llm.script("held", [text("too late", delay=3)])
    client = await sdk.open()
    conversation = client.conversation
    await call(conversation.send_message, f"take your time {tag}")
    previous = -1
    for stop in (conversation.pause, conversation.interrupt):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, conversation.run)  # returns once the run has stopped
                request = await sdk.fake_llm.wait_for_request(
                    # an agent step (the title request made after the first message has no tools)
                    predicate=lambda r, after=previous: (
                        r.script == "held" and r.step is not None and r.index > after
                    )
                )
                await call(stop)
            assert await request.wait_done() == "aborted"  # the held call was cut, not awaited
        previous = request.index
        assert conversation.state.execution_status == Status.PAUSED
        assert await rest_status(sdk, client) == "paused"
    assert agent_texts(conversation.state.events) == []
    # The pause is a PauseEvent, then the aborted step's InterruptEvent; the interrupt is
    # only the latter. The server's log says the same as the client saw.
    stops = [type(e).__name__ for e in conversation.state.events if isinstance(e, STOPS)]
    assert stops == ["PauseEvent", "InterruptEvent", "InterruptEvent"]
    events = (await sdk.server.client.get(f"/api/conversations/{client.id}/events/search")).json()
    assert [e["kind"] for e in events["items"] if e["kind"] in STOP_KINDS] == stops

    sdk.fake_llm.script("held", [text("done now")])
    await call(conversation.run)
    assert conversation.state.execution_status == Status.FINISHED
    assert agent_texts(conversation.state.events) == ["done now"]


async def test_second_client_sees_the_same_events_in_the_same_order(sdk: SdkSession) -> None:
    first = sdk.fake_llm.script("first", [text("first answer")])
    second = sdk.fake_llm.script(
        "second", [tool_call("terminal", {"command": "echo shared"}), finish("second answer")]
    )
    a = await sdk.open("terminal")
    await call(a.conversation.send_message, f"one {first}")
    await call(a.conversation.run)

    b = await sdk.open("terminal", conversation_id=a.conversation.id)
    ids = [e.id for e in persisted(a.conversation.state.events)]
    assert [e.id for e in persisted(b.conversation.state.events)] == ids

    a_seen, b_seen = len(a.frames.events), len(b.frames.events)
    await call(a.conversation.send_message, f"two {second}")
    await call(a.conversation.run)

    def run_ended(events: list[Event]) -> bool:  # the snapshot after the run, not on connect
        snapshots = [
            e for e in events if isinstance(e, ConversationStateUpdateEvent) and e.key == FULL_STATE
        ]
        return len(snapshots) >= 2 and snapshots[-1].value["execution_status"] == "finished"

    await b.frames.wait_for(run_ended)
    live_a = [e.id for e in persisted(a.frames.events[a_seen:])]
    live_b = [e.id for e in persisted(b.frames.events[b_seen:])]
    assert len(live_a) >= 4  # message, action, observation, finish
    assert live_b == live_a
    await call(b.conversation.state.events.reconcile)
    server_ids = [e.id for e in persisted(a.conversation.state.events)]
    assert [e.id for e in persisted(b.conversation.state.events)] == server_ids
    assert server_ids[: len(ids)] == ids
    assert agent_texts(b.conversation.state.events) == ["first answer"]


async def test_reattached_clients_get_exactly_the_live_clients_events(sdk: SdkSession) -> None:
    """State updates are logged events: a client attached later, by id or with `attach`,
    reads over REST exactly the events the live client got, in the same order."""
    first = sdk.fake_llm.script(
        "reattach-one", [tool_call("terminal", {"command": "echo one"}), finish("one done")]
    )
    second = sdk.fake_llm.script("reattach-two", [text("two done")])
    live = await sdk.open("terminal")
    conversation = live.conversation
    await call(conversation.send_message, f"one {first}")
    await call(conversation.run)
    await call(conversation.set_confirmation_policy, AlwaysConfirm())
    await call(conversation.send_message, f"two {second}")
    await call(conversation.run)
    # A last logged event, then compare up to it (an auto-title may still come later).
    sentinel, after = {"sentinel": "reattach"}, {"sentinel": "after"}
    for tags in (sentinel, after):
        patched = await sdk.server.client.patch(
            f"/api/conversations/{live.id}", json={"tags": tags}
        )
        assert patched.is_success

    def upto_sentinel(events: Sequence[Event]) -> list[str]:
        ids = [e.id for e in logged(events)]
        ends = [
            i
            for i, e in enumerate(logged(events))
            if isinstance(e, ConversationStateUpdateEvent) and e.value == sentinel
        ]
        return ids[: ends[0] + 1] if ends else []

    # The client's callbacks (ours first, then its own event list's) handled the sentinel
    # once ours see the update after it.
    await live.frames.wait_for(
        lambda events: any(
            isinstance(e, ConversationStateUpdateEvent) and e.value == after for e in events
        )
    )
    seen = upto_sentinel(conversation.state.events)
    over_socket = upto_sentinel(live.frames.events)  # the rest came from the first REST sync
    assert over_socket
    assert over_socket == seen[len(seen) - len(over_socket) :]
    updates = [e for e in logged(conversation.state.events) if e.id in seen]
    statuses = [
        e.value
        for e in updates
        if isinstance(e, ConversationStateUpdateEvent) and e.key == "execution_status"
    ]
    # (a message to a finished conversation makes it idle, as the SDK does)
    assert statuses == ["running", "finished", "idle", "running", "finished"]
    assert any(is_policy_update(e) for e in updates)

    by_id = await sdk.open(conversation_id=conversation.id)
    assert upto_sentinel(by_id.conversation.state.events) == seen
    workspace, frames = sdk.workspace(), Frames(trio.lowlevel.current_trio_token())
    attached = await call(
        RemoteConversation.attach, workspace, conversation.id, callbacks=[frames], visualizer=None
    )
    sdk.clients.append(Client(attached, workspace, frames))
    assert upto_sentinel(attached.state.events) == seen


async def test_close_with_delete_then_attach_is_404(sdk: SdkSession) -> None:
    tag = sdk.fake_llm.script("bye", [text("goodbye")])
    a = await sdk.open(delete_on_close=True)
    await call(a.conversation.send_message, f"bye {tag}")
    await call(a.conversation.run)
    watcher = await sdk.open(conversation_id=a.conversation.id)
    settings = sdk.server.settings
    assert await trio.to_thread.run_sync(stored.conversation_bytes, settings, a.conversation.id)

    await sdk.close(a)
    assert (await sdk.server.client.get(f"/api/conversations/{a.id}")).status_code == 404
    assert await trio.to_thread.run_sync(stored.conversation_bytes, settings, a.id) == []
    workspace = sdk.workspace()
    with pytest.raises(httpx.HTTPStatusError) as attach:
        await call(RemoteConversation.attach, workspace, a.conversation.id, visualizer=None)
    assert attach.value.response.status_code == 404
    await call(workspace.reset_client)  # an idle keep-alive connection holds a server's stop
    # The other client's socket was closed with 4004, so its thread stopped on its own
    # and its close() needs no frame (else it would wait out its 5 s join timeout).
    sdk.clients.remove(watcher)
    with trio.fail_after(3):
        await call(watcher.conversation.close)
    await call(watcher.workspace.reset_client)


async def test_ask_agent_condense_navigate_and_switch_llm(sdk: SdkSession) -> None:
    """The conversation controls, as the SDK documents them."""
    first = sdk.fake_llm.script("controls-one", [text("first answer")])
    client = await sdk.open()
    conversation = client.conversation
    base = f"/api/conversations/{client.id}"
    await call(conversation.send_message, f"one {first}")
    await call(conversation.run)

    async def server_ids() -> list[str]:
        page = (await sdk.server.client.get(f"{base}/events/search")).json()
        return [e["id"] for e in page["items"]]

    before = await server_ids()
    # A side question: the conversation's LLM answers, nothing is logged.
    side = sdk.fake_llm.script("controls-ask", [text("a side answer")])
    assert await call(conversation.ask_agent, f"what now? {side}") == "a side answer"
    asked = await sdk.fake_llm.wait_for_request(script="controls-ask")
    assert "first answer" in str(asked.messages)  # it saw the conversation
    assert await server_ids() == before
    # No condenser: nothing to condense.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await call(conversation.condense)
    assert refused.value.response.status_code == 409

    # HEAD back to the first message: the next run no longer sees the first answer.
    question = next(e for e in conversation.state.events if isinstance(e, MessageEvent))
    await call(conversation.navigate_to, question.id)
    info = (await sdk.server.client.get(base)).json()
    assert info["leaf_event_id"] == question.id
    unknown = await sdk.server.client.post(f"{base}/navigate", json={"event_id": "nope"})
    assert unknown.status_code == 404

    # Another LLM from now on.
    llm = {
        "model": "openai/fake-two",
        "base_url": sdk.fake_llm.base_url,
        "api_key": "test-key",
        "num_retries": 0,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
    }
    switched = await sdk.server.client.post(f"{base}/switch_llm", json={"llm": llm})
    assert switched.status_code == 200, switched.text
    bad = await sdk.server.client.post(f"{base}/switch_llm", json={"llm": {"model": 3}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][:3] == ["body", "llm", "model"]
    second = sdk.fake_llm.script("controls-two", [text("second answer")])
    await call(conversation.send_message, f"two {second}")
    await call(conversation.run)
    request = await sdk.fake_llm.wait_for_request(script="controls-two", step=0)
    assert request.model == "fake-two"
    assert "first answer" not in str(request.messages)
    events = logged(conversation.state.events)
    assert agent_texts(events)[-1] == "second answer"
    # The new LLM's call is counted too: a `stats` update follows its answer.
    answer = max(i for i, e in enumerate(events) if isinstance(e, MessageEvent))
    assert any(
        isinstance(e, ConversationStateUpdateEvent) and e.key == "stats"
        for e in events[answer + 1 :]
    )


# A fresh Python process, as a second program attaching to a conversation would be: it has
# imported no tool module, so each one the events need must come from the server's info.
ATTACH_AND_LIST_EVENTS = """
import os, sys
from openhands.sdk.conversation.impl.remote_conversation import RemoteConversation
from openhands.sdk.workspace import RemoteWorkspace
assert "openhands.tools.terminal" not in sys.modules
workspace = RemoteWorkspace(host=sys.argv[1], working_dir=sys.argv[3])
conversation = RemoteConversation.attach(workspace, sys.argv[2], visualizer=None)
kinds = {type(getattr(e, "action", None) or getattr(e, "observation", None) or e).__name__
         for e in conversation.state.events}
print(" ".join(sorted(kinds)), flush=True)
os._exit(0)  # not close(): its socket thread would wait for a frame
"""


async def test_a_client_in_a_fresh_process_attaches_to_a_conversation_made_over_http(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """A conversation made over plain HTTP (the TypeScript client, the web UI) names no
    tool modules. The server adds those it resolved, as the reference does, so the Python
    client attaching later imports the terminal's before it reads a `TerminalAction`."""
    tag = fake_llm.script("attach", [tool_call("terminal", {"command": "echo hi"}), text("ok")])
    workspace = str(server.settings.workspace_dir)
    body = {
        "agent": {
            "kind": "Agent",
            "llm": {"model": "openai/fake", "base_url": fake_llm.base_url, "api_key": "k"},
            "tools": [{"name": "terminal"}],
        },
        "workspace": {"working_dir": workspace},
        "initial_message": {
            "role": "user",
            "content": [{"type": "text", "text": tag}],
            "run": True,
        },
    }
    created = await server.client.post("/api/conversations", json=body)
    assert created.status_code == 201, created.text
    info = created.json()
    modules = {"terminal": "openhands.tools.terminal.definition"}
    assert info["tool_module_qualnames"] == modules
    await wait_status(server, info["id"], "finished")

    command = [sys.executable, "-c", ATTACH_AND_LIST_EVENTS, server.url, info["id"], workspace]
    with trio.fail_after(60):
        attached = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    kinds = attached.stdout.decode().split()
    assert {"TerminalAction", "TerminalObservation", "MessageEvent"} <= set(kinds)
    listed = (await server.client.get("/api/conversations/search")).json()["items"]
    assert [item["tool_module_qualnames"] for item in listed] == [modules]
