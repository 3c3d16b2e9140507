"""`GET /api/tools/` lists the tools this server can run; the VS Code routes say, as the
reference does without VS Code, that there is none."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import LiveServer

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


async def test_tools_are_the_registered_ones(server: LiveServer) -> None:
    for path in ("/api/tools/", "/api/tools"):
        answer = await server.client.get(path)
        assert answer.status_code == 200
        names = answer.json()
        assert {"terminal", "file_editor", "task_tracker"} <= set(names)
        assert names == sorted(names)


async def test_vscode_is_disabled(server: LiveServer) -> None:
    status = (await server.client.get("/api/vscode/status")).json()
    assert status["running"] is False
    assert status["enabled"] is False
    assert "VS Code" in status["message"]
    url = await server.client.get("/api/vscode/url")
    assert url.status_code == 503
    assert "VS Code" in url.json()["detail"]
    unknown = f"/api/conversations/{uuid.uuid4()}/vscode/status"
    assert (await server.client.get(unknown)).status_code == 404
