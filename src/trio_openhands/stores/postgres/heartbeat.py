"""The heartbeat: an instance's leases (and its registry row) renewed while it runs.

One task for the whole instance, in the supervisor's nursery: every `interval` (a third of
the lease time by default, so two beats may be missed before a lease expires) it renews, in
one statement, every lease the supervisor says it holds, and reports each one that is not
its own any more (`on_lost`): that conversation was taken over, and its live object here
must stop without writing (its writes would fail anyway: they are fenced).

A beat that cannot reach the database is logged and retried at the next one: the leases
may expire meanwhile and be claimed elsewhere, which the next beat that gets through
reports, and nothing this instance writes meanwhile lands (the fence). Crashing the
supervisor over a database hiccup would lose more than it protects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

import psycopg
import trio

from trio_openhands.stores.postgres.database import DatabaseUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from trio_openhands.stores.postgres.instances import InstanceRegistry
    from trio_openhands.stores.postgres.leases import Lease, LeaseStore

log = logging.getLogger(__name__)


async def heartbeat(
    leases: LeaseStore,
    held: Callable[[], Sequence[Lease]],
    on_lost: Callable[[Lease], object],
    *,
    registry: InstanceRegistry | None = None,
    interval: float | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Renew `held()` (and refresh `registry`) every `interval` seconds until cancelled.

    `held` is read at each beat (the leases this instance holds now); `on_lost(lease)` runs
    on the Trio thread for each that was taken over or released meanwhile, at every beat
    until `held` no longer returns it, and must not block. The first beat is made before
    `task_status.started()`, so a caller knows its leases were renewed (and the instance
    registered) once `start` returns."""
    period = leases.ttl / 3 if interval is None else interval
    await _beat(leases, held, on_lost, registry)
    task_status.started()
    while True:
        await trio.sleep(period)
        await _beat(leases, held, on_lost, registry)


async def _beat(
    leases: LeaseStore,
    held: Callable[[], Sequence[Lease]],
    on_lost: Callable[[Lease], object],
    registry: InstanceRegistry | None,
) -> None:
    try:
        if registry is not None:
            await registry.register()
        _, lost = await leases.renew_many(list(held()))
    except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable) as error:
        log.warning("heartbeat: the database did not answer (%s); retrying", error)
        return
    for lease in lost:
        log.warning(
            "conversation %s: lease %d lost (taken over or released)",
            lease.conversation_id.hex,
            lease.token,
        )
        on_lost(lease)
