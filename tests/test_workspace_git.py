"""The git routes of the workspace API, on repositories each test makes with git: through
the official Python `RemoteWorkspace` (`git_changes`, `git_diff`) and plain HTTP."""

from __future__ import annotations

import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from openhands.sdk.git.models import GitChange, GitChangeStatus
from openhands.sdk.workspace import RemoteWorkspace

from tests.conftest import LiveServer, start_server, test_settings
from tests.test_workspace_files import start_api_conversation
from trio_openhands.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from trio_openhands.testing.fake_llm import FakeLLM

# What these tests check never reaches the conversation store: once, not per store.
pytestmark = pytest.mark.store_independent


async def git(cwd: Path, *args: str) -> str:
    result = await trio.run_process(
        ["git", "-c", "user.name=Tess", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_stdout=True,
        capture_stderr=True,
    )
    return result.stdout.decode().strip()


async def make_repo(path: Path, files: dict[str, str], message: str = "first") -> None:
    await trio.Path(path).mkdir(parents=True, exist_ok=True)
    await git(path, "init", "-q", "-b", "main")
    await commit(path, files, message)


async def commit(path: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    await git(path, "add", "-A")
    await git(path, "commit", "-q", "-m", message)
    return await git(path, "rev-parse", "HEAD")


async def get(server: LiveServer, url: str, status: int = 200, **params: Any) -> Any:
    answer = await server.client.get(url, params=params)
    assert answer.status_code == status, (url, params, answer.text)
    return answer.json()


async def test_remote_workspace_git_changes_and_diff(server: LiveServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    await make_repo(repo, {"a.txt": "one\ntwo\n", "b.txt": "bee\n", "dir/c.txt": "sea\n"})
    (repo / "a.txt").write_text("one\nTWO\n")
    (repo / "b.txt").unlink()
    (repo / "with space.txt").write_text("new\n")
    workspace = RemoteWorkspace(host=server.url, working_dir=str(repo))

    changes = await trio.to_thread.run_sync(workspace.git_changes, ".")
    assert changes == [
        GitChange(status=GitChangeStatus.UPDATED, path="a.txt"),  # pyright: ignore[reportArgumentType]
        GitChange(status=GitChangeStatus.DELETED, path="b.txt"),  # pyright: ignore[reportArgumentType]
        GitChange(status=GitChangeStatus.ADDED, path="with space.txt"),  # pyright: ignore[reportArgumentType]
    ]
    diff = await trio.to_thread.run_sync(workspace.git_diff, "a.txt")
    assert (diff.original, diff.modified) == ("one\ntwo", "one\nTWO")
    deleted = await trio.to_thread.run_sync(workspace.git_diff, "b.txt")
    assert (deleted.original, deleted.modified) == ("bee", "")
    added = await trio.to_thread.run_sync(workspace.git_diff, repo / "with space.txt")
    assert (added.original, added.modified) == ("", "new")
    # A subdirectory: its changes only, relative to it.
    (repo / "dir" / "c.txt").write_text("SEA\n")
    inner = await trio.to_thread.run_sync(workspace.git_changes, "dir")
    assert [(c.status, str(c.path)) for c in inner] == [(GitChangeStatus.UPDATED, "c.txt")]

    outside = RemoteWorkspace(host=server.url, working_dir=str(tmp_path / "plain"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(httpx.HTTPStatusError, match="400"):
        await trio.to_thread.run_sync(outside.git_changes, ".")


async def test_the_base_is_the_fork_point_from_origin(server: LiveServer, tmp_path: Path) -> None:
    """Committed work on a branch shows against where it left origin's default branch,
    without contacting the remote."""
    origin = tmp_path / "origin"
    await make_repo(origin, {"base.txt": "base\n"})
    clone = tmp_path / "clone"
    await git(tmp_path, "clone", "-q", str(origin), str(clone))
    await git(clone, "checkout", "-q", "-b", "feature")
    await commit(clone, {"feature.txt": "f\n"}, "feature work")
    await commit(origin, {"later.txt": "l\n"}, "landed later on main")  # not fetched
    changes = await get(server, "/api/git/changes", path=str(clone))
    assert changes == [{"status": "ADDED", "path": "feature.txt"}]
    status_style = await get(server, "/api/git/changes", path=str(clone), ref="HEAD")
    assert status_style == []
    await get(server, "/api/git/changes", 400, path=str(clone), ref="no-such-branch")
    refused = await get(server, "/api/git/changes", 422, path=str(clone), ref="--output=/tmp/x")
    assert refused["detail"][0]["loc"] == ["query", "ref"]


async def test_changes_of_repositories_below_a_plain_directory(
    server: LiveServer, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    await make_repo(base / "one", {"x.txt": "x\n"})
    await make_repo(base / "two", {"y.txt": "y\n"})
    (base / "one" / "x.txt").write_text("changed\n")
    (base / "two" / "z.txt").write_text("new\n")
    changes = await get(server, "/api/git/changes", path=str(base))
    assert changes == [
        {"status": "UPDATED", "path": "one/x.txt"},
        {"status": "ADDED", "path": "two/z.txt"},
    ]
    fresh = tmp_path / "fresh"  # no commit yet: everything is an addition, no history
    fresh.mkdir()
    await git(fresh, "init", "-q")
    (fresh / "n.txt").write_text("n\n")
    assert await get(server, "/api/git/changes", path=str(fresh)) == [
        {"status": "ADDED", "path": "n.txt"}
    ]
    assert await get(server, "/api/git/commits", path=str(fresh)) == {
        "commits": [],
        "has_more": False,
    }
    plain = tmp_path / "plain"
    plain.mkdir()
    for url in ("/api/git/changes", "/api/git/commits"):
        answer = await get(server, url, 400, path=str(plain))
        assert answer == {"detail": f"Not a git repository: {plain}"}
        await get(server, url, 404, path=str(tmp_path / "missing"))
        await get(server, url, 422)
    await get(server, "/api/git/diff", 400, path=str(plain))  # a directory
    (plain / "f.txt").write_text("f")
    await get(server, "/api/git/diff", 400, path=str(plain / "f.txt"))
    await get(server, "/api/git/diff", 404, path=str(plain / "missing.txt"))


async def test_commits_and_what_one_commit_changed(server: LiveServer, tmp_path: Path) -> None:
    repo = tmp_path / "history"
    await make_repo(repo, {"a.txt": "a\n", "b.txt": "b\n"}, "root commit")
    second = await commit(repo, {"a.txt": "A\n"}, "edit a")
    await git(repo, "mv", "b.txt", "renamed.txt")
    third = await commit(repo, {}, "rename b")

    page = await get(server, "/api/git/commits", path=str(repo), limit=2)
    assert [c["subject"] for c in page["commits"]] == ["rename b", "edit a"]
    assert page["has_more"] is True
    newest = page["commits"][0]
    assert newest["sha"] == third
    assert third.startswith(newest["short_sha"])
    assert newest["author"] == "Tess"
    assert "T" in newest["timestamp"]
    everything = await get(server, "/api/git/commits", path=str(repo))
    assert len(everything["commits"]) == 3
    assert everything["has_more"] is False
    await get(server, "/api/git/commits", 422, path=str(repo), limit=0)

    root = everything["commits"][-1]["sha"]
    changes = "/api/git/commits/{}/changes"
    assert await get(server, changes.format(root[:7]), path=str(repo)) == [
        {"status": "ADDED", "path": "a.txt"},
        {"status": "ADDED", "path": "b.txt"},
    ]
    assert await get(server, changes.format(third), path=str(repo)) == [
        {"status": "DELETED", "path": "b.txt"},
        {"status": "ADDED", "path": "renamed.txt"},
    ]
    await get(server, changes.format("abcdef12"), 400, path=str(repo))
    bad = await get(server, changes.format("HEAD"), 422, path=str(repo))
    assert bad["detail"][0]["loc"] == ["path", "sha"]

    one = await get(server, "/api/git/diff", path=str(repo / "a.txt"), commit=second)
    assert one == {"original": "a", "modified": "A"}
    gone = await get(server, "/api/git/diff", path=str(repo / "b.txt"), commit=third)
    assert gone == {"original": "b", "modified": ""}  # read from git: deleted files render
    await get(server, "/api/git/diff", 400, path=str(repo / "a.txt"), commit=second, ref="HEAD")
    await get(server, "/api/git/diff", 422, path=str(repo / "a.txt"), commit="zz")


async def test_scoped_git_routes_use_the_conversation_working_directory(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = tmp_path / "scoped"
    await make_repo(repo, {"a.txt": "a\n"})
    (repo / "a.txt").write_text("b\n")
    conversation_id = await start_api_conversation(server, fake_llm, repo)
    scoped = f"/api/conversations/{conversation_id}/git"
    assert await get(server, f"{scoped}/changes") == [{"status": "UPDATED", "path": "a.txt"}]
    assert await get(server, f"{scoped}/diff", path="a.txt") == {"original": "a", "modified": "b"}
    commits = await get(server, f"{scoped}/commits")
    assert [c["subject"] for c in commits["commits"]] == ["first"]
    sha = commits["commits"][0]["sha"]
    assert await get(server, f"{scoped}/commits/{sha}/changes") == [
        {"status": "ADDED", "path": "a.txt"}
    ]
    outside = await get(server, f"{scoped}/changes", 422, path=str(tmp_path))
    assert outside["detail"][0]["loc"] == ["query", "path"]
    await get(server, f"/api/conversations/{uuid.uuid4()}/git/changes", 404)

    workspace = RemoteWorkspace(
        host=server.url, working_dir=str(repo), runtime_conversation_id=uuid.UUID(conversation_id)
    )
    changes = await trio.to_thread.run_sync(partial(workspace.git_changes, "."))
    assert [str(c.path) for c in changes] == ["a.txt"]


async def test_a_conversation_outside_any_repository_gets_one(
    server: LiveServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """As in the reference: a working directory in no repository gets a `git init` when
    its conversation is created, so that what the agent makes there shows in the changes
    (a web UI's Changes tab); one inside a repository is left as it is."""
    plain = tmp_path / "plain" / "not-yet-there"
    repo = tmp_path / "repo"
    await make_repo(repo, {"a.txt": "a\n"})
    (repo / "sub").mkdir()
    await start_api_conversation(server, fake_llm, plain)
    await start_api_conversation(server, fake_llm, repo / "sub")
    assert (plain / ".git").is_dir()
    assert not (repo / "sub" / ".git").exists()
    (plain / "made.txt").write_text("by the agent\n")
    changes = await get(server, "/api/git/changes", path=str(plain))
    assert changes == [{"status": "ADDED", "path": "made.txt"}]


async def test_no_repository_is_made_when_the_setting_is_off(
    nursery: trio.Nursery, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path, git_init_working_dirs=False)
    assert not Settings.from_env({"OPENHANDS_GIT_INIT_WORKING_DIRS": "0"}).git_init_working_dirs
    server = await start_server(nursery, settings)
    try:
        plain = tmp_path / "plain"
        plain.mkdir()
        await start_api_conversation(server, fake_llm, plain)
        assert list(plain.iterdir()) == []
        await get(server, "/api/git/changes", 400, path=str(plain))
    finally:
        await server.aclose()
