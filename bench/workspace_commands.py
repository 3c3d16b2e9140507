"""Workspace command benchmark: how long a client waits for a shell command, ours and the
reference server's side by side.

Run: `uv run python bench/workspace_commands.py` (about a minute; prints figures), or
`... --rounds 100`. Three measures, each through HTTP as a client makes it:
- `execute_bash_command` of `true`: the round trip of one short command (p50, p99 in ms);
- the official Python client's `RemoteWorkspace.execute_command("true")`, which starts the
  command and polls the event search until the exit code is there (p50, p99 in ms);
- `execute_bash_command` of a command that prints `--output-mb` MB: seconds until all of it
  is back, and the server's peak RSS (VmHWM) against idle.
Servers: see bench/_servers.py (the reference is skipped when /tmp/refvenv is missing). Both
share the 2 cores with this client: compare within one run.

Measured here (2 cores shared with three test suites running, load ~8, 30 rounds, 10 MB):
    ours       execute `true` p50 15.8 ms p99  46 ms   execute_command p50 36 ms p99 164 ms
               10 MB of output 0.55 s, peak RSS +41 MiB over idle
    reference  execute `true` p50  8.4 ms p99 575 ms   execute_command p50 21 ms p99 146 ms
               10 MB of output 0.49 s, peak RSS +45 MiB over idle
`execute_command` polls the event search every 100 ms, so its figure mostly says whether the
command had ended by the first poll. Before `start_bash_command` waited for the fork, ours
answered first and forked after, and needed a second poll: p50 126 ms against 39 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import (
    REFERENCE_PYTHON,
    each_server,
    memory_kib,
)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"


def measure(name: str, url: str, pid: int, work: Path, rounds: int, output_mb: int) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch with retries
    from openhands.sdk.workspace import RemoteWorkspace

    with httpx.Client(base_url=url, timeout=300) as client:
        executes: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            answer = client.post("/api/bash/execute_bash_command", json={"command": "true"})
            executes.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            assert answer.json()["exit_code"] == 0, answer.text
        workspace = RemoteWorkspace(host=url, working_dir=str(work))
        polled: list[float] = []
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                result = workspace.execute_command("true")
                polled.append(time.perf_counter() - started)
                assert result.exit_code == 0, result
        finally:
            workspace.reset_client()
        idle = memory_kib(pid, "VmRSS")
        size = output_mb * 1_000_000
        started = time.perf_counter()
        command = f"head -c {size} /dev/zero | tr '\\0' x"
        answer = client.post("/api/bash/execute_bash_command", json={"command": command})
        big = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        got = len(answer.json().get("stdout") or "")
    peak = memory_kib(pid, "VmHWM")
    print(f"{name:<10} execute_bash_command `true`     {percentiles(executes)}")
    print(f"{name:<10} RemoteWorkspace.execute_command {percentiles(polled)}")
    print(
        f"{name:<10} {output_mb} MB of output: {big:5.2f} s, {got / 1e6:.1f} MB answered, "
        f"RSS idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Shell command latency")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--output-mb", type=int, default=10)
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as temporary:
        base = Path(temporary)
        print(f"{options.rounds} rounds each, loopback")
        for name, url, pid, work in each_server(base, options.reference_python):
            measure(name, url, pid, work, options.rounds, options.output_mb)


if __name__ == "__main__":
    main()
