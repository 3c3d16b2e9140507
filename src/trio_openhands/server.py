"""Serving the app with Hypercorn's Trio worker (hypercorn_worker.py), from Python.

Hypercorn binds as soon as the conversations directory is known to be free, with the early
app in front (web/early.py: `/alive` answers while the full app is still being imported).
SIGINT/SIGTERM trigger the shutdown: conversations are paused and persisted, sockets get
a 1001 close frame, then Hypercorn stops. `serve()` reports the bound URLs through
`task_status`, so tests can `await nursery.start(serve, settings)` on port 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config

from trio_openhands import hypercorn_worker, interpreter
from trio_openhands.stores.file_store import release_reservation, reserve_conversations_dir
from trio_openhands.web.early import EarlyApp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_openhands.settings import Settings

log = logging.getLogger(__name__)


# Hypercorn's default (100) overflows when a fleet of clients reconnects at once: the kernel
# then drops SYNs, and each dropped client waits out TCP's retransmission timer (1 s, then 3 s,
# then 7 s). Linux caps this at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 2048


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.loglevel = settings.log_level
    # A logger, not "-": Hypercorn then adds no handler of its own, and its lines go through
    # ours once (with a "-" target it prints them itself and propagates them too).
    config.errorlog = logging.getLogger("hypercorn.error")
    # Off unless configured: Hypercorn 0.18 never times out a missing pong, and its ping task
    # outlives a closed socket, holding every shutdown for its whole graceful_timeout.
    config.websocket_ping_interval = settings.websocket_ping_interval
    config.backlog = LISTEN_BACKLOG
    return config


# After a signal, how long past the graceful timeout the process may take before it is ended.
HARD_STOP_MARGIN_SECONDS = 1.0


class HardStop(threading.Thread):
    """Ends the process if a signalled shutdown overruns its deadline.

    Hypercorn shields each socket write from cancellation, so a client that stops reading
    in the middle of a large frame would otherwise keep the process alive until it goes away.
    Runs are paused and persisted first (`state_saved`), so ending then loses nothing: the
    exit status says whether that part had finished.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(name="hard-stop", daemon=True)
        self.seconds = seconds
        self.state_saved = False

    def run(self) -> None:
        time.sleep(self.seconds)  # a plain thread: the Trio loop may be the one that is stuck
        log.warning(
            "shutdown still blocked %.1f s after the signal (a client not reading?): exiting%s",
            self.seconds,
            "" if self.state_saved else " BEFORE every conversation was saved",
        )
        logging.shutdown()
        os._exit(0 if self.state_saved else 1)


def arm_hard_stop(seconds: float) -> HardStop:
    hard_stop = HardStop(seconds)
    hard_stop.start()
    return hard_stop


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            return


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until a signal (or `shutdown_trigger`, for tests), then shut down cleanly.
    Raises DirectoryInUse before binding when another server has the conversations
    directory, and the full app's error if it fails to start."""
    # Taken before binding, for a clear error; the supervisor takes it over when it starts.
    await trio.to_thread.run_sync(reserve_conversations_dir, settings.conversations_dir)
    interpreter.while_serving.enter()
    try:
        await _serve(settings, shutdown_trigger, task_status)
    finally:
        interpreter.while_serving.leave()
        release_reservation(settings.conversations_dir)


async def _serve(
    settings: Settings,
    shutdown_trigger: trio.Event | None,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    app = EarlyApp(settings)
    config = hypercorn_config(settings)

    async def trigger() -> None:
        async with trio.open_nursery() as nursery:

            async def stop_on(wait: Callable[[], Awaitable[object]]) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on, app.failed.wait)
            if shutdown_trigger is None:
                nursery.start_soon(stop_on, wait_for_signal)
            else:
                nursery.start_soon(stop_on, shutdown_trigger.wait)
        if shutdown_trigger is None and not app.failed.is_set():
            hard_stop = arm_hard_stop(settings.graceful_timeout + HARD_STOP_MARGIN_SECONDS)
            await app.begin_shutdown()
            hard_stop.state_saved = True
        else:
            await app.begin_shutdown()

    async with trio.open_nursery() as nursery:
        serving = partial(hypercorn_worker.serve, app, config, shutdown_trigger=trigger)
        binds: list[str] = await nursery.start(serving)
        app.listening_on(urlsplit(binds[0]).port or settings.port)
        task_status.started(binds)
    if app.error is not None:
        raise app.error
    log.info("stopped")
