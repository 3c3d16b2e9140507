"""One asyncio event loop on its own thread, shared by every SDK run, so Trio can cancel them.

The SDK's synchronous `run()` holds the conversation lock for a whole step and cannot be
interrupted while the LLM answers. Its asyncio `arun()` releases the lock while waiting on
the LLM, and cancelling its task aborts the in-flight HTTP request within milliseconds; the
SDK then records an `InterruptEvent` and sets the status to `paused`. `run()` bridges Trio
cancellation to asyncio task cancellation.

Why one loop for all conversations, not one each: litellm keeps process-wide asyncio state.
Its async logging worker (a queue and a task) binds to whichever loop used it last, and
with a loop per conversation it flipped between them: "Task was destroyed but it is
pending!", "Task exception was never retrieved" (a queue bound to another loop), "cannot
reuse already awaited coroutine". Its cached HTTP clients are kept per loop, so each
conversation's loop left an aiohttp session behind ("Unclosed client session"). With one
loop, started at the first run and stopped with the supervisor, that state binds once, the
HTTP connections to the LLM are shared, and `aclose()` releases it on its own loop.

Tool calls run in the loop's default executor (the SDK's `run_in_executor`), sized for many
runs at once; its threads are started on demand.

The loop's thread and the tool threads run at a lower CPU priority than the Trio thread
(`niceness`, the setting `agent_niceness`): when the cores are busy, the kernel then runs
the Trio thread first. On the 2-core soak (bench/soak.py), ten alternating pairs gave
`/alive` a p99 of 53-148 ms (median ~84) against 73-297 ms (median ~143) at the same
priority, the agents' work taking as long (Development.md).
(The SDK already starts each terminal's shell under `nice -n 10`, so the commands were
lower; what was not is the agents' Python: the LLM answers, the steps, the events.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import outcome
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# How long a cancelled run may take to acknowledge cancellation before it is abandoned.
CANCEL_GRACE_SECONDS = 10.0
# How long closing may wait for litellm's queued logging callbacks.
LITELLM_FLUSH_SECONDS = 2.0


class AsyncioHost:
    """Owns one asyncio loop thread. Not thread-safe: use it from the Trio thread only."""

    def __init__(
        self, name: str = "sdk-asyncio", *, max_workers: int = 32, niceness: int = 0
    ) -> None:
        self._name = name
        self._max_workers = max_workers
        self._niceness = agents_niceness(niceness)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            loop.set_default_executor(
                ThreadPoolExecutor(
                    self._max_workers,
                    thread_name_prefix=f"{self._name}-tool",
                    initializer=lower_this_threads_priority,
                    initargs=(self._niceness,),
                )
            )

            def run_forever() -> None:
                lower_this_threads_priority(self._niceness)
                loop.run_forever()

            thread = threading.Thread(target=run_forever, name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def run[T](
        self,
        coroutine_function: Callable[[], Awaitable[T]],
        *,
        before_cancel: Callable[[], None] | None = None,
    ) -> T:
        """Run `coroutine_function()` on the loop; Trio cancellation cancels its task.

        On cancellation, `before_cancel()` runs on the loop's thread right before the task
        is cancelled, in the same loop callback, so no code of the task runs in between
        (a pause records its `PauseEvent` there). Then this waits (shielded, at most
        CANCEL_GRACE_SECONDS) for the task to finish its own clean-up, so that the caller
        sees the SDK's final status.
        """
        loop = self._ensure_loop()
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()
        result: list[outcome.Outcome[T]] = []
        tasks: list[asyncio.Task[None]] = []
        cancel_requested: list[bool] = []

        def cancel_on_loop() -> None:
            if before_cancel is not None:
                try:
                    before_cancel()
                except Exception:
                    log.exception("%s: before_cancel failed", self._name)
            cancel_requested.append(True)
            if tasks:
                tasks[0].cancel()
            # else: not started yet, and it will see `cancel_requested` when it starts (a
            # task cancelled before its first step would never run its `finally`).

        async def hosted() -> None:
            try:
                if cancel_requested:
                    raise asyncio.CancelledError
                if (task := asyncio.current_task()) is not None:
                    tasks.append(task)
                result.append(outcome.Value(await coroutine_function()))
            except BaseException as error:  # includes CancelledError: carried back to Trio
                result.append(outcome.Error(error))
            finally:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(finished.set)

        asyncio.run_coroutine_threadsafe(hosted(), loop)
        try:
            await finished.wait()
        except trio.Cancelled:
            loop.call_soon_threadsafe(cancel_on_loop)
            with trio.move_on_after(CANCEL_GRACE_SECONDS, shield=True) as grace_scope:
                await finished.wait()
            if grace_scope.cancelled_caught:
                log.error(
                    "%s: the SDK did not stop within %.0f s", self._name, CANCEL_GRACE_SECONDS
                )
            raise
        return result[0].unwrap()

    async def aclose(self) -> None:
        """Release litellm's state on the loop, stop it and join its thread (in a worker
        thread: joining blocks). Call it once no run is left."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            try:
                await release_litellm_state()
            except Exception:
                log.exception("%s: releasing litellm's asyncio state failed", self._name)
            # As asyncio.run does: cancel what is left, finish generators and tool threads.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor(timeout=5.0)  # pyright: ignore[reportCallIssue]
            loop.stop()

        def stop_and_join() -> None:
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
            thread.join(timeout=10.0)
            if not thread.is_alive():
                loop.close()

        await trio.to_thread.run_sync(stop_and_join)


def agents_niceness(below_this_thread: int) -> int | None:
    """The nice value `below_this_thread` steps below the calling thread's (None: leave
    every thread as it is)."""
    if below_this_thread <= 0 or sys.platform != "linux":
        return None
    return min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + below_this_thread)


def lower_this_threads_priority(to: int | None) -> None:
    """Set the calling thread's nice value to `to` unless it is that low already (a thread
    started by one at `to` inherits it, as do the processes it starts). For good: without
    privileges a thread cannot take it back, so only threads of the agents' own call this."""
    if to is None:
        return
    thread_id = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread_id) < to:
            os.setpriority(os.PRIO_PROCESS, thread_id, to)
    except OSError as error:
        log.warning("could not lower the agents' CPU priority: %s", error)


async def release_litellm_state() -> None:
    """On the loop that is closing: litellm's logging worker (its queued callbacks run,
    then its tasks stopped, so the next loop starts it afresh) and the HTTP clients litellm
    cached for this loop (closed, so no aiohttp session outlives the loop)."""
    if "litellm" not in sys.modules:  # no run ever happened: nothing was bound
        return
    import litellm
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LITELLM_FLUSH_SECONDS):
            await GLOBAL_LOGGING_WORKER.flush()
    await GLOBAL_LOGGING_WORKER.stop()

    # litellm keys a client cached from inside a loop with "-<id(loop)>".
    cache = litellm.in_memory_llm_clients_cache
    suffix = f"-{id(asyncio.get_running_loop())}"
    for key in [key for key in cache.cache_dict if str(key).endswith(suffix)]:
        client = cache.cache_dict.get(key)
        cache.delete_cache(key)
        close = getattr(client, "close", None) or getattr(client, "aclose", None)
        if callable(close):
            try:
                closing = close()
                if inspect.isawaitable(closing):
                    await closing
            except Exception as error:
                log.debug("closing litellm's cached client %s failed: %s", key, error)
