"""DrainingListener: every connection waiting in the accept queue is taken in one pass.

Trio's own SocketListener checkpoints after each accept, so a queue of N connections costs N
passes of the scheduler; under load that is what kept a liveness probe waiting for seconds
(bench/soak.py). The server accepts through this listener (hypercorn_worker.py).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing

from tests.conftest import LiveServer
from trio_openhands.draining_listener import DrainingListener
from trio_openhands.server import LISTEN_BACKLOG

pytestmark = pytest.mark.store_independent


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def connect(listening: socket.socket, count: int) -> list[socket.socket]:
    """`count` clients whose connections the kernel has completed, none accepted yet."""
    clients = [socket.create_connection(listening.getsockname()) for _ in range(count)]
    for index, client in enumerate(clients):
        client.sendall(b"client %d" % index)
    return clients


def read_or_reset(client: socket.socket) -> bytes:
    try:
        return client.recv(100)
    except ConnectionResetError:
        return b""


async def test_the_waiting_connections_are_handed_out_without_a_checkpoint(
    listening: socket.socket,
) -> None:
    clients = connect(listening, 5)
    listener = DrainingListener(listening)
    streams = [await listener.accept()]  # waits for the socket, then drains the queue
    with trio.testing.assert_no_checkpoints():
        streams += [await listener.accept() for _ in range(4)]
    received = sorted([await stream.receive_some(100) for stream in streams])
    assert received == [b"client %d" % index for index in range(5)]
    for stream in streams:  # each one is a working stream, both ways
        await stream.send_all(b"ok")
    assert [client.recv(100) for client in clients] == [b"ok"] * 5
    for stream in streams:
        await stream.aclose()
    await listener.aclose()
    for client in clients:
        client.close()


async def test_accept_waits_when_the_queue_is_empty(listening: socket.socket) -> None:
    listener = DrainingListener(listening)
    accepted: list[trio.SocketStream] = []

    async def accept_one() -> None:
        accepted.append(await listener.accept())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_one)
        await trio.testing.wait_all_tasks_blocked()
        assert accepted == []
        [client] = await trio.to_thread.run_sync(connect, listening, 1)
    assert len(accepted) == 1
    await accepted[0].aclose()
    await listener.aclose()
    client.close()


async def test_closing_closes_what_was_accepted_but_not_handed_out(
    listening: socket.socket,
) -> None:
    clients = connect(listening, 3)
    listener = DrainingListener(listening)
    first = await listener.accept()
    await listener.aclose()
    assert listening.fileno() == -1
    await first.send_all(b"still open")
    # The two taken from the queue with the first are closed (reset: their data went unread).
    assert sorted(read_or_reset(client) for client in clients) == [b"", b"", b"still open"]
    await first.aclose()
    for client in clients:
        client.close()


async def test_the_server_listens_with_a_deep_backlog(server: LiveServer) -> None:
    """Hypercorn's default (100) overflowed under bench/soak.py: SYNs dropped, clients
    waiting out TCP's 1/3/7 s retransmissions. `ss` shows a listener's backlog as Send-Q."""
    if shutil.which("ss") is None:
        pytest.skip("no ss (iproute2) on this machine")
    port = urlsplit(server.url).port
    listing = await trio.run_process(["ss", "-ltnH", f"sport = :{port}"], capture_stdout=True)
    [line] = listing.stdout.decode().splitlines()
    assert int(line.split()[2]) == LISTEN_BACKLOG == 2048
