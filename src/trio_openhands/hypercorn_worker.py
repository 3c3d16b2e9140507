"""Hypercorn's Trio worker as `openhands-server` runs it, accepting through DrainingListener.

The same steps as `hypercorn.trio.serve` (lifespan start-up, bind, serve each connection
with Hypercorn's TCPServer, on shutdown stop accepting and give open connections
`graceful_timeout`, lifespan shutdown), with one difference: connections are accepted by
`DrainingListener`, which takes every waiting connection in one pass of the scheduler (see
its module for why). Plain HTTP only: `openhands-server` has no TLS options (TLS is
Hypercorn's CLI, deploy/hypercorn.toml, or a proxy in front).

This uses Hypercorn's TCPServer, Lifespan and WorkerContext, which are not public API
(pinned in uv.lock; the whole suite serves through this module).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr, wrap_app

from trio_openhands.draining_listener import DrainingListener

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.config import Config
    from hypercorn.typing import Framework


async def serve(
    app: Framework,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `shutdown_trigger` returns; reports the bound URLs when listening."""
    if config.ssl_enabled:
        raise ValueError("openhands-server serves plain HTTP; use Hypercorn's CLI for TLS")
    wrapped = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners: list[DrainingListener] = []
            binds: list[str] = []
            for sock in config.create_sockets().insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(DrainingListener(sock))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
                await config.log.info(f"Running on {binds[-1]} (CTRL + C to quit)")
            task_status.started(binds)
            handler = partial(
                TCPServer, wrapped, config, context, ConnectionState(lifespan_state.copy())
            )
            accept = partial(trio.serve_listeners, handler, listeners, handler_nursery=connections)
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(accept)
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                # Idle keep-alive connections close on this; the others get the grace period.
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
