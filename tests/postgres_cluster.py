"""A throwaway PostgreSQL cluster for the tests, from the machine's own binaries.

Once per test session (so once per xdist worker) `initdb` makes a cluster in a temporary
directory and `pg_ctl` starts it on a free loopback port; it is stopped and removed at the
end of the session. No running service is assumed and nothing is downloaded: the binaries
are those `pg_config --bindir` names (Debian's `postgresql` package). Where they are missing
the tests that need the cluster are skipped, saying how to get them.

`initdb` refuses to run as root, and the suite runs as root in CI: the cluster then runs as
the unprivileged `postgres` user (created by Debian's package) through `runuser`, in a
directory that user owns. Durability is switched off (`fsync`, `synchronous_commit`,
`full_page_writes`): a test cluster never survives a crash, and it makes commits cheap.

Each test that wants a database asks for `postgres_url`: a fresh, empty schema of its own
(its URL sets `search_path`), so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
    "install Debian's postgresql package (apt-get install -y postgresql)"
)
# The user the cluster runs as when the tests run as root (Debian's package creates it).
CLUSTER_USER = "postgres"
START_TIMEOUT_SECONDS = 30
START_ATTEMPTS = 3


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's versioned dirs."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    # Debian's postgresql-common puts pg_config on PATH only with the -dev package.
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresCluster:
    """A running cluster: trust authentication for `user` on 127.0.0.1:`port`."""

    bindir: Path
    base: Path
    port: int
    user: str = CLUSTER_USER
    run_as: list[str] = field(default_factory=list[str])  # ["runuser", "-u", ...] as root
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*self.run_as, str(self.bindir / tool), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stderr}\n{log}")

    def initdb(self) -> None:
        self._check(
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ),
            "initdb",
        )

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.base}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._check(
            self._pg(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "start",
            ),
            "pg_ctl start",
        )

    def stop(self) -> None:
        # `immediate`: nothing in a test cluster needs a checkpoint on the way out.
        self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; returns its URL (~0.1-0.4 s: prefer `create_schema`)."""
        import psycopg
        from psycopg import sql

        name = f"test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def create_schema(self) -> str:
        """A new empty schema in the `postgres` database; returns a URL whose connections
        use it (`search_path`), so that what they create and read is in it alone.

        A schema costs a millisecond where a database costs a tenth of a second or more.
        Shared with the other schemas: the database-wide LISTEN channels and advisory
        locks (tests of one session run one at a time, so they do not meet)."""
        import psycopg
        from psycopg import sql

        name = f"test_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return f"{self.url()}?options=-csearch_path%3D{name}"


def _start_cluster(base: Path) -> PostgresCluster:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(CLUSTER_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {CLUSTER_USER!r} user: {INSTALL_HINT}")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", CLUSTER_USER, "--"]
    cluster = PostgresCluster(bindir=bindir, base=base, port=_free_loopback_port(), run_as=run_as)
    cluster.initdb()
    for attempt in range(START_ATTEMPTS):
        try:
            cluster.start()
        except RuntimeError:  # most likely the port, taken since we found it free
            if attempt == START_ATTEMPTS - 1:
                raise
            cluster.port = _free_loopback_port()
        else:
            return cluster
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's cluster, started on first use and stopped (and removed) at the end."""
    # Not pytest's tmp_path: its parents are root's 0700 directories, which `postgres`
    # cannot enter.
    base = Path(tempfile.mkdtemp(prefix="trio-openhands-pg-"))
    try:
        cluster = _start_cluster(base)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A database URL for this test alone: a fresh empty schema on the session's cluster."""
    return postgres_cluster.create_schema()
