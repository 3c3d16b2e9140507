"""An asyncio event loop on its own thread, so that Trio can cancel the SDK's `arun()`.

The SDK's synchronous `run()` holds the conversation lock for a whole step and cannot be
interrupted while the LLM answers. Its asyncio `arun()` releases the lock while waiting on
the LLM, and cancelling its task aborts the in-flight HTTP request within milliseconds; the
SDK then records an `InterruptEvent` and sets the status to `paused`. Each conversation gets
one `AsyncioHost` (a thread with a loop, started at its first run, stopped at close), and
`run()` bridges Trio cancellation to asyncio task cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING

import outcome
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# How long a cancelled run may take to acknowledge cancellation before it is abandoned.
CANCEL_GRACE_SECONDS = 10.0


class AsyncioHost:
    """Owns one asyncio loop thread. Not thread-safe: use it from the Trio thread only."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def run[T](self, coroutine_function: Callable[[], Awaitable[T]]) -> T:
        """Run `coroutine_function()` on the loop; Trio cancellation cancels its task.

        On cancellation this waits (shielded, at most CANCEL_GRACE_SECONDS) for the task to
        finish its own clean-up, so that the caller sees the SDK's final status.
        """
        loop = self._ensure_loop()
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()
        result: list[outcome.Outcome[T]] = []

        async def hosted() -> None:
            try:
                result.append(outcome.Value(await coroutine_function()))
            except BaseException as error:  # includes CancelledError: carried back to Trio
                result.append(outcome.Error(error))
            finally:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(finished.set)

        future = asyncio.run_coroutine_threadsafe(hosted(), loop)
        try:
            await finished.wait()
        except trio.Cancelled:
            future.cancel()  # asyncio cancels the task on its own loop thread
            with trio.move_on_after(CANCEL_GRACE_SECONDS, shield=True) as grace_scope:
                await finished.wait()
            if grace_scope.cancelled_caught:
                log.error(
                    "%s: the SDK did not stop within %.0f s", self._name, CANCEL_GRACE_SECONDS
                )
            raise
        return result[0].unwrap()

    async def aclose(self) -> None:
        """Stop the loop and join its thread (in a worker thread: joining blocks)."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            # As asyncio.run does: cancel what is left (litellm starts a logging worker task
            # on every loop it sees), then finish generators and the tool threads.
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
