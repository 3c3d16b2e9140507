"""The ASGI entry for the Hypercorn CLI (see deploy/hypercorn.toml and README "Production"):

    hypercorn --config deploy/hypercorn.toml 'trio_openhands.asgi:create_app()'

Hypercorn evaluates `create_app()` in its worker process, so nothing is built at import time;
the settings come from the environment, as `openhands-server` reads them without flags.

Why the app watches for the shutdown itself: under the CLI, SIGTERM and SIGINT go to
Hypercorn's parent process, which sets a multiprocessing event that its worker polls. The
worker then stops accepting, gives open connections `graceful_timeout` to end on their own,
cancels them (a WebSocket sees 1006, no close frame) and only then runs the lifespan shutdown,
where runs would be paused. The event is handed to the worker as a keyword argument of its
`multiprocessing.Process` (hypercorn/run.py); polling it too, the app pauses and persists the
runs and closes the sockets with 1001 at once, while Hypercorn still serves. (The worker still
waits out `graceful_timeout` once a WebSocket was open: Hypercorn 0.18's ping task outlives its
socket. See deploy/hypercorn.toml.)
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands import interpreter
from trio_openhands.settings import Settings
from trio_openhands.web import app as app_module

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_openhands.web.app import OpenHandsApp

log = logging.getLogger(__name__)

# How often the worker checks Hypercorn's shutdown event (Hypercorn's own worker: 0.1 s).
SHUTDOWN_POLL_INTERVAL = 0.1


def hypercorn_worker_arguments() -> dict[str, Any]:
    """The keyword arguments Hypercorn started this worker process with ({} if none)."""
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else {}


def hypercorn_shutdown_requested() -> Callable[[], Awaitable[None]] | None:
    """An awaitable that returns when Hypercorn's parent process asks its workers to stop;
    None outside a Hypercorn worker process (`workers = 0`, or another server)."""
    shutdown_event = hypercorn_worker_arguments().get("shutdown_event")
    if shutdown_event is None:
        return None

    async def wait_for_shutdown_event() -> None:
        # A multiprocessing event: polled, as Hypercorn's worker polls it.
        while not shutdown_event.is_set():  # noqa: ASYNC110
            await trio.sleep(SHUTDOWN_POLL_INTERVAL)

    return wait_for_shutdown_event


def check_worker_count() -> None:
    """Refuse to run as one of several workers: each would run its own supervisor over the
    same conversations directory (see README "Production")."""
    config = hypercorn_worker_arguments().get("config")
    workers = getattr(config, "workers", 1)
    if isinstance(workers, int) and workers > 1:
        raise RuntimeError(
            f"Hypercorn runs {workers} workers: one worker process must own a conversations "
            "directory. Set workers = 1 and run more instances (each with its own directory) "
            "behind a proxy instead."
        )


def configure_logging(level: str) -> None:
    """Our log records on stderr, formatted like Hypercorn's error log; other libraries'
    loggers (and Hypercorn's own) are left as Hypercorn and the SDK set them up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "[%Y-%m-%d %H:%M:%S %z]",
        )
    )
    package_logger = logging.getLogger("trio_openhands")
    package_logger.handlers = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False


def create_app() -> OpenHandsApp:
    """Build the app from the environment: `hypercorn ... 'trio_openhands.asgi:create_app()'`."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    check_worker_count()
    interpreter.tune()  # the worker process is ours alone
    shutdown_requested = hypercorn_shutdown_requested()
    if shutdown_requested is None:
        log.warning(
            "not in a Hypercorn worker process (workers = 0?): on SIGTERM, runs are paused "
            "only after serving stops, if at all; use workers = 1"
        )
    return app_module.create_app(settings, shutdown_requested=shutdown_requested)
