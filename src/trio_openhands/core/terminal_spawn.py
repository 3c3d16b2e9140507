"""The SDK's subprocess terminals, started without a full fork of the server.

The SDK starts each terminal's shell with `subprocess.Popen(..., preexec_fn=os.setsid)`.
A `preexec_fn` rules out vfork: CPython forks the whole process, holding the GIL while the
kernel copies its page tables, and calls the function in the child. With the server at
~350 MB that stops every thread for ~28 ms per shell (against 0.2 ms with vfork), and the
soak starts 50 shells within two seconds: the Trio thread's task steps longer than 20 ms
went from 47 to 9 with this module (bench/soak.py; Development.md has the figures).

`start_new_session=True` makes the same `setsid()` call in the child, and lets CPython use
vfork. So the SDK terminal module's `subprocess` is a copy of the module whose `Popen`
swaps the one for the other, and does nothing else: every other spawn in the process is
left as it is.
"""

from __future__ import annotations

import os
import subprocess
import types
from typing import Any


class SessionPopen(subprocess.Popen[Any]):
    """`Popen` with `preexec_fn=os.setsid` made `start_new_session=True` (same effect)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("preexec_fn") is os.setsid:
            del kwargs["preexec_fn"]
            kwargs["start_new_session"] = True
        super().__init__(*args, **kwargs)


def install() -> None:
    """Give the SDK's subprocess terminal module the `subprocess` above. Idempotent."""
    from openhands.tools.terminal.terminal import subprocess_terminal

    sdk_globals = subprocess_terminal.__dict__
    if sdk_globals["subprocess"].Popen is SessionPopen:
        return
    sdk_globals["subprocess"] = module_with(subprocess, Popen=SessionPopen)


def module_with(original: types.ModuleType, **replaced: Any) -> types.ModuleType:
    """A copy of `original` with some of its names bound anew: given to one SDK module as
    the module it imported, it changes what that module calls and nothing else."""
    module = types.ModuleType(original.__name__, original.__doc__)
    module.__dict__.update(original.__dict__, **replaced)
    return module
