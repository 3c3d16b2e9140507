"""Memory benchmark: resident memory per 15 MB message, the size of a page of them, and what
DELETE gives back, measured on a server process over HTTP.

Run: `uv run python bench/memory.py` (about 30 s; prints figures).

How the figures are made: `openhands-server` runs as a separate process on a free loopback
port; this script talks to it with httpx and reads its RSS from /proc/PID/status (VmRSS;
the peak is VmHWM, reset through /proc/PID/clear_refs before the page request). A warm-up
conversation (created, sent one big message, deleted) pays the one-off costs first (the SDK
import, the first conversation, the allocator's first big blocks). Then, CYCLES times: a
conversation gets MESSAGES user messages of 15 MB each (`run: false`: no LLM call, so what
is measured is what the server keeps per message), one `events/search` page is read, and the
conversation is deleted. RSS is read after each step; "after DELETE" is compared with the
RSS before the conversation was created.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

MESSAGE_BYTES = 15 * 1000 * 1000
MESSAGES = 4
CYCLES = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def message(index: int) -> dict[str, object]:
    text = f"message {index} " + "Lorem ipsum dolor sit amet. " * (MESSAGE_BYTES // 28)
    return {"role": "user", "content": [{"type": "text", "text": text}], "run": False}


def conversation_cycle(client: httpx.Client, pid: int, label: str, messages: int) -> None:
    llm = {"model": "openai/none", "base_url": "http://127.0.0.1:9/v1", "api_key": "bench"}
    start = status_mb(pid, "VmRSS")
    created = client.post("/conversations", json={"llm": llm})
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    after_create = status_mb(pid, "VmRSS")
    rss = after_create
    deltas = []
    for index in range(messages):
        answer = client.post(f"/conversations/{conversation_id}/events", json=message(index))
        assert answer.status_code == 200, answer.text
        now = status_mb(pid, "VmRSS")
        deltas.append(now - rss)
        rss = now
    exact = reset_peak(pid)
    before_page = status_mb(pid, "VmRSS")
    began = time.perf_counter()
    page = client.get(f"/conversations/{conversation_id}/events/search", params={"limit": 100})
    page_seconds = time.perf_counter() - began
    assert page.status_code == 200
    items = len(page.json()["items"])
    page_peak = status_mb(pid, "VmHWM") if exact else float("nan")
    deleted = client.delete(f"/conversations/{conversation_id}")
    assert deleted.status_code == 200, deleted.text
    after_delete = status_mb(pid, "VmRSS")
    per_message = ", ".join(f"+{delta:.0f}" for delta in deltas)
    print(f"{label}: RSS {start:.0f} MB before; create +{after_create - start:.0f} MB")
    print(
        f"  {messages} messages of {MESSAGE_BYTES / 1e6:.0f} MB: {per_message} MB each"
        f" (mean {sum(deltas) / len(deltas):.1f} MB); RSS {rss:.0f} MB"
    )
    print(
        f"  first page: {items} items, {len(page.content) / 1e6:.1f} MB in {page_seconds:.2f} s;"
        f" peak RSS during it +{page_peak - before_page:.0f} MB"
    )
    print(
        f"  after DELETE: RSS {after_delete:.0f} MB"
        f" ({after_delete - start:+.0f} MB against before the conversation)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        port = free_port()
        env = {
            **os.environ,
            "OPENHANDS_CONVERSATIONS_DIR": f"{folder}/conversations",
            "OPENHANDS_WORKSPACE_DIR": f"{folder}/project",
            "OH_SECRET_KEY": "bench-secret",
        }
        command = [sys.executable, "-m", "trio_openhands.cli", "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--log-level", "WARNING"],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not become ready in 60 s")
                    time.sleep(0.05)
                print(f"server ready: RSS {status_mb(process.pid, 'VmRSS'):.0f} MB")
                conversation_cycle(client, process.pid, "warm-up", 1)
                for cycle in range(1, CYCLES + 1):
                    conversation_cycle(client, process.pid, f"cycle {cycle}", MESSAGES)
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
