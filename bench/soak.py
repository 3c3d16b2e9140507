"""Soak: many conversations with scripted agents, many sockets each, all at once.

Prints lost and duplicated events (per socket, against the conversation's REST event list),
the count of 5xx answers, `/alive` latency (p50, p99, max) while it all runs, and the ERROR
lines the server logged (start to shutdown). Everything but the latencies should be zero.

Run: `uv run python bench/soak.py [--conversations 50 --sockets 10]`
(about a minute on 2 cores; `--help` for the knobs). Loopback only, bounded in count and
time (`--timeout`, default 300 s).

How the figures are made:
- The server is `openhands-server` in its own process (`--log-level INFO`, the default),
  its stderr kept in a file: the ERROR count is over that log, which includes whatever
  litellm and asyncio report at garbage collection and at shutdown (SIGTERM at the end).
  Its `max_concurrent_runs` is its default (10) unless `--max-runs` says otherwise
  (`--max-runs 50`: every run in flight at once, the worst case for the Trio thread).
- `/alive` is probed from another small process (`--probe` mode of this script), on a new
  connection every 50 ms as a liveness probe would, so the figure is the server's latency,
  not this process's (which runs every client; the scripted LLM is a third process).
- On 2 cores the clients and the scripted LLM take about a core between them, which in a
  deployment other machines would spend. `--client-niceness 10` runs them that many nice
  steps below the server and the probe, so that the figure says what the server itself
  does once its machine is its own; the default (0) has them compete as equals.
- Each conversation: created with a `terminal` tool; half its sockets connect before the
  message that starts the run, the others at random moments during it, all with
  `resend_all=true`; the scripted agent makes `--steps` tool calls (terminal `echo` and
  think, 50-150 ms of scripted LLM latency each), then finishes. Once GET says `finished`,
  the REST event list is read in pages; each socket must then have delivered every one of
  those events exactly once (lost: missing after 10 s; duplicated: seen twice).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import free_port
from tests.test_error_log import KNOWN_LINES  # the lines the error-log test forbids

ERROR_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")


# -- the /alive probe process ------------------------------------------------------------


def run_probe(port: int, interval: float) -> None:
    """GET /alive on a fresh connection every `interval` s until stdin closes; print JSON."""
    import threading

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    latencies: list[float] = []
    failures = 0
    print("ready", flush=True)
    while not stop.is_set():
        began = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/alive")
            ok = connection.getresponse().status == 200
            connection.close()
        except OSError:
            ok = False
        elapsed = time.perf_counter() - began
        if ok:
            latencies.append(elapsed)
        else:
            failures += 1
        stop.wait(max(0.0, interval - elapsed))
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


# -- the soak ------------------------------------------------------------------------------


@dataclass
class Tally:
    http_5xx: int = 0
    http_other_errors: list[str] = field(default_factory=list[str])
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    sockets_failed: int = 0
    sockets_checked: int = 0
    not_finished: list[str] = field(default_factory=list[str])
    client_errors: list[str] = field(default_factory=list[str])  # a conversation given up


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, llm_url: str) -> None:
        import httpx

        self.args = args
        self.url = url
        self.llm_url = llm_url  # the scripted LLM's base URL (".../v1")
        self.tally = Tally()
        # Idle connections are dropped before Hypercorn's keep-alive timeout (5 s) closes them.
        limits = httpx.Limits(max_connections=100, keepalive_expiry=2.0)
        self.client = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code >= 500:
            self.tally.http_5xx += 1
        elif response.status_code >= 400:
            self.tally.http_other_errors.append(f"{method} {path}: {response.status_code}")
        response.raise_for_status()
        return response.json()

    async def script(self, index: int) -> str:
        """Register conversation `index`'s script with the scripted LLM; its marker."""
        replies: list[dict[str, Any]] = []
        for step in range(self.args.steps):
            if step % 2 == 0:
                call = {"name": "terminal", "arguments": {"command": f"echo soak {index} {step}"}}
            else:
                call = {"name": "think", "arguments": {"thought": f"step {step}"}}
            replies.append({"tool_calls": [call], "delay": random.uniform(0.05, 0.15)})
        replies.append({"text": f"soak {index} done", "delay": 0.05})
        scripts_url = self.llm_url.removesuffix("/v1") + f"/_scripts/soak-{index}"
        response = await self.client.put(scripts_url, json=replies)
        response.raise_for_status()
        return f"[[fake:soak-{index}]]"

    def llm(self) -> dict[str, Any]:
        return {
            "model": "openai/fake",
            "base_url": self.llm_url,
            "api_key": "bench",
            "num_retries": 0,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
        }

    async def conversation(self, index: int) -> None:
        import httpx

        try:
            await self.one_conversation(index)
        except (httpx.HTTPError, ValueError) as error:
            self.tally.client_errors.append(f"{type(error).__name__}: {error}"[:200])

    async def one_conversation(self, index: int) -> None:
        tag = await self.script(index)
        body = {"llm": self.llm(), "tools": [{"name": "terminal"}]}
        conversation_id = (await self.request("POST", "/conversations", json=body))["id"]
        sockets = [SocketTally() for _ in range(self.args.sockets)]
        early = len(sockets) // 2
        async with trio.open_nursery() as nursery:
            for socket in sockets[:early]:
                await nursery.start(socket.follow, self.ws_url(conversation_id))
            message = {"role": "user", "content": [{"type": "text", "text": f"go {tag}"}]}
            await self.request("POST", f"/conversations/{conversation_id}/events", json=message)
            for socket in sockets[early:]:
                nursery.start_soon(socket.follow_later, self.ws_url(conversation_id))
            if (status := await self.wait_finished(conversation_id)) != "finished":
                self.tally.not_finished.append(f"{status}: {await self.why(conversation_id)}")
            expected = await self.all_event_ids(conversation_id)
            self.tally.events += len(expected)
            with trio.move_on_after(10):
                for socket in sockets:
                    await socket.wait_for(expected)
            nursery.cancel_scope.cancel()
        for socket in sockets:
            if socket.failed:
                self.tally.sockets_failed += 1
                continue
            self.tally.sockets_checked += 1
            self.tally.lost += len(expected - socket.seen.keys())
            self.tally.duplicated += sum(
                socket.seen.get(i, 0) - 1 for i in expected if i in socket.seen
            )

    def ws_url(self, conversation_id: str) -> str:
        return (
            self.url.replace("http://", "ws://")
            + f"/conversations/{conversation_id}/events/socket?resend_all=true"
        )

    async def wait_finished(self, conversation_id: str) -> str:
        """Poll GET (as a dashboard would) until the run has settled; the status."""
        while True:
            info = await self.request("GET", f"/conversations/{conversation_id}")
            if info["status"] in ("finished", "error", "stuck", "paused"):
                return info["status"]
            await trio.sleep(0.25)

    async def why(self, conversation_id: str) -> str:
        page = await self.request(
            "GET",
            f"/conversations/{conversation_id}/events/search",
            params={"kind": "ConversationErrorEvent", "sort_order": "TIMESTAMP_DESC"},
        )
        return page["items"][0]["detail"][:300] if page["items"] else "no error event"

    async def all_event_ids(self, conversation_id: str) -> set[str]:
        ids: list[str] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = await self.request(
                "GET", f"/conversations/{conversation_id}/events/search", params=params
            )
            ids.extend(item["id"] for item in page["items"])
            if not page.get("next_page_id"):
                return set(ids)
            params["page_id"] = page["next_page_id"]


class SocketTally:
    """One socket's frames: how many times each event id arrived."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.failed = False
        self._expected: set[str] | None = None
        self._complete = trio.Event()

    async def follow(self, url: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

        started = False
        try:
            async with open_websocket_url(url, message_queue_size=4096) as socket:
                task_status.started()
                started = True
                while True:
                    frame = json.loads(await socket.get_message())
                    if "id" in frame:  # a logged event (state updates are, too)
                        self.seen[frame["id"]] = self.seen.get(frame["id"], 0) + 1
                        self._check()
        except (OSError, HandshakeError, ConnectionClosed):
            self.failed = True
            if not started:
                task_status.started()
            self._complete.set()

    async def follow_later(self, url: str) -> None:
        await trio.sleep(random.uniform(0.0, 1.5))
        await self.follow(url)

    async def wait_for(self, expected: set[str]) -> None:
        self._expected = expected
        self._check()
        await self._complete.wait()

    def _check(self) -> None:
        if self._expected is not None and self._expected <= self.seen.keys():
            self._complete.set()


async def start_probe(port: int) -> trio.Process:
    probe = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--probe", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert probe.stdout is not None
    output = b""
    while b"ready\n" not in output:
        output += await probe.stdout.receive_some(4096)
    return probe


async def stop_probe(probe: trio.Process) -> dict[str, Any]:
    assert probe.stdin is not None
    assert probe.stdout is not None
    await probe.stdin.aclose()
    output = b""
    while chunk := await probe.stdout.receive_some(65536):
        output += chunk
    await probe.wait()
    return json.loads(output.decode().strip().splitlines()[-1])


async def llm_url(process: trio.Process) -> str:
    """The scripted LLM process prints its base URL first."""
    assert process.stdout is not None
    output = b""
    while b"\n" not in output:
        output += await process.stdout.receive_some(4096)
    return output.decode().split()[0]


async def wait_ready(url: str, deadline: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        with trio.fail_after(deadline):
            while True:
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def stop(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(15):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    log_path = folder / "server.log"
    port = free_port()
    env = {
        **os.environ,
        "OPENHANDS_CONVERSATIONS_DIR": str(folder / "conversations"),
        "OPENHANDS_WORKSPACE_DIR": str(folder / "project"),
        "OH_SECRET_KEY": "bench-secret",
    }
    if args.max_runs:
        env["OPENHANDS_MAX_CONCURRENT_RUNS"] = str(args.max_runs)
    env.pop("OPENAI_API_KEY", None)
    env.pop("LITELLM_API_KEY", None)
    command = [sys.executable, "-m", "trio_openhands.cli", "--port", str(port)]
    command += ["--log-level", args.log_level]
    try:
        with log_path.open("wb") as log_file:
            server = await trio.lowlevel.open_process(
                command, env=env, cwd=folder, stdout=log_file, stderr=subprocess.STDOUT
            )
            fake_llm = await trio.lowlevel.open_process(
                [
                    *niced(args.client_niceness),
                    sys.executable,
                    "-m",
                    "trio_openhands.testing.fake_llm",
                ],
                stdout=subprocess.PIPE,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                await wait_ready(url, 120)
                soak = Soak(args, url, await llm_url(fake_llm))
                probe = await start_probe(port)
                if args.client_niceness:  # this thread runs the clients; the probe stays at 0
                    os.setpriority(os.PRIO_PROCESS, 0, args.client_niceness)
                began = time.perf_counter()
                with trio.fail_after(args.timeout):
                    async with trio.open_nursery() as conversations:
                        for index in range(args.conversations):
                            conversations.start_soon(soak.conversation, index)
                elapsed = time.perf_counter() - began
                probed = await stop_probe(probe)
                await soak.client.aclose()
            finally:
                with trio.CancelScope(shield=True):
                    await stop(server)  # its shutdown is part of the log that is counted
                    await stop(fake_llm)
        return report(args, soak.tally, probed, elapsed, log_path.read_text(errors="replace"))
    finally:
        if args.keep_log and log_path.exists():
            shutil.copy(log_path, args.keep_log)
        shutil.rmtree(folder, ignore_errors=True)


def niced(niceness: int) -> list[str]:
    """The prefix that starts a command `niceness` steps below this process's priority."""
    return ["nice", "-n", str(niceness)] if niceness else []


def report(
    args: argparse.Namespace, tally: Tally, probed: dict[str, Any], elapsed: float, log: str
) -> int:
    latencies = probed["latencies"]
    errors = [line for line in log.splitlines() if ERROR_LINE.match(line)]
    print(
        f"soak: {args.conversations} conversations x {args.sockets} sockets, "
        f"{args.steps} tool calls each, max_concurrent_runs {args.max_runs or 'default'}"
        + (f", clients at nice {args.client_niceness}" if args.client_niceness else "")
        + f": {elapsed:.1f} s"
    )
    print(
        f"  events: {tally.events:,} in the logs; {tally.sockets_checked} sockets checked, "
        f"{tally.sockets_failed} failed to connect or were cut"
    )
    print(f"  lost: {tally.lost}, duplicated: {tally.duplicated}")
    print(f"  not finished: {len(tally.not_finished)}")
    for reason in sorted(set(tally.not_finished))[:5]:
        print(f"    {reason}")
    print(f"  5xx: {tally.http_5xx}; other HTTP errors: {len(tally.http_other_errors)}")
    print(f"  conversations given up on a client-side error: {len(tally.client_errors)}")
    for error in sorted(set(tally.client_errors))[:3]:
        print(f"    {error}")
    if latencies:
        print(
            f"  /alive ({len(latencies)} probes, {probed['failures']} failed): "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    print(f"  ERROR lines in the server log: {len(errors)}")
    for known in KNOWN_LINES:
        if count := log.count(known):
            print(f"    {known!r}: {count}")
    for line in errors[:5]:
        print(f"    e.g. {line[:200]}")
    clean = not (
        tally.lost
        or tally.duplicated
        or tally.http_5xx
        or errors
        or tally.not_finished
        or tally.client_errors
    )
    return 0 if clean else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--sockets", type=int, default=10, help="per conversation")
    parser.add_argument("--steps", type=int, default=6, help="tool calls per conversation")
    parser.add_argument(
        "--max-runs", type=int, help="the server's max_concurrent_runs (default: its own, 10)"
    )
    parser.add_argument(
        "--client-niceness",
        type=int,
        default=0,
        help="run this process's clients and the scripted LLM this many nice steps below the "
        "server and the probe (they stand for other machines: 10 shows the server's own latency)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds, for it all")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log there")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    arguments = parse_args(sys.argv[1:])
    if arguments.probe:
        run_probe(arguments.probe, 0.05)
    else:
        sys.exit(trio.run(main, arguments))
