"""Archives the file routes serve: a workspace directory (`git-delta` patch or `tar.gz`);
a conversation's trajectory ZIP is stores/trajectory.py's.

Each is built in an anonymous temporary file (no name in any directory, so nothing is
left behind, whatever happens to the request) on the conversations directory's volume,
not in memory nor on a tmpfs `/tmp`; the route then streams it from disk. Building runs
in a worker thread (tar, zip) or in git's own processes (the patch), never on the Trio
thread. Symbolic links are never followed out of the archived directory, and git's
credential-bearing files (config, FETCH_HEAD, reflogs, ...) never go into a tarball.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import trio

from trio_openhands.services import git
from trio_openhands.services.errors import BadRequest, os_error

ArchiveFormat = Literal["git-delta", "tar.gz"]
SUFFIX = {"git-delta": ".patch", "tar.gz": ".tar.gz"}
MEDIA_TYPE = {"git-delta": "text/x-patch", "tar.gz": "application/gzip"}
MANIFEST = "archive_manifest.json"
DELTA_TIMEOUT = 300.0  # seconds for staging or diffing a whole work tree
# What usually bloats an archive without helping to replay it; `use_default_excludes=false`
# drops them. Patterns: a trailing `/` matches directories only; a pattern with a `/` is
# anchored at the archived directory; a bare name matches at any depth.
DEFAULT_EXCLUDES = (
    ".git/",
    "node_modules/",
    ".venv/",
    "venv/",
    "__pycache__/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "dist/",
    "build/",
    ".next/",
    "target/",
    "*.pyc",
)
_GIT_SECRETS = frozenset(
    {"config", "config.worktree", "credentials", ".git-credentials", "FETCH_HEAD"}
)
_NOT_DESCENDED = frozenset({"node_modules", "venv", "site-packages", "vendor"})


def anonymous_file(scratch_dir: Path) -> IO[bytes]:
    """Blocking: a read-write temporary file with no name, on `scratch_dir`'s volume."""
    try:
        scratch_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=scratch_dir)  # the caller closes it
    except OSError as error:
        raise os_error(error, f"Cannot make a temporary file in {scratch_dir}") from None


def is_excluded(relative: PurePosixPath, patterns: list[str], is_dir: bool) -> bool:
    parts = relative.parts
    for raw in patterns:
        pattern, dir_only = raw.rstrip("/"), raw.endswith("/")
        if not pattern:
            continue
        if "/" in pattern:
            segments = pattern.split("/")
            if len(parts) >= len(segments) and all(
                fnmatch.fnmatchcase(part, segment)
                for part, segment in zip(parts, segments, strict=False)
            ):
                if dir_only and not is_dir and len(parts) == len(segments):
                    continue  # `build/` spares a file named build
                return True
        else:
            names = parts if is_dir or not dir_only else parts[:-1]
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                return True
    return False


def exclude_pathspecs(patterns: list[str]) -> list[str]:
    """The same patterns as git `:(exclude)` pathspecs, tracked and untracked alike."""
    specs: list[str] = []
    for raw in patterns:
        pattern, dir_only = raw.rstrip("/"), raw.endswith("/")
        if not pattern:
            continue
        anchored = pattern if "/" in pattern else f"**/{pattern}"
        if not dir_only:
            specs.append(f":(glob,exclude){anchored}")
        specs.append(f":(glob,exclude){anchored}/**")
    return specs


def is_git_secret(relative: PurePosixPath) -> bool:
    """A credential-bearing file inside any `.git` (submodules' under .git/modules too)."""
    parts = relative.parts
    if ".git" not in parts:
        return False
    inside = parts[parts.index(".git") + 1 :]
    return bool(inside) and ("logs" in inside or inside[-1] in _GIT_SECRETS)


def repository_root(target: Path, max_depth: int = 3) -> Path:
    """Blocking: `target` if it is a work tree, else the one repository below it (up to
    `max_depth` levels, hidden and vendored directories skipped); with none or several,
    `target` as given."""
    if (target / ".git").exists():
        return target
    found: list[Path] = []
    frontier = [(target, 0)]
    while frontier:
        current, depth = frontier.pop()
        if depth >= max_depth:
            continue
        try:
            children = sorted(current.iterdir())
        except OSError:
            continue
        for child in children:
            if child.name.startswith(".") or child.name in _NOT_DESCENDED:
                continue
            with contextlib.suppress(OSError):
                if child.is_symlink() or not child.is_dir():
                    continue
                if (child / ".git").exists():
                    found.append(child)
                    if len(found) > 1:
                        return target
                else:
                    frontier.append((child, depth + 1))
    return found[0] if found else target


# -- tar.gz --------------------------------------------------------------------------------


class _Exactly:
    """Exactly `size` bytes of `file`: padded if it shrank, cut if it grew, so a file
    changed while archived can never desynchronize the tar stream."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file, self._left = file, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._file.read(n)
        data += b"\0" * (n - len(data))
        self._left -= n
        return data


def write_tar_gz(root: Path, out: IO[bytes], excludes: list[str]) -> None:
    """Blocking: `root` as a gzip tarball (members under `root.name/`, regular files and
    directories only), then a manifest of what it holds."""
    count = total = 0
    manifest_name = f"{root.name}/{MANIFEST}"
    collision = False
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            base = PurePosixPath(Path(directory).relative_to(root).as_posix())
            dirnames[:] = [
                d
                for d in sorted(dirnames)
                if not is_excluded(base / d, excludes, True) and not is_git_secret(base / d)
            ]
            arc_dir = root.name if str(base) == "." else f"{root.name}/{base}"
            with contextlib.suppress(OSError):
                if not Path(directory).is_symlink():
                    tar.add(directory, arcname=arc_dir, recursive=False)
            for name in sorted(filenames):
                relative = base / name
                if is_excluded(relative, excludes, False) or is_git_secret(relative):
                    continue
                arcname = f"{root.name}/{relative}"
                size = _add_regular_file(tar, Path(directory) / name, arcname)
                if size is not None:
                    count, total = count + 1, total + size
                    collision |= arcname == manifest_name
        if not collision:  # the workspace's own file of that name wins
            manifest = {
                "format": "tar.gz",
                "source": root.name,
                "file_count": count,
                "total_bytes": total,
                "excludes": excludes,
            }
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(manifest_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _add_regular_file(tar: tarfile.TarFile, path: Path, arcname: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # a link, gone, unreadable: skipped
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        info = tar.gettarinfo(arcname=arcname, fileobj=file)
        tar.addfile(info, _Exactly(file, info.size))  # pyright: ignore[reportArgumentType]
        return info.size


# -- git-delta -----------------------------------------------------------------------------


async def _export_base(root: Path, base_ref: str | None) -> str:
    """The commit a patch applies to: `base_ref`, else one a fresh clone has (origin's
    copy of this branch, origin's default branch or the fork point from it), else the
    empty tree; a detached HEAD (a pinned checkout) is its own base."""
    if base_ref is None:
        _, branch = await git.git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False)
        if not branch.strip() and await git.rev_parse(root, "HEAD"):
            base_ref = "HEAD"
    if base_ref is not None:
        git.check_ref_text(base_ref, "base_ref")
        if sha := await git.rev_parse(root, f"{base_ref}^{{commit}}"):
            return sha
        if base_ref == "HEAD":
            return git.EMPTY_TREE
        raise BadRequest(f"base_ref {base_ref!r} could not be resolved", field="base_ref")
    _, any_commit = await git.git(["rev-list", "-n", "1", "--all"], root, check=False)
    if not any_commit.strip():
        return git.EMPTY_TREE
    candidates: list[str] = []
    _, branch = await git.git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False)
    if branch.strip():
        candidates.append(f"refs/remotes/origin/{branch.strip()}")
    if default := await git.origin_default_branch(root):
        candidates.append(f"refs/remotes/origin/{default}")
        _, fork = await git.git(
            ["merge-base", "HEAD", f"refs/remotes/origin/{default}"], root, check=False
        )
        candidates += [fork.strip()] if fork.strip() else []
    for candidate in candidates:
        if sha := await git.rev_parse(root, candidate):
            return sha
    return git.EMPTY_TREE


async def write_git_delta(
    root: Path, base_ref: str | None, out: IO[bytes], excludes: list[str], scratch_dir: Path
) -> str:
    """The work tree's changes against the base as a binary patch (tracked edits, new
    files, deletions), staged in a throwaway index so the repository's own is untouched.
    Returns the base commit, "" for the empty tree."""
    await git.require_repository(root)
    base = await _export_base(root, base_ref)
    specs = ["--", ".", *exclude_pathspecs(excludes)]
    fd, index_name = await trio.to_thread.run_sync(
        lambda: tempfile.mkstemp(prefix=".archive-", suffix=".index", dir=scratch_dir)
    )
    os.close(fd)
    await trio.to_thread.run_sync(os.unlink, index_name)  # git wants to create it itself
    env = {"GIT_INDEX_FILE": index_name}
    try:
        await git.git(["read-tree", base], root, env=env)
        await git.git(["add", "-A", *specs], root, env=env, seconds=DELTA_TIMEOUT)
        args = ["diff", "--binary", "--no-ext-diff", "--no-textconv", "--cached", base, *specs]
        await git.git(args, root, env=env, stdout=out, seconds=DELTA_TIMEOUT)
    finally:
        with trio.CancelScope(shield=True), contextlib.suppress(OSError):
            await trio.to_thread.run_sync(os.unlink, index_name)
    return "" if base == git.EMPTY_TREE else base


async def repository_headers(repo: Path) -> dict[str, str]:
    """What identifies the archived repository, percent-encoded for headers: origin's URL
    (without credentials or query), the branch, HEAD, the root."""
    headers: dict[str, str] = {}
    _, remote = await git.git(["remote", "get-url", "origin"], repo, check=False)
    if remote.strip():
        headers["X-Archive-Repo-Remote"] = quote(_without_credentials(remote.strip()), safe="")
    _, branch = await git.git(["rev-parse", "--abbrev-ref", "HEAD"], repo, check=False)
    if head := await git.rev_parse(repo, "HEAD"):
        headers["X-Archive-Head-Commit"] = head
        name = branch.strip()
        headers["X-Archive-Branch"] = quote("DETACHED" if name == "HEAD" else name, safe="")
    headers["X-Archive-Repo-Root"] = quote(str(repo), safe="")
    return headers


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url  # scp-like `git@host:path`: the user name is no secret
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
