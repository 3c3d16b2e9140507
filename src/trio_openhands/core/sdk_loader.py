"""Importing the OpenHands SDK off the Trio thread, after the server is already answering.

`import openhands.sdk` costs about 7 s (litellm alone about 4.5 s). Doing it at start-up would
keep `/alive` silent for that long, so the server binds first and imports in a worker thread;
`/ready` answers 503 until the import is done and routes that need the SDK wait for it.

The first LLM call of a process used to import ~460 more modules (openai's API resources,
litellm's provider configs): 1.6 s holding the GIL on the SDK's asyncio thread, which stalled
every run and the Trio thread with it. Those are imported here too, with the SDK.

Then the import's ~500,000 objects are moved out of the garbage collector's reach
(`gc.freeze()`): they live as long as the process, and each full collection used to walk
them all, 0.3-1.8 s with every thread stopped, whichever thread it fell on (the Trio thread
often: `/alive` answered in seconds under load). Collections now only walk what came later.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import time

import trio

from trio_openhands.core import terminal_ready, terminal_spawn

log = logging.getLogger(__name__)

# Importing these registers the tools under their registry names.
TOOL_MODULES = {
    "terminal": "openhands.tools.terminal",
    "file_editor": "openhands.tools.file_editor",
    "task_tracker": "openhands.tools.task_tracker",
}

# Imported lazily by the first `litellm.acompletion` (openai-compatible path); best effort,
# as the list moves with litellm and openai versions.
FIRST_CALL_MODULES = (
    "openai.resources",
    "openai.lib.streaming.chat",
    "litellm._service_logger",
    "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.openai.chat.gpt_audio_transformation",
    "litellm.llms.litellm_proxy.chat.transformation",
    "litellm.proxy.openai_files_endpoints.common_utils",
)


def quiet_sdk_environment() -> None:
    """Without these, importing the SDK prints a banner and litellm starts a thread that
    retries a network fetch of its model cost map."""
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def import_sdk() -> None:
    """Blocking: import the SDK and register the tools. Run it in a thread."""
    quiet_sdk_environment()
    first_import = "openhands.sdk" not in sys.modules
    importlib.import_module("openhands.sdk")
    for module in TOOL_MODULES.values():
        importlib.import_module(module)
    for module in FIRST_CALL_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:  # only a cost moved back to the first call
            log.debug("could not preload %s: %s", module, error)
    terminal_spawn.install()
    terminal_ready.install()
    if first_import:  # once per process (a test process starts many servers)
        gc.freeze()  # see the module docstring


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
