"""The supervisor: one nursery that owns every conversation, and their catalog.

    Supervisor.run (started with the server)
    └── conversations nursery
        ├── conversation A task: A.scope ⊃ A.nursery ⊃ run task
        └── conversation B task: ...

Stored conversations are listed from their records at start-up and loaded (their SDK
object and event log rebuilt from the store) on first use, so start-up stays fast whatever
is stored. Shutdown pauses every run, persists, and closes every socket with 1001.

Where they are stored is the `ConversationStore`'s business (stores/conversation_store.py):
files under the conversations directory, or the PostgreSQL database several instances
share, where a conversation is loaded only on the instance that claimed it (its lease).
A conversation's scope is cancelled by its delete, by the shutdown, or when another
instance takes it over (other_instances.py acts on the store's news of the others).

Conversations start with the SDK agent the caller built: the dialects build it
(seed_create.py, web/api/), forks copy it (fork.py).
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.core import sdk_bridge
from trio_openhands.core.asyncio_host import AsyncioHost
from trio_openhands.core.conversation import Conversation
from trio_openhands.core.conversation_end import release_conversation
from trio_openhands.core.conversation_record import ConversationRecord, utc_now
from trio_openhands.core.errors import ApiError, Conflict, NotFound
from trio_openhands.core.kept_jobs import KeptJobs
from trio_openhands.core.other_instances import OtherInstances
from trio_openhands.core.records import Records
from trio_openhands.services.commands import CommandService
from trio_openhands.stores import file_store
from trio_openhands.stores.conversation_store import open_conversation_store
from trio_openhands.stores.profile_stores import llm_profiles_dir

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_openhands.core.sdk_loader import SdkLoader
    from trio_openhands.settings import Settings
    from trio_openhands.stores.conversation_store import ConversationStore

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, settings: Settings, sdk_loader: SdkLoader) -> None:
        self.settings = settings
        self.sdk_loader = sdk_loader
        self.run_limiter = trio.CapacityLimiter(settings.max_concurrent_runs)
        # Every SDK run shares one asyncio loop, closed once every conversation is.
        self.asyncio_host = AsyncioHost(
            max_workers=max(32, 4 * settings.max_concurrent_runs),
            niceness=settings.agent_niceness,
        )
        # Shell commands of the workspace API, in a nursery of their own (see commands.py).
        self.commands = CommandService(
            subscriber_buffer=settings.subscriber_buffer,
            max_output_bytes=settings.command_output_limit,
        )
        self.records = Records(self)
        self.kept_jobs = KeptJobs()  # what idle unloads left running in the background
        self.loaded: dict[uuid.UUID, Conversation] = {}
        self.loading: dict[uuid.UUID, trio.Event] = {}
        self._conversations_nursery: trio.Nursery | None = None
        self._cipher: Any = None
        self._secret_key: str | None = None
        self.shutting_down = False
        self.stopping = trio.Event()  # set when the shutdown begins
        self._store: ConversationStore | None = None

    @property
    def store(self) -> ConversationStore:
        if self._store is None:
            raise RuntimeError("the store opens with the supervisor")
        return self._store

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Owns the conversations nursery until cancelled (server shutdown)."""
        conversations_dir = self.settings.conversations_dir
        lock = await trio.to_thread.run_sync(file_store.lock_conversations_dir, conversations_dir)
        with lock:
            try:
                others = OtherInstances(self)
                async with open_conversation_store(
                    self.settings,
                    on_lost=others.lease_lost,
                    on_deleted=others.deleted_elsewhere,
                    on_expired=others.take_over,
                ) as store:
                    self._store = store
                    await self._serve(task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await self.asyncio_host.aclose()

    async def _serve(self, task_status: trio.TaskStatus[Supervisor]) -> None:
        for data in await self.store.read_records():
            self.records.add_json(data)
        where = "the database" if self.store.shared else self.settings.conversations_dir
        log.info("supervisor: %d stored conversations in %s", len(self.records), where)
        async with trio.open_nursery() as conversations_nursery:
            self._conversations_nursery = conversations_nursery
            await conversations_nursery.start(self.commands.run)
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self.shutdown()
                    await self.kept_jobs.end_all()

    def end_kept_jobs_soon(self, conversation_id: uuid.UUID) -> None:
        """The conversation is gone for good, and not from here: what its unload kept ends."""
        if self.kept_jobs.holds(conversation_id) and self._conversations_nursery is not None:
            self._conversations_nursery.start_soon(self.kept_jobs.end, conversation_id)

    def statistics(self) -> dict[str, int]:
        return {
            "conversations": len(self.records),
            "loaded": len(self.loaded),
            "runs_active": int(self.run_limiter.borrowed_tokens),
            "runs_waiting_for_slot": sum(c.waiting_for_slot for c in self.loaded.values()),
            "max_concurrent_runs": int(self.run_limiter.total_tokens),
        }

    # -- creating and loading -----------------------------------------------------------

    async def _cipher_for_storage(self) -> Any:
        if self._cipher is None:
            self._secret_key = await self.store.secret_key()
            self._cipher = sdk_bridge.make_cipher(self._secret_key)
        return self._cipher

    async def create_with_agent(
        self,
        conversation_id: uuid.UUID | None,
        agent: Any,
        stored_request: dict[str, Any],
        *,
        title: str | None = None,
        tags: dict[str, str] | None = None,
        confirmation_mode: bool | None = None,
        prepare: Callable[[], Awaitable[Any]] | None = None,
    ) -> tuple[Conversation, bool]:
        """Start a conversation with an SDK agent the caller built.

        Idempotent on `conversation_id`: if that conversation exists, or is being created,
        it is returned and nothing is created. Returns (conversation, created).

        With `prepare` (a fork), an existing id is a 409 instead, and `prepare()` runs once
        the id is claimed, before the SDK opens the conversation: it writes the
        conversation's folder and returns its agent.
        """
        await self.sdk_loader.wait_ready()
        self._refuse_during_shutdown()
        conversation_id = conversation_id or uuid.uuid4()
        while True:  # no await between the last check and claiming the id below
            if (pending := self.loading.get(conversation_id)) is not None:
                await pending.wait()
            elif (closing := self.loaded.get(conversation_id)) is not None and closing.deleted:
                await closing.closed.wait()  # its folder is about to be removed
            else:
                break
        if conversation_id in self.records:
            if prepare is not None:
                raise Conflict(f"Conversation with id {conversation_id} already exists")
            return await self.get(conversation_id), False
        done = self.loading[conversation_id] = trio.Event()
        try:
            await self.store.claim(conversation_id)
            if self.store.shared and await self.store.read_record(conversation_id):
                existing = True  # created by another instance: idempotent, as above
            else:
                existing = False
            if existing and prepare is not None:
                await self.store.release(conversation_id)
                raise Conflict(f"Conversation with id {conversation_id} already exists")
        except BaseException:
            del self.loading[conversation_id]
            done.set()
            raise
        if existing:
            del self.loading[conversation_id]
            done.set()
            return await self.get(conversation_id), False
        try:
            if prepare is not None:
                agent = await prepare()
            now = utc_now()
            record = ConversationRecord(
                id=conversation_id,
                created_at=now,
                updated_at=now,
                request=stored_request,
                title=title,
                tags=tags or {},
            )
            conversation = await self._start(
                record, agent=agent, confirmation_mode=confirmation_mode
            )
            self.records[record.id] = record
            await self.save(conversation)
        finally:
            del self.loading[conversation_id]
            done.set()
        log.info("conversation %s: created (model %s)", conversation_id, agent.llm.model)
        return conversation, True

    async def get(self, conversation_id: uuid.UUID) -> Conversation:
        """The loaded conversation, loading it from disk on first use; NotFound if unknown
        or being deleted."""
        if (loaded := self.loaded.get(conversation_id)) is not None and not loaded.deleted:
            if not loaded.unloading and not loaded.lost:
                loaded.touch()
                return loaded
            # Being unloaded, or stopping here because another instance took it over (no
            # command of ours may reach it then): load or claim it again once it is closed.
            await loaded.closed.wait()
        record = await self.records.find(conversation_id)
        if record is None:
            raise NotFound(f"Conversation not found: {conversation_id}")
        if conversation_id in self.loading:  # someone else is loading it: wait for them
            await self.loading[conversation_id].wait()
            return await self.get(conversation_id)
        done = self.loading[conversation_id] = trio.Event()
        try:
            await self.sdk_loader.wait_ready()
            self._refuse_during_shutdown()
            await self.store.claim(conversation_id)
            if self.store.shared:  # read again under the lease: the last owner's last word
                data = await self.store.read_record(conversation_id)
                if data is None:
                    await self.store.release(conversation_id)
                    self.records.pop(conversation_id, None)
                    raise NotFound(f"Conversation not found: {conversation_id}")
                record = self.records.add_json(data) or record
            try:
                conversation = await self._start(record, agent=None, confirmation_mode=None)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.store.release(conversation_id)
                raise
            log.info(
                "conversation %s: loaded from disk (%d events, %s)",
                conversation_id,
                len(conversation.log),
                conversation.status,
            )
            return conversation
        finally:
            del self.loading[conversation_id]
            done.set()

    async def _start(
        self, record: ConversationRecord, *, agent: Any, confirmation_mode: bool | None
    ) -> Conversation:
        assert self._conversations_nursery is not None
        conversation = Conversation(
            record,
            run_limiter=self.run_limiter,
            asyncio_host=self.asyncio_host,
            subscriber_buffer=self.settings.subscriber_buffer,
            save=self.save,
        )
        cipher = await self._cipher_for_storage()
        max_iterations = int(record.request.get("max_iterations", 500))
        opened = await self.store.open_files(record)
        conversation.files = opened.durable
        conversation.events = opened.events
        sdk = await trio.to_thread.run_sync(
            partial(
                sdk_bridge.blocking_open_conversation,
                conversation_id=record.id,
                agent=agent,
                workspace_dir=conversation.workspace_dir(self.settings.workspace_dir),
                conversations_dir=self.settings.conversations_dir,
                max_iterations=max_iterations,
                cipher=cipher,
                on_event=conversation.on_sdk_event,
                on_token=conversation.token_stream.on_token,
                keep_state_update=conversation.keep_state_update,
                confirmation_mode=confirmation_mode,
                hook_config=record.request.get("hook_config"),
                plugins=record.request.get("plugins"),
                file_store=opened.sdk_file_store,
                profile_store_dir=llm_profiles_dir(self.settings.conversations_dir),
            )
        )
        conversation.adopt(sdk)
        if agent is None and conversation.status == "running":
            await trio.to_thread.run_sync(sdk_bridge.blocking_recover_interrupted_run, sdk)
        await conversation.make_durable()  # a 201 means stored
        # A task keeps the context it was started from: from a request's, the task would keep
        # that request (its body too) as long as the conversation stays loaded.
        started = trio.Event()
        contextvars.Context().run(
            self._conversations_nursery.start_soon, self._host_conversation, conversation, started
        )
        with trio.CancelScope(shield=True):  # the task gets there at its first step
            await started.wait()
        self.loaded[record.id] = conversation
        return conversation

    async def _host_conversation(self, conversation: Conversation, started: trio.Event) -> None:
        """The conversation's own task: its scope and nursery live exactly as long as it does.

        It ends when cancelled (delete, shutdown) or, to bound memory, once nothing has used
        the conversation for `idle_unload_seconds`: the SDK object, its tools and the event
        log are released, and the conversation stays listed, to be loaded again on use."""
        try:
            with conversation.scope:
                async with trio.open_nursery() as conversation_nursery:
                    conversation.nursery = conversation_nursery
                    if conversation.events is not None:
                        await conversation_nursery.start(conversation.events.run)
                    started.set()
                    idle_seconds = self.settings.idle_unload_seconds
                    if idle_seconds > 0:
                        await conversation.wait_unused(idle_seconds)
                        conversation.unloading = True  # the next get() loads it afresh
                        log.info(
                            "conversation %s: unloaded after %.0f s unused",
                            conversation.id,
                            idle_seconds,
                        )
                    else:
                        await trio.sleep_forever()
        finally:
            started.set()  # even if it failed first: `_start` must not wait forever
            with trio.CancelScope(shield=True):
                await self._release(conversation)

    async def _release(self, conversation: Conversation) -> None:
        await release_conversation(
            conversation, store=self.store, kept_jobs=self.kept_jobs, save=self.save
        )
        self.loaded.pop(conversation.id, None)
        conversation.closed.set()

    # -- operations ---------------------------------------------------------------------

    async def save(self, conversation: Conversation) -> None:
        if conversation.deleted or conversation.lost:  # gone, or not ours to write
            return
        record = conversation.record
        record.status = conversation.status
        if conversation.sdk is not None:
            record.metrics = sdk_bridge.metrics_of(conversation.sdk)
        await self.store.save_record(record)

    async def delete(self, conversation_id: uuid.UUID) -> None:
        conversation = await self.get(conversation_id)  # NotFound once deletion began
        conversation.deleted = True
        self.records.pop(conversation_id, None)
        conversation.scope.cancel()
        await self.commands.stop_scope(conversation_id)
        await conversation.closed.wait()

    async def shutdown(self) -> None:
        """Pause every run, persist, close sockets with 1001: bounded by graceful_timeout."""
        self.shutting_down = True
        self.stopping.set()
        conversations = list(self.loaded.values())
        if conversations:
            log.info("supervisor: shutting down %d loaded conversations", len(conversations))
        with trio.move_on_after(self.settings.graceful_timeout):
            async with trio.open_nursery() as nursery:
                for conversation in conversations:
                    conversation.scope.cancel()
                    nursery.start_soon(conversation.closed.wait)

    def _refuse_during_shutdown(self) -> None:
        if self.shutting_down:
            raise ApiError(503, "Server is shutting down")
