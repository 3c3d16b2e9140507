"""Importing the OpenHands SDK off the Trio thread, after the server is already answering.

`import openhands.sdk` costs about 7 s (litellm alone about 4.5 s). Doing it at start-up would
keep `/alive` silent for that long, so the server binds first and imports in a worker thread;
`/ready` answers 503 until the import is done and routes that need the SDK wait for it.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

import trio

log = logging.getLogger(__name__)

# Importing these registers the tools under their registry names.
TOOL_MODULES = {
    "terminal": "openhands.tools.terminal",
    "file_editor": "openhands.tools.file_editor",
    "task_tracker": "openhands.tools.task_tracker",
}


def quiet_sdk_environment() -> None:
    """Without these, importing the SDK prints a banner and litellm starts a thread that
    retries a network fetch of its model cost map."""
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def import_sdk() -> None:
    """Blocking: import the SDK and register the tools. Run it in a thread."""
    quiet_sdk_environment()
    importlib.import_module("openhands.sdk")
    for module in TOOL_MODULES.values():
        importlib.import_module(module)


class SdkLoader:
    """The one background import of the SDK; `wait_ready()` for the callers that need it."""

    def __init__(self) -> None:
        self._started = False
        self._done = trio.Event()
        self._error: BaseException | None = None
        self.seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self._error is None

    @property
    def error(self) -> BaseException | None:
        return self._error

    async def load(self) -> None:
        """Import once; concurrent callers wait for the first. A failure is kept for `/ready`."""
        if self._started:
            await self._done.wait()
            return
        self._started = True
        started = time.perf_counter()
        try:
            # Abandoned on cancellation: a shutdown must not wait seconds for an import.
            await trio.to_thread.run_sync(import_sdk, abandon_on_cancel=True)
        except trio.Cancelled:
            self._started = False  # not done: a later call may start again
            raise
        except Exception as error:
            log.exception("importing the OpenHands SDK failed")
            self._error = error
        else:
            self.seconds = time.perf_counter() - started
            log.info("OpenHands SDK imported in %.1f s", self.seconds)
        self._done.set()

    async def wait_ready(self) -> None:
        await self.load()
        if self._error is not None:
            raise RuntimeError("the OpenHands SDK could not be imported") from self._error
