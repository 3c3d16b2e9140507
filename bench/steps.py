"""Agent step benchmark: steps per second and server CPU per step, 10 conversations at once,
each an agent whose scripted LLM answers at once with a terminal `echo` per step; ours and
the reference server's side by side.

Run: `uv run python bench/steps.py` (about a minute; prints figures), or
`... --conversations 10 --steps 20`. For each server: `--conversations` conversations are
created with the terminal tool (the subprocess terminal on both) and a first message that
runs; each agent makes `--steps` tool calls (`echo`), then answers with text and finishes.
Figures: agent steps per second (every conversation's steps over the time from the first
create to the last `finished`), and the server process's CPU time per step (utime + stime
from /proc; the shells' own CPU is not in it). The scripted LLM runs in a thread of this
process (it answers at once); both servers share the 2 cores with it: compare within one
run. Servers: see bench/_servers.py (the reference is skipped when /tmp/refvenv is missing).
The status of every unfinished conversation is polled every `--poll-interval` s (0.05): at
10 conversations that is 200 GETs a second, whose handling is in the server's CPU figure
(ours ~0.9 ms a GET, the reference's ~1.3 ms); `--poll-interval 0.5` leaves most of it out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from _servers import REFERENCE_PYTHON, each_server

from trio_openhands.testing.fake_llm import FakeLLM, text, tool_call


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_body(llm_url: str, work: Path, message: str) -> dict[str, object]:
    return {
        "agent": {
            "kind": "Agent",
            "llm": {"model": "openai/fake", "base_url": llm_url, "api_key": "x"},
            "tools": [{"name": "terminal", "params": {"terminal_type": "subprocess"}}],
        },
        "workspace": {"working_dir": str(work)},
        "initial_message": {
            "role": "user",
            "content": [{"type": "text", "text": message}],
            "run": True,
        },
        "autotitle": False,
    }


def measure(
    url: str,
    pid: int,
    work: Path,
    llm_url: str,
    marker: str,
    conversations: int,
    poll_interval: float,
) -> tuple[float, float]:
    """(elapsed seconds, server CPU seconds) for every conversation to reach `finished`."""
    with httpx.Client(base_url=url, timeout=120) as client:
        cpu_before = cpu_seconds(pid)
        began = time.perf_counter()
        ids = []
        for index in range(conversations):
            body = create_body(llm_url, work, f"{marker} conversation {index}")
            answer = client.post("/api/conversations", json=body)
            assert answer.status_code in (200, 201), answer.text
            ids.append(answer.json()["id"])
        pending = set(ids)
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for conversation_id in list(pending):
                status = client.get(f"/api/conversations/{conversation_id}").json()
                if status["execution_status"] in ("finished", "error", "stuck"):
                    assert status["execution_status"] == "finished", status
                    pending.discard(conversation_id)
            time.sleep(poll_interval)
        assert not pending, f"not finished in time: {pending}"
        return time.perf_counter() - began, cpu_seconds(pid) - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch with retries
    llm = FakeLLM()
    replies = [tool_call("terminal", {"command": f"echo step {n}"}) for n in range(args.steps)]
    marker = llm.script("steps", [*replies, text("done")])
    steps = args.conversations * (args.steps + 1)  # the tool calls and the final answer
    print(
        f"agent steps: {args.conversations} conversations x {args.steps + 1} steps"
        " (terminal echo), scripted LLM answering at once"
    )
    figures: dict[str, tuple[float, float]] = {}
    with (
        llm.serve_in_thread() as llm_url,
        tempfile.TemporaryDirectory(prefix="bench-steps-") as base,
    ):
        for name, url, pid, work in each_server(Path(base), args.reference_python):
            elapsed, cpu = measure(
                url, pid, work, llm_url, marker, args.conversations, args.poll_interval
            )
            figures[name] = (steps / elapsed, cpu / steps * 1000)
            print(
                f"  {name:9} {steps / elapsed:6.1f} steps/s"
                f"  server CPU {cpu / steps * 1000:5.1f} ms/step",
                flush=True,
            )
    if "reference" in figures:
        (ours_rate, ours_cpu), (their_rate, their_cpu) = figures["ours"], figures["reference"]
        print(
            f"  ours/reference: {ours_rate / their_rate:.2f}x the steps/s,"
            f" {ours_cpu / their_cpu:.2f}x the CPU per step"
        )


if __name__ == "__main__":
    main()
