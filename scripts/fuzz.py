"""`make fuzz`: schemathesis against a real server, both dialects, every check.

For each round (no session key, then a key) it serves the app on a free loopback port, seeds
a few conversations through the scripted LLM (so that ids and event ids reach the handlers,
not only their 404s), and runs schemathesis on /openapi.json with every check, a fixed seed
and a bounded number of examples per operation. It exits non-zero on any failure.

Nothing leaves the machine: where the kernel allows it (`unshare`), the whole run happens in a
network namespace of its own that has only loopback; the LLM of every seeded conversation is
the scripted one, and any other an input names is unreachable there, so runs fail fast.
Schemathesis' own exceptions, each with its reason, are in `schemathesis_config` below.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from trio_openhands.core.sdk_loader import quiet_sdk_environment
from trio_openhands.server import serve
from trio_openhands.settings import Settings
from trio_openhands.testing.fake_llm import FakeLLM

KEY = "fuzz-session-key"
SCHEMATHESIS_TIMEOUT = 900  # seconds for one round, whatever happens
# Reached by nothing in the namespace; outside it, a closed port: refused at once.
DEAD_PROXY = "http://127.0.0.1:9"

log = logging.getLogger("fuzz")


def schemathesis_config(ids: list[str], doomed: list[str], event_ids: list[str]) -> str:
    """The run's schemathesis.toml: seeded ids for half of the generated ones, and the
    statuses that a schema-valid request may still get where the schema cannot say why."""
    lines = [
        "[generation]",
        'database = "none"',
        "[dictionaries.conversations]",
        f"values = {json.dumps(ids)}",
        "[dictionaries.doomed]",
        f"values = {json.dumps(doomed)}",
        "[dictionaries.events]",
        f"values = {json.dumps(event_ids)}",
        "[parameters]",
        '"path.conversation_id" = { dictionary = "conversations", probability = 0.5 }',
        '"path.event_id" = { dictionary = "events", probability = 0.5 }',
        # DELETE only ever deletes the conversations seeded for it.
        "[[operations]]",
        'include-method = "DELETE"',
        "[operations.parameters]",
        '"path.conversation_id" = { dictionary = "doomed", probability = 0.5 }',
    ]
    for description, regex, extra in ACCEPTANCE_EXCEPTIONS:
        statuses = json.dumps([*DEFAULT_ACCEPTED, extra])
        lines += [
            f"# {description}",
            "[[operations]]",
            f"include-name-regex = {json.dumps(regex)}",
            "[operations.checks.positive_data_acceptance]",
            f"expected-statuses = {statuses}",
        ]
    return "\n".join(lines) + "\n"


# What positive_data_acceptance accepts by default, and (why, operations as a "METHOD /path"
# regex, one more status) where a schema-valid request may still be refused.
DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ACCEPTANCE_EXCEPTIONS: list[tuple[str, str, str]] = [
    (
        "page_id must name an item of the listing: any other is a 400",
        r"^GET /(api/)?conversations(/\{conversation_id\}/events)?/search$",
        "400",
    ),
    (
        "llm, agent, policies, analyzers, secrets, MCP and agent context are SDK objects, "
        "free-form in the schema and validated by the SDK",
        r"^POST /(api/)?conversations(/\{conversation_id\}/"
        r"(secrets|confirmation_policy|security_analyzer))?$",
        "422",
    ),
    (
        "the SDK refuses what it cannot do for this conversation: an agent that is not ACP, "
        "no registered marketplace, no goal left to resume",
        r"^POST /api/conversations/\{conversation_id\}/"
        r"(switch_acp_model|load_plugin|goal/resume)$",
        "400",
    ),
]


async def seed(client: httpx.AsyncClient, llm: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Conversations of both dialects that ran once (so they have events), and two to delete."""
    message = {"role": "user", "content": [{"type": "text", "text": "hello"}]}

    async def seed_one() -> str:
        body = {"llm": llm, "initial_message": message, "workspace": {"working_dir": workdir}}
        response = await client.post("/conversations", json=body)
        response.raise_for_status()
        return response.json()["id"]

    async def api_one() -> str:
        body = {
            "agent": {"kind": "Agent", "llm": {**llm, "usage_id": "agent"}, "tools": []},
            "workspace": {"working_dir": workdir, "kind": "LocalWorkspace"},
            "initial_message": {**message, "run": True},
        }
        response = await client.post("/api/conversations", json=body)
        response.raise_for_status()
        return response.json()["id"]

    ids = [await seed_one(), await api_one()]
    doomed = [await seed_one(), await api_one()]
    event_ids: list[str] = []
    with trio.fail_after(60):  # polled: the runs end in the server, out of our sight
        for conversation_id in ids + doomed:
            while True:
                info = (await client.get(f"/conversations/{conversation_id}")).json()
                if info["status"] not in ("idle", "running"):
                    break
                await trio.sleep(0.1)
        for conversation_id in ids:
            page = await client.get(f"/conversations/{conversation_id}/events/search")
            event_ids += [event["id"] for event in page.json()["items"]]
    return {"ids": ids, "doomed": doomed, "event_ids": event_ids}


async def fuzz_round(name: str, root: Path, args: argparse.Namespace, keyed: bool) -> int:
    """Serve, seed, run schemathesis; its exit code."""
    here = root / name
    here.mkdir()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        conversations_dir=here / "conversations",
        workspace_dir=here / "project",
        session_api_keys=(KEY,) if keyed else (),
        secret_key="fuzz-secret",
        log_level="WARNING",
    )
    async with trio.open_nursery() as llm_nursery:
        llm_url = await llm_nursery.start(FakeLLM().serve)
        stop = trio.Event()
        async with trio.open_nursery() as server_nursery:
            url = (await server_nursery.start(_serve, settings, stop))[0]
            try:
                code = await _seed_and_run(name, here, url, llm_url, args, keyed)
            finally:
                stop.set()  # the server stops as on a signal
        llm_nursery.cancel_scope.cancel()
    return code


async def _seed_and_run(
    name: str, here: Path, url: str, llm_url: str, args: argparse.Namespace, keyed: bool
) -> int:
    headers = {"X-Session-API-Key": KEY} if keyed else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        with trio.fail_after(60):
            while True:  # the SDK is imported in the background
                if (await client.get("/ready")).status_code == 200:
                    break
                await trio.sleep(0.2)
        llm = {"model": "openai/fake", "base_url": llm_url, "api_key": "k", "num_retries": 0}
        seeded = await seed(client, llm, str(here / "project"))
    config = here / "schemathesis.toml"
    config.write_text(schemathesis_config(seeded["ids"], seeded["doomed"], seeded["event_ids"]))
    command = [
        *_schemathesis(),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(args.examples),
        "--seed",
        str(args.seed),
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "ndjson",
        "--report-dir",
        str(here / "report"),
        *(["--header", f"X-Session-API-Key: {KEY}"] if keyed else []),
        *args.schemathesis_args,
    ]
    print(f"\n>> round {name!r}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    code = 124  # as timeout(1) says it
    with trio.move_on_after(SCHEMATHESIS_TIMEOUT):
        code = (await trio.run_process(command, check=False, cwd=here)).returncode
    print(f">> round {name!r}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
    return code


async def _serve(
    settings: Settings, stop: trio.Event, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    await serve(settings, shutdown_trigger=stop, task_status=task_status)


def _schemathesis() -> list[str]:
    return [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]


async def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="openhands-fuzz-"))
    server_log = root / "server.log"
    handler = logging.FileHandler(server_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    os.chdir(root)  # a relative working_dir an input names is created here, not in the tree
    codes = {}
    try:
        for name, keyed in (("no-key", False), ("session-key", True)):
            if args.round in (name, "all"):
                codes[name] = await fuzz_round(name, root, args, keyed)
    finally:
        errors = [line for line in server_log.read_text().splitlines() if " ERROR " in line]
        print(f"\n>> server log: {len(errors)} ERROR lines ({server_log})")
        for line in errors[:20]:
            print(f"   {line}")
        if not args.keep and all(code == 0 for code in codes.values()) and not errors:
            shutil.rmtree(root, ignore_errors=True)
    print(">> " + ", ".join(f"{name}: exit {code}" for name, code in codes.items()))
    return 0 if codes and all(code == 0 for code in codes.values()) and not errors else 1


def _in_private_network(argv: list[str]) -> None:
    """Re-run this script in a new network namespace with only loopback, if possible."""
    if os.environ.get("FUZZ_NETNS") or "--no-netns" in argv or shutil.which("unshare") is None:
        return
    inner = f'ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} "$@"'
    command = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", inner, "fuzz", *argv]
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        print(">> no private network namespace here (unshare refused): loopback proxies only")
        return
    sys.exit(subprocess.run(command, env={**os.environ, "FUZZ_NETNS": "1"}, check=False).returncode)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="make fuzz: schemathesis on a real server")
    parser.add_argument("--examples", type=int, default=20, help="per operation (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--round", choices=("all", "no-key", "session-key"), default="all")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument("--no-netns", action="store_true", help="no private network namespace")
    parser.add_argument("schemathesis_args", nargs="*", help="after --: for schemathesis run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    _in_private_network(sys.argv[1:])
    quiet_sdk_environment()
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ[variable] = DEAD_PROXY
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"
    for variable in ("OPENAI_API_KEY", "LITELLM_API_KEY", "ANTHROPIC_API_KEY"):
        os.environ.pop(variable, None)
    sys.exit(trio.run(main, parse_args(sys.argv[1:])))
