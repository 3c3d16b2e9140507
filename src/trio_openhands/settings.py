"""Server settings: one frozen object built from the command line and the environment.

Every knob lives here so that the app factory, the supervisor and the tests share one
description of the server; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _session_api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """`SESSION_API_KEY` plus the reference server's `OH_SESSION_API_KEYS_0..n` (rotation)."""
    keys: list[str] = []
    if env.get("SESSION_API_KEY"):
        keys.append(env["SESSION_API_KEY"])
    index = 0
    while f"OH_SESSION_API_KEYS_{index}" in env:
        if value := env[f"OH_SESSION_API_KEYS_{index}"]:
            keys.append(value)
        index += 1
    return tuple(dict.fromkeys(keys))


def _is_yes(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    """What a server instance needs to know; see README "Configuration" for each field."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    conversations_dir: Path = Path("workspace/conversations")
    workspace_dir: Path = Path("workspace/project")
    session_api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    # How many agent runs may be in progress at once; the rest wait for a slot.
    max_concurrent_runs: int = 10
    # How far below the server's the agents' CPU priority is (nice steps, Linux): the SDK's
    # asyncio thread and its tool threads (the SDK runs its shells under `nice -n 10`
    # itself). Under load the API and the sockets then go first; 0 keeps them equal.
    agent_niceness: int = 10
    # Events a WebSocket subscriber may have queued before it is closed with 1013.
    subscriber_buffer: int = 1024
    # Secret used to encrypt API keys at rest; when unset a key file is created.
    secret_key: str | None = None
    # Seconds a shutdown gives conversations to pause and persist, then requests in progress
    # to finish (an idle keep-alive connection is closed at once: 0.07 s to exit with one
    # open and a 10 s timeout, against 0.04 s without).
    graceful_timeout: float = 0.5
    # Seconds an idle keep-alive HTTP connection is held open. Longer than a client's pool
    # keeps one (httpx's, so the SDK clients': 5 s): a server that closes first races the
    # client's next request on it, which then fails with no answer (a POST is not retried).
    keep_alive_timeout: float = 65.0
    # A loaded conversation nothing has used (no run, socket or request) for this long is
    # unloaded to free its memory, and loaded again on next use; 0 keeps them loaded.
    idle_unload_seconds: float = 600.0
    # Seconds between server pings on WebSockets (None: no pings); for proxies that drop
    # idle connections.
    websocket_ping_interval: float | None = None
    # Start importing the SDK as soon as the server serves (tests may turn this off).
    preload_sdk: bool = True
    # Host names (besides the loopback ones) accepted in the `Host` header while bound to a
    # loopback address; `*` accepts any. Bound elsewhere, any host is accepted unless this
    # is set. Refusing foreign hosts defeats DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()
    # Seconds a request may take to deliver its body once a handler reads it (408 after).
    body_timeout: float = 20.0
    # `openhands-server` serves beyond loopback without a session key only when this is set.
    allow_open: bool = False
    # Bytes of output one workspace-API command keeps; the rest is drained and dropped.
    command_output_limit: int = 16 * 1024 * 1024
    # Directories every conversation's working directory must lie under (empty: anywhere).
    working_dir_roots: tuple[Path, ...] = ()
    # A conversation created on the `/api` paths in a working directory outside any git
    # repository gets a `git init` there, as in the reference, so that `/api/git/changes`
    # (a web UI's Changes tab) lists what the agent makes.
    git_init_working_dirs: bool = True
    # Bytes a file upload (`POST /api/file/upload`) may hold at most (413 beyond).
    max_upload_bytes: int = 1024**3
    # The shared PostgreSQL store (`postgresql://...`): None keeps everything in files under
    # the conversations directory. Kept out of repr: the URL may carry a password.
    database_url: str | None = field(default=None, repr=False)
    # With a database: seconds a conversation's lease lasts unless renewed (its owner's
    # heartbeat renews it every third of that); a dead owner's conversations are taken over
    # once it has expired.
    lease_seconds: float = 10.0
    # With a database: the base URL the other instances forward a conversation's commands
    # to (default: http://<host>:<port> as bound).
    internal_address: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Read the environment; explicit keyword overrides (the CLI's flags) win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "conversations_dir": Path(
                env.get("OPENHANDS_CONVERSATIONS_DIR")
                or env.get("OH_CONVERSATIONS_PATH")
                or "workspace/conversations"
            ),
            "workspace_dir": Path(env.get("OPENHANDS_WORKSPACE_DIR") or "workspace/project"),
            "session_api_keys": _session_api_keys(env),
            "cors_origins": _split_list(env.get("OPENHANDS_CORS_ORIGINS")),
            "allowed_hosts": _split_list(env.get("OPENHANDS_ALLOWED_HOSTS")),
            "working_dir_roots": tuple(
                Path(item) for item in _split_list(env.get("OPENHANDS_WORKING_DIR_ROOTS"))
            ),
            "log_level": (env.get("OPENHANDS_LOG_LEVEL") or "INFO").upper(),
            "secret_key": env.get("OH_SECRET_KEY") or None,
            "llm_api_key": env.get("LITELLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
        }
        if env.get("OPENHANDS_MAX_CONCURRENT_RUNS"):
            values["max_concurrent_runs"] = int(env["OPENHANDS_MAX_CONCURRENT_RUNS"])
        if env.get("OPENHANDS_AGENT_NICENESS"):
            values["agent_niceness"] = int(env["OPENHANDS_AGENT_NICENESS"])
        if env.get("OPENHANDS_IDLE_UNLOAD_SECONDS"):
            values["idle_unload_seconds"] = float(env["OPENHANDS_IDLE_UNLOAD_SECONDS"])
        if env.get("OPENHANDS_GRACEFUL_TIMEOUT"):
            values["graceful_timeout"] = float(env["OPENHANDS_GRACEFUL_TIMEOUT"])
        if env.get("OPENHANDS_KEEP_ALIVE_TIMEOUT"):
            values["keep_alive_timeout"] = float(env["OPENHANDS_KEEP_ALIVE_TIMEOUT"])
        if env.get("OPENHANDS_WS_PING_INTERVAL"):
            values["websocket_ping_interval"] = float(env["OPENHANDS_WS_PING_INTERVAL"])
        if env.get("OPENHANDS_ALLOW_OPEN"):
            values["allow_open"] = _is_yes(env["OPENHANDS_ALLOW_OPEN"])
        if env.get("OPENHANDS_GIT_INIT_WORKING_DIRS"):
            values["git_init_working_dirs"] = _is_yes(env["OPENHANDS_GIT_INIT_WORKING_DIRS"])
        if env.get("OPENHANDS_COMMAND_OUTPUT_LIMIT"):
            values["command_output_limit"] = int(env["OPENHANDS_COMMAND_OUTPUT_LIMIT"])
        if env.get("OPENHANDS_BODY_TIMEOUT"):
            values["body_timeout"] = float(env["OPENHANDS_BODY_TIMEOUT"])
        if env.get("OPENHANDS_SUBSCRIBER_BUFFER"):
            values["subscriber_buffer"] = int(env["OPENHANDS_SUBSCRIBER_BUFFER"])
        if env.get("OPENHANDS_DATABASE_URL"):
            values["database_url"] = env["OPENHANDS_DATABASE_URL"]
        if env.get("OPENHANDS_LEASE_SECONDS"):
            values["lease_seconds"] = float(env["OPENHANDS_LEASE_SECONDS"])
        if env.get("OPENHANDS_INTERNAL_ADDRESS"):
            values["internal_address"] = env["OPENHANDS_INTERNAL_ADDRESS"]
        if env.get("OPENHANDS_MAX_UPLOAD_BYTES"):
            values["max_upload_bytes"] = int(env["OPENHANDS_MAX_UPLOAD_BYTES"])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def binds_loopback(self) -> bool:
        """Bound to a loopback address only: then only loopback names are valid `Host`s."""
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
