"""Conversation benchmark: pause latency with an LLM call in flight (median of 10), create
latency, resident memory per idle conversation, and restore time for 100 conversations of
200 events each.

Run: `uv run python bench/conversations.py`. Everything is in one process: the server on a
free loopback port, the scripted LLM beside it (reached through litellm), httpx as client.
The 100 x 200 restore set is made by running one real conversation to 200+ events (think
tool calls) and copying its folder under 99 new ids, then restarting the server on it.
Reference figures (shared/notes/reference-server.md): pause 26 ms but GET still said
`running` 1 s later; create median 37 ms; +3 MB for 20 idle conversations.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import start_server, test_settings, wait_status

from trio_openhands.stores import event_pack
from trio_openhands.testing.fake_llm import FakeLLM, ToolCall, text, tool_calls


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def llm(base_url: str) -> dict[str, object]:
    return {
        "model": "openai/fake",
        "base_url": base_url,
        "api_key": "bench",
        "num_retries": 0,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-conversations-"))
    try:
        async with trio.open_nursery() as nursery:
            fake = FakeLLM()
            base_url = await nursery.start(fake.serve)
            settings = test_settings(folder)
            server = await start_server(nursery, settings)
            client = server.client

            # Pause latency with the LLM holding its reply.
            tag = fake.script("hold", [text("late", delay=30)])
            pause_times, settle_times = [], []
            for _ in range(10):
                body = {
                    "llm": llm(base_url),
                    "initial_message": {
                        "role": "user",
                        "content": [{"type": "text", "text": f"hold {tag}"}],
                    },
                }
                created = (await client.post("/conversations", json=body)).json()
                record = await fake.wait_for_request(predicate=lambda r: r.outcome == "pending")
                started = time.perf_counter()
                response = await client.post(f"/conversations/{created['id']}/pause")
                pause_times.append(time.perf_counter() - started)
                assert response.json()["status"] == "paused"
                status = (await client.get(f"/conversations/{created['id']}")).json()["status"]
                assert status == "paused", status
                await record.wait_done()
                settle_times.append(time.perf_counter() - started)
            print(
                f"pause with an LLM call in flight: median {ms(statistics.median(pause_times))} "
                f"(max {ms(max(pause_times))}); GET says paused right after; LLM request aborted "
                f"after median {ms(statistics.median(settle_times))}"
            )

            # Create latency and memory per idle conversation.
            create_times = []
            before = rss_mb()
            for _ in range(100):
                started = time.perf_counter()
                response = await client.post("/conversations", json={"llm": llm(base_url)})
                create_times.append(time.perf_counter() - started)
                assert response.status_code == 201
            after = rss_mb()
            print(
                f"create: median {ms(statistics.median(create_times))}, p90 "
                f"{ms(sorted(create_times)[89])} over 100"
            )
            print(
                f"RSS per idle conversation: {(after - before) * 1024 / 100:.0f} KB "
                f"({before:.0f} MB -> {after:.0f} MB for 100)"
            )

            # A conversation with 200+ events, copied to make 100.
            # Distinct thoughts: identical repeated actions would trip the SDK's stuck detector.
            fake.script(
                "long",
                [tool_calls(ToolCall("think", {"thought": f"step {i}"})) for i in range(100)]
                + [text("long done")],
            )
            body = {
                "llm": llm(base_url),
                "initial_message": {
                    "role": "user",
                    "content": [{"type": "text", "text": "[[fake:long]]"}],
                },
            }
            source = (await client.post("/conversations", json=body)).json()
            await wait_status(server, source["id"], "finished", "error", "stuck")
            await server.aclose()
            nursery.cancel_scope.cancel()

        events_dir = settings.conversations_dir / uuid.UUID(source["id"]).hex / "events"
        events_per = len(list(events_dir.glob("*.json"))) + sum(
            1 for _ in event_pack.records(str(events_dir / event_pack.PACK_NAME))
        )
        restore_dir = folder / "restore"
        restore_dir.mkdir()
        shutil.copy(settings.conversations_dir / ".secret_key", restore_dir) if (
            settings.conversations_dir / ".secret_key"
        ).exists() else None
        source_dir = settings.conversations_dir / uuid.UUID(source["id"]).hex
        for _ in range(100):
            new_id = uuid.uuid4()
            target = restore_dir / new_id.hex
            shutil.copytree(source_dir, target)
            for name in ("meta.json", "base_state.json"):
                data = json.loads((target / name).read_text())
                data["id"] = (
                    str(new_id)
                    if name == "meta.json"
                    else data["id"].replace(source["id"], str(new_id))
                )
                (target / name).write_text(json.dumps(data))

        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            server = await start_server(
                nursery, settings.with_changes(conversations_dir=restore_dir)
            )
            to_serving = time.perf_counter() - started
            client = server.client
            listing = (await client.get("/conversations/search")).json()["items"]
            started = time.perf_counter()
            total = 0
            for item in listing:
                page = (
                    await client.get(
                        f"/conversations/{item['id']}/events/search", params={"limit": 1}
                    )
                ).json()
                total += len(page["items"])
            loading = time.perf_counter() - started
            print(
                f"restore 100 conversations x {events_per} events: serving after {ms(to_serving)} "
                f"(catalog only); loading all 100 on first use took {loading:.2f} s "
                f"({ms(loading / 100)} each); RSS {rss_mb():.0f} MB"
            )
            await server.aclose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    trio.run(main)
