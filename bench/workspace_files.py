"""Workspace file benchmark: upload and download throughput of a 100 MB file over HTTP,
ours and the reference server's side by side, and each server's peak memory meanwhile.

Run: `uv run python bench/workspace_files.py` (about half a minute; prints figures), or
`... --size-mb 500 --rounds 5`. Each round uploads the file (`POST /api/file/upload`,
multipart, streamed from disk by httpx) then downloads it (`GET /api/file/download`,
streamed to disk) and checks the bytes came back; the figure is the median of the rounds,
in MB/s (10^6 bytes). Peak RSS is the server process's VmHWM (kernel high-water mark)
after all rounds, against its RSS when idle before the first: it shows whether a server
holds a file in memory.

The servers run as processes of their own on loopback ports, each with its conversations
and files in a fresh temporary directory: ours is `python -m trio_openhands.cli` from this
checkout; the reference is `openhands-agent-server` 1.58.2, used when a virtualenv with it
exists at /tmp/refvenv (`python3.12 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install
openhands-agent-server==1.58.2`), else skipped (`--reference-python PATH` points elsewhere).
Both servers share the 2 cores with the client, so figures move by +-20 % between runs:
compare within one run.

Measured here (2 cores, three runs of 3 rounds, 100 MB):
    ours       upload 134-174 MB/s   download 567-675 MB/s   peak RSS +16 MiB over idle
    reference  upload  10-14 MB/s    download 152-183 MB/s   peak RSS  +5 MiB over idle
The reference writes an upload 8 KiB per worker-thread call; ours takes what has arrived
(up to 4 MiB) per call, and sends a download in 1 MiB reads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import (
    REFERENCE_PYTHON,
    each_server,
    memory_kib,
)

CHUNK = 1024 * 1024


def digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            hasher.update(block)
    return hasher.hexdigest()


def measure(name: str, url: str, pid: int, source: Path, work: Path, rounds: int) -> None:
    size = source.stat().st_size
    expected = digest(source)
    idle = memory_kib(pid, "VmRSS")
    uploads: list[float] = []
    downloads: list[float] = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for index in range(rounds):
            remote = work / f"uploaded-{index}.bin"
            started = time.perf_counter()
            with source.open("rb") as file:
                answer = client.post(
                    "/api/file/upload", params={"path": str(remote)}, files={"file": ("f", file)}
                )
            uploads.append(size / (time.perf_counter() - started) / 1e6)
            assert answer.status_code == 200, answer.text
            back = work / f"downloaded-{index}.bin"
            started = time.perf_counter()
            with client.stream("GET", "/api/file/download", params={"path": str(remote)}) as got:
                assert got.status_code == 200
                with back.open("wb") as out:
                    for block in got.iter_bytes(CHUNK):
                        out.write(block)
            downloads.append(size / (time.perf_counter() - started) / 1e6)
            assert digest(back) == expected, "the file did not come back intact"
            remote.unlink()
            back.unlink()
    peak = memory_kib(pid, "VmHWM")
    print(
        f"{name:<10} upload {statistics.median(uploads):7.0f} MB/s   "
        f"download {statistics.median(downloads):7.0f} MB/s   "
        f"RSS idle {idle / 1024:5.0f} MiB, peak {peak / 1024:5.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Upload/download throughput")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-files-") as temporary:
        base = Path(temporary)
        source = base / "source.bin"
        with source.open("wb") as out:
            for _ in range(options.size_mb):
                out.write(os.urandom(1_000_000))
        print(f"{options.size_mb} MB file, median of {options.rounds} rounds, loopback")
        for name, url, pid, work in each_server(base, options.reference_python):
            measure(name, url, pid, source, work, options.rounds)


if __name__ == "__main__":
    main()
