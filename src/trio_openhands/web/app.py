"""The app factory: nothing is built at import time, everything from `Settings`.

The supervisor starts with the app's lifespan (so the Hypercorn CLI gets it too) inside a
cancel scope of its own; `begin_shutdown()` pauses every run and closes every socket with
1001, before Hypercorn stops serving. Whoever serves the app must call it when told to stop:
`server.serve` does from its shutdown trigger; under the Hypercorn CLI, whose lifespan
shutdown only comes after serving has stopped, `shutdown_requested` tells the app (asgi.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio
from quart import Response
from quart_schema import QuartSchema
from quart_trio import QuartTrio

from trio_openhands.core.sdk_loader import SdkLoader
from trio_openhands.core.supervisor import Supervisor
from trio_openhands.settings import Settings
from trio_openhands.stores.settings_store import SettingsStore
from trio_openhands.web import docs, health, openapi
from trio_openhands.web.api import agent_profiles as api_agent_profiles
from trio_openhands.web.api import auth as api_auth
from trio_openhands.web.api import bash as api_bash
from trio_openhands.web.api import controls as api_controls
from trio_openhands.web.api import conversation_start as api_conversation_start
from trio_openhands.web.api import conversations as api_conversations
from trio_openhands.web.api import events as api_events
from trio_openhands.web.api import files as api_files
from trio_openhands.web.api import git as api_git
from trio_openhands.web.api import goals as api_goals
from trio_openhands.web.api import hooks as api_hooks
from trio_openhands.web.api import llm as api_llm
from trio_openhands.web.api import mcp as api_mcp
from trio_openhands.web.api import meta_profiles as api_meta_profiles
from trio_openhands.web.api import plugins as api_plugins
from trio_openhands.web.api import profiles as api_profiles
from trio_openhands.web.api import settings as api_settings
from trio_openhands.web.api import skills as api_skills
from trio_openhands.web.api import sockets as api_sockets
from trio_openhands.web.api import sub_agents as api_sub_agents
from trio_openhands.web.api import tools as api_tools
from trio_openhands.web.api import vscode as api_vscode
from trio_openhands.web.api import workspace_static as api_workspace_static
from trio_openhands.web.api import workspaces as api_workspaces
from trio_openhands.web.connection import (
    ShieldedEndHTTPConnection,
    install_h11_protocol,
)
from trio_openhands.web.forwarding import install_forwarding
from trio_openhands.web.frame_writer import FrameWritingConnection
from trio_openhands.web.hosts import host_is_allowed
from trio_openhands.web.json_errors import install_error_handlers
from trio_openhands.web.lazy_rules import LazilyBuiltRule
from trio_openhands.web.security import install_security
from trio_openhands.web.seed import conversations, events, sockets
from trio_openhands.web.streamed_body import StreamedBodyRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024


class OpenHandsApp(QuartTrio):
    """QuartTrio plus the server's collaborators, typed for the route modules."""

    asgi_http_class = ShieldedEndHTTPConnection
    asgi_websocket_class = FrameWritingConnection  # socket frames written in batches
    url_rule_class = LazilyBuiltRule  # app built in a third of the time (see its module)
    request_class = StreamedBodyRequest  # a file upload streams its body to disk

    settings: Settings
    sdk_loader: SdkLoader
    settings_store: SettingsStore  # the server-held configuration (/api/settings...)
    started_at: float
    _supervisor: Supervisor | None = None
    _supervisor_scope: trio.CancelScope | None = None
    _supervisor_stopped: trio.Event | None = None
    _shutdown_watch_scope: trio.CancelScope | None = None

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("the supervisor starts with the app's lifespan")
        return self._supervisor

    @property
    def supervisor_ready(self) -> bool:
        return self._supervisor is not None

    def accepts_host(self, host: str) -> bool:
        """Whether security.py's `Host` rule lets this name in (web/liveness.py asks)."""
        return host_is_allowed(host, self.settings)

    async def start_supervisor(self) -> None:
        stopped = self._supervisor_stopped = trio.Event()

        async def run_supervisor(*, task_status: trio.TaskStatus[Supervisor]) -> None:
            try:
                with trio.CancelScope() as scope:
                    self._supervisor_scope = scope
                    await Supervisor(self.settings, self.sdk_loader).run(task_status=task_status)
            finally:
                stopped.set()

        self._supervisor = supervisor = await self.nursery.start(run_supervisor)
        if self.settings.database_url is not None:  # settings and secrets shared too
            from trio_openhands.stores.postgres.blobs import BlobStore
            from trio_openhands.stores.postgres.conversation_store import PostgresStore

            store = supervisor.store
            assert isinstance(store, PostgresStore)
            self.settings_store.shared = BlobStore(store.database)
        if self.settings.preload_sdk:
            self.nursery.start_soon(self.sdk_loader.load)

    async def make_default_options_response(self) -> Response:
        """`OPTIONS` without a CORS preflight: 204 and `Allow`, no HTML body."""
        response = await super().make_default_options_response()
        answer = Response("", status=204, headers={"Allow": response.headers["Allow"]})
        del answer.headers["Content-Type"]
        return answer

    async def begin_shutdown(self) -> None:
        """Pause runs, persist, close sockets with 1001; safe to call more than once."""
        if self._supervisor is not None:
            await self._supervisor.shutdown()

    async def begin_shutdown_when(
        self,
        shutdown_requested: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """`begin_shutdown()` as soon as `shutdown_requested()` returns; cancelled by `_stop`."""
        with trio.CancelScope() as self._shutdown_watch_scope:
            task_status.started()
            await shutdown_requested()
            log.info("shutdown requested: pausing runs and closing sockets")
            await self.begin_shutdown()

    async def stop_supervisor(self) -> None:
        if self._supervisor_scope is not None and self._supervisor_stopped is not None:
            self._supervisor_scope.cancel()
            await self._supervisor_stopped.wait()


def create_app(
    settings: Settings | None = None,
    *,
    shutdown_requested: Callable[[], Awaitable[None]] | None = None,
) -> OpenHandsApp:
    """Build the app; `shutdown_requested` returns when the server has been told to stop."""
    settings = settings or Settings.from_env()
    install_h11_protocol()
    app = OpenHandsApp(__name__)
    app.settings = settings
    app.sdk_loader = SdkLoader()
    app.settings_store = SettingsStore(settings.conversations_dir, settings.secret_key)
    app.started_at = time.monotonic()
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        BODY_TIMEOUT=settings.body_timeout,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=settings.graceful_timeout + 1,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    app.url_map.strict_slashes = False
    QuartSchema(
        app,
        info={"title": "trio-openhands", "version": "0.1.0"},
        swagger_ui_path="/docs",
        redoc_ui_path=None,  # its script would come from a CDN: /docs serves its own
        scalar_ui_path=None,
        openapi_provider_class=openapi.ApiSpec,
        security_schemes={
            "SessionKey": {"type": "apiKey", "in_": "header", "name": "X-Session-API-Key"}
        },
    )
    docs.configure(app)
    install_error_handlers(app)
    install_security(app, settings)
    if settings.database_url is not None:
        install_forwarding(app)
    seed_modules = (conversations, events, sockets)
    api_modules = (api_conversations, api_conversation_start, api_events, api_sockets)
    api_modules += (api_bash, api_files, api_git)
    api_modules += (api_skills, api_plugins, api_sub_agents, api_tools, api_vscode)
    api_modules += (api_auth, api_workspaces, api_workspace_static, api_mcp)
    api_modules += (api_controls, api_goals, api_hooks)
    config_modules = (api_settings, api_profiles, api_agent_profiles, api_meta_profiles)
    config_modules += (api_llm,)
    for module in (health, docs, *seed_modules, *api_modules, *config_modules):
        app.register_blueprint(module.blueprint)

    @app.before_serving
    async def _start() -> None:  # pyright: ignore[reportUnusedFunction]
        await app.start_supervisor()
        if shutdown_requested is not None:
            await app.nursery.start(app.begin_shutdown_when, shutdown_requested)
        log.info("serving; conversations in %s", settings.conversations_dir.absolute())

    @app.after_serving
    async def _stop() -> None:  # pyright: ignore[reportUnusedFunction]
        if app._shutdown_watch_scope is not None:
            app._shutdown_watch_scope.cancel()
        await app.begin_shutdown()
        await app.stop_supervisor()

    return app
