"""Two process-wide settings of the interpreter while the server serves.

The GIL's switch interval (CPython's default is 5 ms). Every system call the Trio thread
makes hands the GIL to the SDK's threads, and it may then wait up to a switch interval to
get it back; under load `/alive` waited in that queue. Measured with bench/soak.py (50 x 10)
in alternating pairs: 1 ms against the default, six pairs, /alive p50 8-9 ms against 11-19
ms, p99 median ~205 ms against ~295; then 0.5 ms against 1 ms, six pairs, p50 4-9 ms
against 7-11, p99 80-176 ms (median ~140) against 96-286 (median ~192), soak times and
steps/s the same (bench/steps.py: 18.4 against 18.3 steps/s). See Development.md.

The collector's young-generation threshold (CPython's default is 700 allocations). Under
load the agents' threads allocate 700 objects in well under a millisecond, so whatever a
request or a step holds for longer is promoted, and the old generation fills with objects
about to die: a full collection every ~3 s of the soak, each walking every connection's
tasks and coroutines (~130,000 objects at 500 sockets) for 150-190 ms with every thread
stopped. At 3,000 the soak made no full collection and no pause over 42 ms, against four
of 146-192 ms (gc callbacks timing each collection; Development.md has the figures).
"""

from __future__ import annotations

import gc
import sys

GIL_SWITCH_INTERVAL_SECONDS = 0.0005
GC_YOUNG_THRESHOLD = 3000


def tune() -> tuple[float, tuple[int, ...]]:
    """Set both for serving; what they were, for `restore`."""
    previous = (sys.getswitchinterval(), gc.get_threshold())
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *previous[1][1:])
    return previous


def restore(previous: tuple[float, tuple[int, ...]]) -> None:
    switch_interval, thresholds = previous
    sys.setswitchinterval(switch_interval)
    gc.set_threshold(*thresholds)


class WhileServing:
    """Both are process-wide: set by the first server serving in this process, given back
    by the last one to stop (a test process serves several at once)."""

    def __init__(self) -> None:
        self._servers = 0
        self._previous = (sys.getswitchinterval(), gc.get_threshold())

    def enter(self) -> None:
        if self._servers == 0:
            self._previous = tune()
        self._servers += 1

    def leave(self) -> None:
        self._servers -= 1
        if self._servers == 0:
            restore(self._previous)


while_serving = WhileServing()
