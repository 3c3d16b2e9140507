"""Scale-out benchmark: instances of ours sharing one PostgreSQL (`--database-url`).

Run: `uv run python bench/scale_out.py` (a few minutes; needs Debian's postgresql package,
as the store's tests do: `make install-postgres`). It starts a throwaway cluster the way the
tests do (tests/postgres_cluster.py), a scripted LLM in a thread, and prints:
- agent steps/s for `--conversations` concurrent scripted conversations (terminal `echo`
  steps, the LLM answering at once) on 1 instance, then on 2 instances (half created on
  each, so each owns half), same workload, on this 2-core machine;
- socket delivery latency, POST of a message on the owner to its frame on a socket: on the
  owner (the local event log) and on the other instance (through the events table and
  LISTEN/NOTIFY), p50/p99 over `--messages` messages sent one after another;
- takeover: `--takeover` idle conversations owned by one instance, that instance killed
  (SIGKILL), and the seconds until the other holds every lease (its sweeper's work; the lease
  is `--lease` s), read from the database's `leases` table.
Each configuration gets a schema of its own; the instances run with an empty HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _servers import free_port, ours_command, start, stop
from messages import create_conversation
from steps import create_body
from tests.postgres_cluster import _start_cluster  # pyright: ignore[reportPrivateUsage]

from trio_openhands.testing.fake_llm import FakeLLM, text, tool_call


def instances(
    count: int, url: str, base: Path, lease: float
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Start `count` instances over `url`; (base URL, process) each."""
    started = []
    for index in range(count):
        port = free_port()
        folder = base / f"instance-{index}"
        folder.mkdir(parents=True)
        env = {
            "OPENHANDS_DATABASE_URL": url,
            "OH_SECRET_KEY": "scale-out-bench",
            "OPENHANDS_CONVERSATIONS_DIR": str(folder / "conversations"),
            "OPENHANDS_WORKSPACE_DIR": str(base / "project"),
            "OPENHANDS_LEASE_SECONDS": str(lease),
        }
        started.append((f"http://127.0.0.1:{port}", start(ours_command(port), folder, env, port)))
    return started


def steps_per_second(
    urls: list[str], llm_url: str, marker: str, work: Path, total: int, steps: int
) -> float:
    clients = [httpx.Client(base_url=url, timeout=120) for url in urls]
    try:
        began = time.perf_counter()
        owned: list[tuple[httpx.Client, str]] = []
        for index in range(total):
            client = clients[index % len(clients)]
            answer = client.post(
                "/api/conversations", json=create_body(llm_url, work, f"{marker} {index}")
            )
            assert answer.status_code in (200, 201), answer.text
            owned.append((client, answer.json()["id"]))
        pending = set(range(total))
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            for index in list(pending):
                client, conversation_id = owned[index]
                status = client.get(f"/api/conversations/{conversation_id}").json()[
                    "execution_status"
                ]
                if status in ("finished", "error", "stuck"):
                    assert status == "finished", status
                    pending.discard(index)
            time.sleep(0.1)
        assert not pending, f"{len(pending)} conversations not finished in time"
        return total * (steps + 1) / (time.perf_counter() - began)
    finally:
        for client in clients:
            client.close()


def delivery_latency(owner: str, other: str, work: Path, messages: int) -> dict[str, list[float]]:
    from websockets.sync.client import connect

    with httpx.Client(base_url=owner, timeout=60) as client:
        conversation_id = create_conversation(client, work)  # no LLM call, no title
        latencies: dict[str, list[float]] = {"owner": [], "other": []}
        arrived: dict[str, dict[str, float]] = {"owner": {}, "other": {}}
        ready = threading.Barrier(3)

        def follow(name: str, base: str) -> None:
            url = base.replace("http", "ws") + f"/sockets/events/{conversation_id}"
            with connect(url, compression=None) as socket:
                ready.wait()
                while len(arrived[name]) < messages:
                    event = json.loads(socket.recv(timeout=60))
                    if event.get("kind") == "MessageEvent":
                        text_ = event["llm_message"]["content"][0]["text"]
                        arrived[name][text_] = time.perf_counter()

        threads = [
            threading.Thread(target=follow, args=(n, b))
            for n, b in (("owner", owner), ("other", other))
        ]
        for thread in threads:
            thread.start()
        ready.wait()
        for number in range(messages):
            text_ = f"message {number}"
            sent = time.perf_counter()
            answer = client.post(
                f"/api/conversations/{conversation_id}/events",
                json={"role": "user", "content": [{"type": "text", "text": text_}], "run": False},
            )
            assert answer.status_code == 200, answer.text
            while not all(text_ in arrived[name] for name in arrived):
                time.sleep(0.0005)
            for name in arrived:
                latencies[name].append(arrived[name][text_] - sent)
        for thread in threads:
            thread.join()
    return latencies


def takeover_seconds(
    urls: list[str], processes: list[subprocess.Popen[bytes]], db_url: str, work: Path, count: int
) -> float:
    with httpx.Client(base_url=urls[0], timeout=60) as client:
        for _ in range(count):
            create_conversation(client, work)
    with psycopg.connect(db_url, autocommit=True) as db:
        (survivor,) = db.execute(
            "SELECT id FROM instances WHERE address = %s", (urls[1],)
        ).fetchone() or (None,)
        assert survivor is not None, "the second instance is not registered under its URL"
        victim = processes[0]
        victim.kill()
        killed = time.perf_counter()
        while True:
            (held,) = db.execute(
                "SELECT count(*) FROM leases WHERE owner = %s AND expires_at > now()", (survivor,)
            ).fetchone()  # type: ignore[misc]
            if held >= count:
                return time.perf_counter() - killed
            if time.perf_counter() - killed > 120:
                raise AssertionError(f"only {held} of {count} taken over in 120 s")
            time.sleep(0.05)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--takeover", type=int, default=100)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    llm = FakeLLM()
    replies = [tool_call("terminal", {"command": f"echo step {n}"}) for n in range(args.steps)]
    marker = llm.script("steps", [*replies, text("done")])
    cluster_dir = Path(tempfile.mkdtemp(prefix="bench-scale-out-pg-"))
    base = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    (base / "project").mkdir()
    try:
        cluster = _start_cluster(cluster_dir)
    except BaseException as error:  # pytest's Skipped: no PostgreSQL server binaries here
        if type(error).__name__ != "Skipped":
            raise
        print(f"scale-out: skipped ({error})")
        shutil.rmtree(cluster_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
        return
    try:
        with llm.serve_in_thread() as llm_url:
            print(
                f"scale-out: {args.conversations} conversations x {args.steps + 1} steps,"
                " one PostgreSQL"
            )
            for count in (1, 2):
                started = instances(
                    count, cluster.create_schema(), base / f"steps-{count}", args.lease
                )
                try:
                    rate = steps_per_second(
                        [url for url, _ in started],
                        llm_url,
                        marker,
                        base / "project",
                        args.conversations,
                        args.steps,
                    )
                    print(f"  {count} instance(s): {rate:6.1f} agent steps/s", flush=True)
                finally:
                    for _, process in started:
                        stop(process)
            url = cluster.create_schema()
            started = instances(2, url, base / "latency", args.lease)
            try:
                latencies = delivery_latency(
                    started[0][0], started[1][0], base / "project", args.messages
                )
                print(
                    "  socket delivery on the owner (local log):    ",
                    percentiles(latencies["owner"]),
                )
                print(
                    "  socket delivery on the other (through store):",
                    percentiles(latencies["other"]),
                )
                seconds = takeover_seconds(
                    [u for u, _ in started],
                    [p for _, p in started],
                    url,
                    base / "project",
                    args.takeover,
                )
                print(
                    f"  takeover of {args.takeover} conversations after kill -9 of their owner:"
                    f" {seconds:.1f} s (lease {args.lease:g} s)"
                )
            finally:
                for _, process in started:
                    stop(process)
    finally:
        cluster.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
