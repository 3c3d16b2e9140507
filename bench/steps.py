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
Each conversation is waited for as the SDK's `RemoteConversation.run()` waits: its event
socket (every event of the run is delivered to it) until the state update that says the
run ended, with a status GET every `--poll-interval` s (1.0, the client's) as the fallback.
`--wait poll --poll-interval 0.05` is this bench's earlier figure: GETs alone, 200 a second
at 10 conversations, each of which is in the server's CPU (ours ~0.9 ms, the reference's
~1.3 ms), so the faster a server answers them, the more of them it gets per step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

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


TERMINAL = ("finished", "error", "stuck")


async def measure(
    url: str,
    pid: int,
    work: Path,
    llm_url: str,
    marker: str,
    conversations: int,
    wait: str,
    poll_interval: float,
) -> tuple[float, float]:
    """(elapsed seconds, server CPU seconds) for every conversation to reach `finished`."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        cpu_before = cpu_seconds(pid)
        began = time.perf_counter()
        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                for index in range(conversations):
                    body = create_body(llm_url, work, f"{marker} conversation {index}")
                    answer = await client.post("/api/conversations", json=body)
                    assert answer.status_code in (200, 201), answer.text
                    conversation_id = answer.json()["id"]
                    nursery.start_soon(
                        wait_finished, client, url, conversation_id, wait, poll_interval
                    )
        return time.perf_counter() - began, cpu_seconds(pid) - cpu_before


async def wait_finished(
    client: httpx.AsyncClient, url: str, conversation_id: str, wait: str, poll_interval: float
) -> None:
    """As `RemoteConversation.run()` waits: the socket's state update that says the run
    ended, with a status poll every `poll_interval` s as the fallback (`poll`: that alone)."""
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            while True:
                answer = await client.get(f"/api/conversations/{conversation_id}")
                status = answer.json()["execution_status"]
                if status in TERMINAL:
                    assert status == "finished", answer.text
                    nursery.cancel_scope.cancel()
                    return
                await trio.sleep(poll_interval)

        async def watch_socket() -> None:
            socket_url = url.replace("http", "ws") + f"/sockets/events/{conversation_id}"
            async with open_websocket_url(socket_url, message_queue_size=100_000) as socket:
                while True:
                    status = ended_status(json.loads(await socket.get_message()))
                    if status is not None:
                        assert status == "finished", status
                        nursery.cancel_scope.cancel()
                        return

        nursery.start_soon(poll)
        if wait == "socket":
            nursery.start_soon(watch_socket)


def ended_status(event: dict[str, object]) -> str | None:
    """The status a state update says the run ended with, if it says so: the full state
    (sent when a run ends, and on connecting), or an `execution_status` change."""
    if event.get("kind") != "ConversationStateUpdateEvent":
        return None
    value = event.get("value")
    if event.get("key") == "full_state" and isinstance(value, dict):
        value = value.get("execution_status")
    elif event.get("key") != "execution_status":
        return None
    return value if isinstance(value, str) and value in TERMINAL else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--wait", choices=["socket", "poll"], default="socket")
    parser.add_argument("--poll-interval", type=float, default=1.0)
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
            elapsed, cpu = trio.run(
                measure,
                url,
                pid,
                work,
                llm_url,
                marker,
                args.conversations,
                args.wait,
                args.poll_interval,
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
