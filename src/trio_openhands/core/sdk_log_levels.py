"""The SDK's log records for a user's own bad input, logged as warnings, not errors.

The SDK logs every failed git command as an ERROR (`openhands.sdk.git.utils`), but a plugin
source on create that cannot be cloned is the caller's input: it is answered with a 422
and should not stand in the error log beside the server's own failures. Within
`git_failures_as_warnings()` the records of the current thread only are demoted, so the
same command failing anywhere else (the SDK's own use, another request) stays an ERROR.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SDK_GIT_LOGGER = "openhands.sdk.git.utils"


class _ThreadsDemoted(logging.Filter):
    """Records of the listed threads at ERROR or worse become WARNING."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.thread in self.threads:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_git_failures = _ThreadsDemoted()
logging.getLogger(SDK_GIT_LOGGER).addFilter(_git_failures)


@contextmanager
def git_failures_as_warnings() -> Iterator[None]:
    """The SDK's git errors logged by this thread meanwhile are warnings (a worker thread)."""
    ident = threading.get_ident()
    _git_failures.threads.add(ident)
    try:
        yield
    finally:
        _git_failures.threads.discard(ident)
