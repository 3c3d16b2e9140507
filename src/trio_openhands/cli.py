"""`openhands-server`: serve the API, or run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import trio

from trio_openhands.settings import DEFAULT_HOST, DEFAULT_PORT, Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openhands-server",
        description="A REST/WebSocket server for the OpenHands agent, built on Trio.",
        epilog="Every option can also come from the environment: see README.md, Configuration.",
    )
    parser.add_argument("--host", default=None, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=None, help=f"port to bind (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--conversations-dir",
        type=Path,
        default=None,
        help="where conversations are stored (env OPENHANDS_CONVERSATIONS_DIR; "
        "default workspace/conversations)",
    )
    parser.add_argument(
        "--workspace-dir",
        type=Path,
        default=None,
        help="the agent's working directory (env OPENHANDS_WORKSPACE_DIR; "
        "default workspace/project)",
    )
    parser.add_argument(
        "--session-api-key",
        action="append",
        default=None,
        dest="session_api_keys",
        help="require this X-Session-API-Key (repeatable; env SESSION_API_KEY, "
        "OH_SESSION_API_KEYS_0, _1, ...)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        dest="cors_origins",
        help="allow this browser origin besides localhost (repeatable; env "
        "OPENHANDS_CORS_ORIGINS, comma-separated)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        dest="allowed_hosts",
        help="accept this Host name besides the loopback ones (repeatable; env "
        "OPENHANDS_ALLOWED_HOSTS, comma-separated; `*` for any)",
    )
    parser.add_argument(
        "--allow-open",
        action="store_true",
        default=None,
        help="serve beyond loopback without a session key (env OPENHANDS_ALLOW_OPEN=1): "
        "anyone who reaches the port gets a shell",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (env OPENHANDS_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=None,
        help="agent runs in progress at once (env OPENHANDS_MAX_CONCURRENT_RUNS; default 10)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="keep conversations in this PostgreSQL database (postgresql://...), shared by "
        "every instance given it (env OPENHANDS_DATABASE_URL; default: files under the "
        "conversations directory)",
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run one conversation end to end against the scripted LLM")
    demo.add_argument(
        "--port", type=int, default=0, dest="demo_port", help="server port (default: any free)"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=args.host,
        port=args.port,
        conversations_dir=args.conversations_dir,
        workspace_dir=args.workspace_dir,
        session_api_keys=tuple(args.session_api_keys) if args.session_api_keys else None,
        cors_origins=tuple(args.cors_origins) if args.cors_origins else None,
        allowed_hosts=tuple(args.allowed_hosts) if args.allowed_hosts else None,
        log_level=args.log_level,
        max_concurrent_runs=args.max_concurrent_runs,
        allow_open=args.allow_open,
        database_url=args.database_url,
    )


def refusal(settings: Settings) -> str | None:
    """Why this server must not start, if it must not: the workspace API and the agent give
    whoever reaches the port a shell, so a keyless server stays on loopback unless told."""
    if settings.binds_loopback or settings.session_api_keys or settings.allow_open:
        return None
    return (
        f"refusing to serve {settings.host} without a session key: anyone who can reach the "
        "port could run commands. Set SESSION_API_KEY (or --session-api-key), bind to "
        "127.0.0.1, or pass --allow-open (OPENHANDS_ALLOW_OPEN=1) to serve it open anyway."
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("LiteLLM", "litellm", "httpx", "openhands"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    if args.command == "demo":
        from trio_openhands.demo import run_demo

        sys.exit(trio.run(run_demo, settings.with_changes(port=args.demo_port)))
    if (reason := refusal(settings)) is not None:
        logging.getLogger("trio_openhands").error("%s", reason)
        sys.exit(2)
    from trio_openhands.server import serve
    from trio_openhands.stores.file_store import DirectoryInUse, lock_conversations_dir

    try:  # the supervisor takes the lock for real; this is for a one-line answer
        lock_conversations_dir(settings.conversations_dir).close()
    except DirectoryInUse as error:
        logging.getLogger("trio_openhands").error("%s", error)
        sys.exit(1)
    trio.run(serve, settings)
    # Everything is persisted and closed by now. Once the SDK is loaded, the interpreter's own
    # shutdown (atexit hooks of litellm and the SDK, module teardown) takes ~1.4 s more,
    # which would break the promise to exit within 2 s of SIGTERM: skip it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
