"""The saved workspaces routes over HTTP: the reference's shapes, idempotent adds, 404 for an
unknown path, concurrent adds all kept, a restart keeps them, a corrupt file is left alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from tests.conftest import start_server, test_settings

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LiveServer

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


def item(path: str, **extra: str) -> dict[str, str]:
    return {"id": path, "name": path.rsplit("/", 1)[-1], "path": path, **extra}


async def test_workspaces_and_parents(server: LiveServer) -> None:
    client = server.client
    assert (await client.get("/api/workspaces")).json() == {
        "workspaces": [],
        "workspaceParents": [],
    }
    one = item("/srv/a", parentPath="/srv")
    added = await client.post("/api/workspaces", json={"workspaces": [one, item("/srv/a")]})
    assert added.status_code == 200, added.text
    assert added.json() == {"workspaces": [one], "workspaceParents": []}  # deduped by path
    two = {"id": "/b", "name": "b", "path": "/b", "parent_path": None}  # snake_case taken too
    listed = (await client.post("/api/workspaces", json={"workspaces": [two, one]})).json()
    assert listed["workspaces"] == [one, item("/b")]  # no null parentPath in answers
    parents = await client.post("/api/workspaces/parents", json={"parents": [item("/srv")]})
    assert parents.json()["workspaceParents"] == [item("/srv")]

    removed = await client.delete("/api/workspaces", params={"path": "/srv/a"})
    assert removed.json() == {"deleted": True}
    again = await client.delete("/api/workspaces", params={"path": "/srv/a"})
    assert again.status_code == 404
    assert again.json() == {"detail": "Workspace not found"}
    assert (await client.delete("/api/workspaces/parents", params={"path": "/srv"})).json() == {
        "deleted": True
    }
    gone = await client.delete("/api/workspaces/parents", params={"path": "/srv"})
    assert gone.json() == {"detail": "Workspace parent not found"}
    assert (await client.get("/api/workspaces")).json() == {
        "workspaces": [item("/b")],
        "workspaceParents": [],
    }


async def test_bad_workspace_requests_name_the_field(server: LiveServer) -> None:
    async def loc(method: str, url: str, **kw: object) -> list[object]:
        answer = await server.client.request(method, url, **kw)  # type: ignore[arg-type]
        assert answer.status_code == 422, answer.text
        return answer.json()["detail"][0]["loc"]

    no_name = {"workspaces": [{"id": "/x", "path": "/x"}]}
    assert await loc("POST", "/api/workspaces", json=no_name) == ["body", "workspaces", 0, "name"]
    empty = {"parents": [{"id": "/x", "name": "", "path": "/x"}]}
    assert await loc("POST", "/api/workspaces/parents", json=empty) == [
        "body",
        "parents",
        0,
        "name",
    ]
    assert await loc("DELETE", "/api/workspaces") == ["query", "path"]


async def test_concurrent_adds_are_all_kept_and_survive_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path)
    live = await start_server(nursery, settings)
    try:

        async def add(n: int) -> None:
            body = {"workspaces": [item(f"/w/{n}")]}
            assert (await live.client.post("/api/workspaces", json=body)).status_code == 200

        async with trio.open_nursery() as adders:
            for n in range(20):
                adders.start_soon(add, n)
    finally:
        await live.aclose()
    again = await start_server(nursery, settings)
    try:
        saved = (await again.client.get("/api/workspaces")).json()["workspaces"]
        assert sorted(w["path"] for w in saved) == sorted(f"/w/{n}" for n in range(20))
        store = settings.conversations_dir / "workspaces.json"
        store.write_text("{not json")
        for answer in (
            await again.client.get("/api/workspaces"),
            await again.client.post("/api/workspaces", json={"workspaces": [item("/z")]}),
        ):
            assert answer.status_code == 409
            assert answer.json() == {"detail": "Workspaces file is corrupted"}
        assert store.read_text() == "{not json"  # left for the user to mend
    finally:
        await again.aclose()
