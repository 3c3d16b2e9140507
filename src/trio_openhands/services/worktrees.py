"""A git worktree of its own for a conversation started with `worktree: true` inside a
repository (the web UI asks for one on every create), so that its agent works on a branch
of its own and never in the user's checkout.

Layout: `<conversations dir>/.worktrees/<conversation id hex>/<repository name>`, on a new
branch `openhands/<id hex>` from origin's default branch as the local refs know it (never
fetched: no network), else HEAD. The conversation works in the same place inside it as the
directory it asked for inside the repository. Deleting the conversation removes the
worktree (the branch stays, with whatever was committed on it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import trio

from trio_openhands.services import git
from trio_openhands.services.errors import InvalidInput

WORKTREES_DIR = ".worktrees"
BRANCH_PREFIX = "openhands/"  # the SDK's default worktree branch prefix


async def repository_of(working_dir: Path) -> Path | None:
    """The repository `working_dir` lies in, or None (then `worktree` changes nothing)."""
    if not await trio.Path(working_dir).is_dir():
        return None
    return await git.toplevel(working_dir)


async def create(
    repo: Path, working_dir: Path, conversations_dir: Path, conversation_hex: str
) -> Path:
    """Make the worktree; returns the conversation's working directory inside it."""
    top = conversations_dir / WORKTREES_DIR / conversation_hex / repo.name
    default = await git.origin_default_branch(repo)
    start = f"origin/{default}" if default else "HEAD"
    if await git.rev_parse(repo, f"{start}^{{commit}}") is None:
        raise InvalidInput("The repository has no commit to branch a worktree from")
    await trio.Path(top.parent).mkdir(parents=True, exist_ok=True)
    branch = BRANCH_PREFIX + conversation_hex
    await git.git(["worktree", "add", "-b", branch, str(top), start], repo)
    asked = await trio.Path(working_dir).resolve()
    return top / Path(asked).relative_to(await trio.Path(repo).resolve())


async def remove(repo: Path, top: Path) -> None:
    """Remove a conversation's worktree (`top` as `create` made it) and its folder; the
    repository forgets it (a repository gone meanwhile: only the folder goes)."""
    if await trio.Path(repo).is_dir():
        await git.git(["worktree", "remove", "--force", str(top)], repo, check=False)
        await git.git(["worktree", "prune"], repo, check=False)
    await trio.to_thread.run_sync(shutil.rmtree, top.parent, True)
