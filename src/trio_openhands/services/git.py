"""Git state for the git routes: changed files, a file's two sides, recent commits.

The answers have the shapes of the SDK's `openhands.sdk.git` models (`GitChange`,
`GitDiff`, `GitCommitsPage`) and follow its choice of base when no `ref` is given (the
branch's upstream, the fork point from origin's default branch, a local main/master this
branch forked from, else HEAD), but git runs as a child process through `trio.run_process`
under a timeout, so that a slow repository never blocks the Trio thread, and it never
contacts a remote (origin's default branch is read from `refs/remotes/origin/HEAD`, else
`origin/main` or `origin/master`). Paths are read NUL-separated, so names with spaces or
newlines come back whole. Where the SDK answers "no changes" for a path outside any
repository, this says so: a 400 (404 if the path does not exist).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import trio

from trio_openhands.services.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
    Unavailable,
    os_error,
)

GIT_TIMEOUT = 30.0  # seconds any one git command may take
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MAX_DIFF_FILE_BYTES = 1024 * 1024  # either side of a diff, at most (the SDK's cap)
SHA = re.compile(r"[0-9a-fA-F]{4,64}")
# No hook, filter or external program a repository's config names runs for a read.
SAFE_CONFIG = ("-c", "core.fsmonitor=false", "-c", "core.quotepath=off")
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
_LOG_FORMAT = "%H%x1f%h%x1f%an%x1f%aI%x1f%s"

log = logging.getLogger(__name__)


class NotARepository(BadRequest):
    pass


async def git(
    args: list[str],
    cwd: Path,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    stdout: Any = None,
    seconds: float = GIT_TIMEOUT,
) -> tuple[int, str]:
    """Run `git ARGS` in `cwd`: (exit status, stdout as text); a BadRequest quoting git's
    first line of complaint when `check` and it fails. `stdout` may be an open file."""
    if shutil.which("git") is None:
        raise Unavailable("git is not installed on the server")
    command = ["git", "--no-pager", *SAFE_CONFIG, *args]
    output: dict[str, Any] = {"capture_stdout": True} if stdout is None else {"stdout": stdout}
    try:
        with trio.fail_after(seconds):
            result = await trio.run_process(
                command,
                cwd=cwd,
                stdin=b"",
                capture_stderr=True,
                check=False,
                env={**os.environ, **_ENV, **(env or {})},
                **output,
            )
    except trio.TooSlowError:
        raise Unavailable(f"git {args[0]} took longer than {seconds:g} s") from None
    except OSError as error:  # cwd vanished meanwhile
        raise os_error(error, f"Cannot run git in {cwd}") from None
    if check and result.returncode != 0:
        complaint = result.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = complaint[0][:300] if complaint else f"exit status {result.returncode}"
        raise BadRequest(f"git {args[0]} failed: {reason}")
    return result.returncode, (result.stdout or b"").decode("utf-8", "replace")


def check_ref_text(ref: str, field: str = "ref") -> str:
    """A ref is never an option nor empty: git would read `-x` as one."""
    if not ref or ref.startswith("-") or "\x00" in ref or len(ref) > 1024:
        raise InvalidInput(
            f"{field} must be a git ref or commit (not empty, no leading '-')", field=field
        )
    return ref


async def rev_parse(cwd: Path, spec: str) -> str | None:
    status, out = await git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", spec], cwd, check=False
    )
    return out.strip() or None if status == 0 else None


async def _is_directory(path: Path) -> bool:
    def check() -> bool:
        try:
            return stat.S_ISDIR(path.stat().st_mode)
        except FileNotFoundError:
            raise NotFound(f"Path not found: {path}", field="path") from None
        except OSError as error:
            raise os_error(error, f"Cannot read {path}") from None

    return await trio.to_thread.run_sync(check)


async def require_repository(directory: Path) -> None:
    """`directory` exists and lies in a work tree: 404 or a 400 saying which is not so."""
    if not await _is_directory(directory):
        raise BadRequest(f"Path is not a directory: {directory}", field="path")
    status, _ = await git(["rev-parse", "--is-inside-work-tree"], directory, check=False)
    if status != 0:
        raise NotARepository(f"Not a git repository: {directory}", field="path")


async def init_outside_repositories(directory: Path) -> None:
    """`git init` in `directory` (made if missing) unless it lies in a repository already,
    as the reference does for a conversation's working directory: so that the changes the
    agent makes there are listed (`changes`). A failure (no git, a directory it cannot
    make) is logged and changes nothing else: a conversation never fails for it."""
    try:
        await trio.Path(directory).mkdir(parents=True, exist_ok=True)
        status, _ = await git(["rev-parse", "--git-dir"], directory, check=False)
        if status == 0:
            return
        await git(["init", "--quiet"], directory)
    except (OSError, BadRequest, Unavailable) as error:
        log.warning("no git repository made in %s: %s", directory, error)
        return
    log.info("made a git repository in %s (it lay in none)", directory)


async def toplevel(directory: Path) -> Path | None:
    status, out = await git(["rev-parse", "--show-toplevel"], directory, check=False)
    return Path(out.strip()) if status == 0 and out.strip() else None


# -- the base a diff is taken against ------------------------------------------------------


async def base_ref(repo: Path, override: str | None) -> str:
    """`override` as a commit (an unborn HEAD is the empty tree), else the display base."""
    if override is not None:
        check_ref_text(override)
        if (sha := await rev_parse(repo, f"{override}^{{commit}}")) is not None:
            return sha
        if override == "HEAD":
            return EMPTY_TREE
        raise BadRequest(f"ref {override!r} names no commit of the repository", field="ref")
    _, any_commit = await git(["rev-list", "-n", "1", "--all"], repo, check=False)
    if not any_commit.strip():
        return EMPTY_TREE
    head = await rev_parse(repo, "HEAD")
    _, branch_out = await git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
    branch = branch_out.strip() or None
    upstream = await rev_parse(repo, f"refs/remotes/origin/{branch}") if branch else None
    # A fully pushed, clean branch compared with its own upstream would show nothing.
    if upstream is not None and (upstream != head or await _has_tracked_changes(repo)):
        return upstream
    default = await origin_default_branch(repo)
    if default is not None:
        if fork_point := await _merge_base(repo, "HEAD", f"refs/remotes/origin/{default}"):
            return fork_point
        if tip := await rev_parse(repo, f"refs/remotes/origin/{default}"):
            return tip
    else:
        for local in ("main", "master"):
            if (sha := await rev_parse(repo, f"refs/heads/{local}")) is not None:
                if local != branch and await _merge_base(repo, "HEAD", sha) == sha:
                    return sha
                break
    return head or EMPTY_TREE


async def origin_default_branch(repo: Path) -> str | None:
    """origin's default branch from local refs only (never the network)."""
    status, out = await git(
        ["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"], repo, check=False
    )
    if status == 0 and out.strip().startswith("origin/"):
        return out.strip().removeprefix("origin/") or None
    for name in ("main", "master"):
        if await rev_parse(repo, f"refs/remotes/origin/{name}"):
            return name
    return None


async def _merge_base(repo: Path, a: str, b: str) -> str | None:
    status, out = await git(["merge-base", a, b], repo, check=False)
    return out.strip() or None if status == 0 else None


async def _has_tracked_changes(repo: Path) -> bool:
    status, out = await git(["status", "--porcelain", "--untracked-files=no"], repo, check=False)
    return status != 0 or bool(out.strip())


# -- changes -------------------------------------------------------------------------------


def parse_name_status(output: str) -> list[dict[str, str]]:
    """`git diff --name-status -z` as GitChanges: a rename is its old path DELETED and its
    new one ADDED, a copy its new path ADDED, a type change or conflict UPDATED."""
    fields = output.split("\0")
    changes: list[dict[str, str]] = []
    index = 0
    while index < len(fields) and fields[index]:
        code = fields[index][0]
        if code in "RC":
            old, new = fields[index + 1], fields[index + 2]
            index += 3
            if code == "R":
                changes.append({"status": "DELETED", "path": old})
            changes.append({"status": "ADDED", "path": new})
            continue
        path = fields[index + 1]
        index += 2
        status = {"A": "ADDED", "D": "DELETED"}.get(code, "UPDATED")
        changes.append({"status": status, "path": path})
    return changes


async def _changes_in(directory: Path, ref: str | None) -> list[dict[str, str]]:
    await require_repository(directory)
    base = await base_ref(directory, ref)
    args = ["diff", "--name-status", "-z", "--relative", "--no-ext-diff", base, "--"]
    _, listed = await git(args, directory)
    changes = parse_name_status(listed)
    _, untracked = await git(["ls-files", "-z", "--others", "--exclude-standard"], directory)
    changes += [{"status": "ADDED", "path": path} for path in untracked.split("\0") if path]
    return changes


def _nested_repositories(directory: Path) -> list[str]:
    """Blocking: names of the (non-hidden) directories right under `directory` that hold
    a `.git` of their own, as a repository-backed conversation lays out its clones."""
    try:
        with os.scandir(directory) as scanner:
            names = [e.name for e in scanner if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []
    return sorted(name for name in names if os.path.lexists(directory / name / ".git"))


async def changes(directory: Path, ref: str | None) -> list[dict[str, str]]:
    """What changed under `directory` since the base, paths relative to it, sorted; the
    repositories right under it (as a conversation clones them) count too."""
    nested = await trio.to_thread.run_sync(_nested_repositories, directory)
    base_error: NotARepository | None = None
    try:
        found = await _changes_in(directory, ref)
    except NotARepository as error:
        if not nested:
            raise
        base_error, found = error, []
    found = [c for c in found if not any(Path(c["path"]).is_relative_to(n) for n in nested)]
    any_nested = False
    for name in nested:
        try:
            inner = await _changes_in(directory / name, ref)
        except BadRequest:
            continue  # not a usable repository after all, or `ref` is not one of its
        any_nested = True
        found += [{**c, "path": f"{name}/{c['path']}"} for c in inner]
    if base_error is not None and not any_nested:
        raise base_error
    return sorted(found, key=lambda change: change["path"])


# -- one file's two sides ------------------------------------------------------------------


def _probe_file(path: Path) -> tuple[bool, Path]:
    """Blocking: whether `path` exists (a file, small enough), and the nearest existing
    directory at or above it, where git is asked which repository it is in."""
    try:
        info = path.stat()
    except FileNotFoundError:
        parent = path.parent
        while not parent.is_dir() and parent != parent.parent:
            parent = parent.parent
        return False, parent
    except OSError as error:
        raise os_error(error, f"Cannot read {path}") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadRequest(f"Path is a directory, not a file: {path}", field="path")
    _check_size(info.st_size)
    return True, path.parent


def _check_size(size: int) -> None:
    if size > MAX_DIFF_FILE_BYTES:
        raise BadRequest(
            f"File too large for git diff: {size} bytes (max: {MAX_DIFF_FILE_BYTES} bytes)",
            field="path",
        )


async def _blob(repo: Path, rev: str, relative: str) -> str | None:
    """The file at `rev` as text, lines joined by `\\n`; None if `rev` has no such file."""
    spec = f"{rev}:{relative}"
    status, kind = await git(["cat-file", "-t", spec], repo, check=False)
    if status != 0 or kind.strip() != "blob":
        return None
    _, size = await git(["cat-file", "-s", spec], repo)
    _check_size(int(size.strip() or 0))
    _, text = await git(["cat-file", "blob", spec], repo)
    return "\n".join(text.splitlines())


async def _repository_file(path: Path) -> tuple[bool, Path, str]:
    """(exists on disk, repository root, path relative to it) for a file to diff."""
    exists, directory = await trio.to_thread.run_sync(_probe_file, path)
    repo = await toplevel(directory)
    if repo is None:
        if not exists:
            raise NotFound(f"File not found: {path}", field="path")
        raise NotARepository(f"File is not in a git repository: {path}", field="path")
    real = Path(await trio.to_thread.run_sync(os.path.realpath, path))
    if not real.is_relative_to(repo):
        raise BadRequest(f"File is not within its git repository: {path}", field="path")
    return exists, repo, real.relative_to(repo).as_posix()


async def diff(path: Path, ref: str | None) -> dict[str, str | None]:
    """The file at the base (`original`) and on disk (`modified`); "" for a side that
    does not exist, or on disk is not UTF-8 text."""
    exists, repo, relative = await _repository_file(path)
    base = await base_ref(repo, ref)
    original = await _blob(repo, base, relative)
    if not exists:
        if original is None:
            raise NotFound(f"File not found on disk nor at the base: {path}", field="path")
        return {"modified": "", "original": original}

    def read() -> str:
        try:
            return "\n".join(path.read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError):
            return ""

    modified = await trio.to_thread.run_sync(read)
    return {"modified": modified, "original": original or ""}


async def commit_file_diff(path: Path, commit: str) -> dict[str, str | None]:
    """The file before and after one commit, both read from git (never from disk)."""
    _, repo, relative = await _repository_file(path)
    sha = await resolve_commit(repo, commit)
    parent = await rev_parse(repo, f"{sha}^") or EMPTY_TREE
    return {
        "modified": await _blob(repo, sha, relative) or "",
        "original": await _blob(repo, parent, relative) or "",
    }


# -- history -------------------------------------------------------------------------------


async def resolve_commit(repo: Path, commit: str) -> str:
    if not SHA.fullmatch(commit):
        raise InvalidInput("commit must be 4 to 64 hexadecimal digits", field="sha")
    if (sha := await rev_parse(repo, f"{commit}^{{commit}}")) is None:
        raise BadRequest(f"No commit {commit} in the repository", field="sha")
    return sha


async def commits(directory: Path, limit: int) -> dict[str, Any]:
    """The newest `limit` commits reachable from HEAD, and whether there are more."""
    await require_repository(directory)
    head = await rev_parse(directory, "HEAD")
    if head is None:  # an unborn branch: nothing committed on it yet
        return {"commits": [], "has_more": False}
    args = ["log", "--no-show-signature", f"--format={_LOG_FORMAT}", "-n", str(limit + 1), head]
    _, out = await git(args, directory)
    listed: list[dict[str, str]] = []
    for line in out.splitlines():
        parts = line.split("\x1f")
        if len(parts) == 5:
            sha, short_sha, author, timestamp, subject = parts
            listed.append(
                {
                    "sha": sha,
                    "short_sha": short_sha,
                    "subject": subject,
                    "author": author,
                    "timestamp": timestamp,
                }
            )
    return {"commits": listed[:limit], "has_more": len(listed) > limit}


async def commit_changes(directory: Path, commit: str) -> list[dict[str, str]]:
    """The files one commit changed against its first parent (a root commit: all added),
    paths relative to the repository's root."""
    await require_repository(directory)
    sha = await resolve_commit(directory, commit)
    parent = await rev_parse(directory, f"{sha}^") or EMPTY_TREE
    args = ["diff", "--name-status", "-z", "--no-ext-diff", parent, sha, "--"]
    _, out = await git(args, directory)
    return parse_name_status(out)
