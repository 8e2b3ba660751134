"""A reply sent as gathered parts (``sendmsg``) arrives whole and in order, and a host
that stops reading cannot hold the simulated instrument past its write timeout."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from voltloop.drivers.sim.links import Gather, LinkClosedError, _TcpConnection, as_bytes


def _parts(n: int) -> list[bytes | memoryview]:
    rng = np.random.default_rng(n)
    arrays = [rng.integers(0, 256, size, dtype=np.uint8) for size in rng.integers(1, 300_000, n)]
    return [b"head#", *(memoryview(a) for a in arrays), b"\n"]


@pytest.mark.parametrize("count", [1, 3, 700])  # 700 parts: more than one sendmsg's iovecs
def test_parts_arrive_whole_and_in_order(count: int) -> None:
    parts = _parts(count)
    reply = Gather(parts)
    assert bytes(reply) == as_bytes(reply) == b"".join(bytes(p) for p in parts)
    server, host = socket.socketpair()
    received = bytearray()

    def read() -> None:
        while len(received) < reply.nbytes:
            received.extend(host.recv(1 << 16))

    reader = threading.Thread(target=read)
    reader.start()
    _TcpConnection(server, write_timeout_s=5.0).send(reply)
    reader.join(10.0)
    assert bytes(received) == bytes(reply)
    server.close()
    host.close()


def test_a_host_that_stops_reading_is_given_up_after_the_write_timeout() -> None:
    server, host = socket.socketpair()
    reply = Gather([memoryview(np.zeros(64 << 20, dtype=np.uint8))])  # far beyond the buffers
    started = time.monotonic()
    with pytest.raises(LinkClosedError):
        _TcpConnection(server, write_timeout_s=0.5).send(reply)
    assert time.monotonic() - started < 3.0
    server.close()
    host.close()
