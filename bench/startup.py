"""Start-up benchmark: seconds from process start to the first 200 on `/alive` (median of 5),
and resident memory at idle (right after `/alive`, and once `/ready` says the SDK is loaded).

Run: `uv run python bench/startup.py` (or `make bench`). The reference server takes 11.4 s
to `/alive` and idles at 345 MB on this kind of machine (shared/notes/reference-server.md).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

RUNS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def one_start(folder: str) -> tuple[float, float, float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OPENHANDS_CONVERSATIONS_DIR": f"{folder}/conversations"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_openhands.cli", "--port", str(port), "--log-level", "WARNING"],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while get(f"{base}/alive") != 200:
            time.sleep(0.005)
        to_alive = time.perf_counter() - started
        rss_alive = rss_mb(process.pid)
        while get(f"{base}/ready") != 200:
            time.sleep(0.05)
        to_ready = time.perf_counter() - started
        time.sleep(0.5)
        rss_ready = rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return to_alive, to_ready, rss_alive, rss_ready


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(RUNS):
            results.append(one_start(folder))
    alive, ready, rss_alive, rss_ready = (
        statistics.median(column) for column in zip(*results, strict=True)
    )
    print(
        f"start-up to first 200 on /alive: median {alive:.2f} s over {RUNS} starts "
        f"(min {min(r[0] for r in results):.2f}, max {max(r[0] for r in results):.2f})"
    )
    print(f"start-up to /ready (SDK imported): median {ready:.2f} s")
    print(
        f"idle RSS right after /alive: {rss_alive:.0f} MB; "
        f"idle RSS with the SDK loaded: {rss_ready:.0f} MB"
    )


if __name__ == "__main__":
    main()
