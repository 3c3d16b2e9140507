"""Message ingest benchmark: user messages POSTed per second into one conversation by 8
concurrent posters while sockets watch it, ours and the reference server's side by side.

Run: `uv run python bench/messages.py` (about a minute; prints figures), or
`... --messages 800 --sockets 10 49`. For each server and each socket count:
- one conversation is created (no agent run, no auto-title: what is measured is the path
  of a message, not an LLM), then the sockets connect to `/sockets/events/{id}`;
- 8 posters send `--messages` messages in all (`POST /api/conversations/{id}/events`,
  `run: false`), each waiting for its answer before the next, as a client does;
- figures: acknowledged messages per second (first POST to last answer), the p50/p99 of a
  POST's answer time, the server's CPU time per message (utime + stime from /proc), and the
  time until every socket has delivered every message (`delivered after`: the fan-out).
  Every socket must deliver every acknowledged message exactly once, or the run fails.
The sockets are clients in a separate process (`--sockets-mode`), so parsing their frames
does not compete with the posters in this one; both servers share the 2 cores with them:
compare within one run. Servers: see bench/_servers.py (the reference is skipped when
/tmp/refvenv is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import REFERENCE_PYTHON, each_server

POSTERS = 8


# -- the sockets process ---------------------------------------------------------------


async def watch(url: str, sockets: int, expected: int, give_up_after: float) -> None:
    """Connect `sockets` sockets, say `ready`, then count the MessageEvents each delivers
    until all have `expected` (or `give_up_after` s); print per-socket counts and duplicates."""
    from trio_websocket import open_websocket_url

    counts = [0] * sockets
    duplicates = [0] * sockets
    connected = trio.Event()
    remaining = [sockets]
    done_at: list[float] = []

    async def one(index: int) -> None:
        seen: set[str] = set()
        async with open_websocket_url(url, message_queue_size=100_000) as socket:
            remaining[0] -= 1
            if remaining[0] == 0:
                connected.set()
            while counts[index] < expected:
                event = json.loads(await socket.get_message())
                if event.get("kind") != "MessageEvent":
                    continue
                if event["id"] in seen:
                    duplicates[index] += 1
                seen.add(event["id"])
                counts[index] = len(seen)
        done_at.append(time.time())

    with trio.move_on_after(give_up_after):
        async with trio.open_nursery() as nursery:
            for index in range(sockets):
                nursery.start_soon(one, index)
            await connected.wait()
            print("ready", flush=True)
    print(json.dumps({"counts": counts, "duplicates": duplicates, "last": max(done_at or [0])}))


# -- the posters -------------------------------------------------------------------------


def create_conversation(client: httpx.Client, work: Path) -> str:
    body = {
        "agent": {
            "kind": "Agent",
            "llm": {"model": "openai/none", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"},
            "tools": [],
        },
        "workspace": {"working_dir": str(work)},
        "autotitle": False,
    }
    answer = client.post("/api/conversations", json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(url: str, conversation_id: str, messages: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    path = f"/api/conversations/{conversation_id}/events"
    limits = httpx.Limits(max_connections=POSTERS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def poster(index: int) -> None:
            for number in range(index, messages, POSTERS):
                body = {
                    "role": "user",
                    "content": [{"type": "text", "text": f"message {number}"}],
                    "run": False,
                }
                began = time.perf_counter()
                answer = await client.post(path, json=body)
                latencies.append(time.perf_counter() - began)
                assert answer.status_code == 200, answer.text

        began = time.time()
        async with trio.open_nursery() as nursery:
            for index in range(POSTERS):
                nursery.start_soon(poster, index)
    return latencies, began


def measure(url: str, pid: int, work: Path, sockets: int, messages: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=60) as client:
        conversation_id = create_conversation(client, work)
    socket_url = url.replace("http", "ws") + f"/sockets/events/{conversation_id}"
    watcher = subprocess.Popen(
        [sys.executable, __file__, "--sockets-mode", socket_url, str(sockets), str(messages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    assert watcher.stdout.readline().strip() == "ready"
    cpu_before = cpu_seconds(pid)
    latencies, began = trio.run(post_all, url, conversation_id, messages)
    acked = time.time()
    cpu = cpu_seconds(pid) - cpu_before
    result = json.loads(watcher.stdout.readline())
    watcher.wait()
    assert result["counts"] == [messages] * sockets, f"sockets missed messages: {result}"
    assert not any(result["duplicates"]), f"duplicated messages: {result}"
    ordered = sorted(latencies)
    return {
        "rate": messages / (acked - began),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "cpu_ms": cpu / messages * 1000,
        "delivered": result["last"] - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--sockets", type=int, nargs="+", default=[10, 49])
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    parser.add_argument("--sockets-mode", nargs=3, metavar=("URL", "SOCKETS", "EXPECTED"))
    args = parser.parse_args()
    if args.sockets_mode:
        url, sockets, expected = args.sockets_mode
        trio.run(watch, url, int(sockets), int(expected), 120.0)
        return
    print(f"message ingest: {args.messages} messages from {POSTERS} posters into one conversation")
    figures: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as base:
        for name, url, pid, work in each_server(Path(base), args.reference_python):
            for sockets in args.sockets:
                figure = measure(url, pid, work, sockets, args.messages)
                figures[name, sockets] = figure
                print(
                    f"  {name:9} {sockets:2} sockets: {figure['rate']:6.0f} messages/s"
                    f"  POST p50 {figure['p50'] * 1000:5.1f} ms p99 {figure['p99'] * 1000:6.1f} ms"
                    f"  server CPU {figure['cpu_ms']:5.2f} ms/message"
                    f"  delivered after {figure['delivered']:5.2f} s",
                    flush=True,
                )
    for sockets in args.sockets:
        if ("reference", sockets) in figures:
            ours, theirs = figures["ours", sockets], figures["reference", sockets]
            print(
                f"  ours/reference at {sockets} sockets: {ours['rate'] / theirs['rate']:.2f}x the"
                f" rate, {ours['cpu_ms'] / theirs['cpu_ms']:.2f}x the CPU per message"
            )


if __name__ == "__main__":
    main()
