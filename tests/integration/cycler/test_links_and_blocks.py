"""Raw TCP byte streams: the simulated link's closed-connection errors, and the host
transport reading record blocks straight from the socket (split, cut, or dropped)."""

from __future__ import annotations

import socket
import threading
import time
import zlib

import pytest

from voltloop.drivers.errors import Disconnected, ProtocolError, TransportTimeout
from voltloop.drivers.sim.links import LinkClosedError, TcpLink
from voltloop.drivers.transport import Transport, encode_block

pytestmark = pytest.mark.integration


def test_a_closed_tcp_connection_raises_the_links_own_error() -> None:
    link = TcpLink(down_s=0.0)
    url = link.start()
    stop = threading.Event()
    host = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2.0)
    try:
        connection = link.accept(stop)
        assert connection is not None
        connection.close()
        with pytest.raises(LinkClosedError):
            connection.recv(0.05)
        with pytest.raises(LinkClosedError):
            connection.send(b"1\n")
    finally:
        host.close()
        link.close()


class _OneShotServer:
    """Accepts one connection, waits for a line, then sends ``parts`` with pauses and
    finally closes (``close=True``) or keeps the connection open until told."""

    def __init__(self, parts: list[bytes], pause_s: float = 0.01, close: bool = False) -> None:
        self.parts, self.pause_s, self.close_after = parts, pause_s, close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(2.0)
            conn.recv(100)
            for part in self.parts:
                conn.sendall(part)
                time.sleep(self.pause_s)
            if not self.close_after:
                self.done.wait(5.0)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5.0)
        self.listener.close()


def _block_reply(payload: bytes) -> bytes:
    return f'"x",0,{len(payload)},{zlib.crc32(payload):08X},'.encode() + encode_block(payload)


def test_a_large_block_arriving_in_pieces_is_read_whole_into_a_fresh_buffer() -> None:
    payload = bytes(range(256)) * 4000  # 1 MB, every byte value, newlines inside
    reply = _block_reply(payload) + b"\n"
    pieces = [reply[i : i + 70_001] for i in range(0, len(reply), 70_001)]
    server = _OneShotServer(pieces, pause_s=0.005)
    try:
        with Transport(server.url, timeout_s=2.0, retries=0) as transport:
            block = transport.query_block("DATA?")
            assert isinstance(block.data, bytearray)
            assert block.data == payload
            assert zlib.crc32(block.data) == int(block.prefix.split(",")[3], 16)
    finally:
        server.stop()


def test_a_block_cut_off_mid_way_is_a_protocol_error_within_the_timeout() -> None:
    reply = _block_reply(bytes(200_000)) + b"\n"
    server = _OneShotServer([reply[:120_000]])
    try:
        with Transport(server.url, timeout_s=0.3, retries=0) as transport:
            began = time.monotonic()
            with pytest.raises(ProtocolError, match="partial block data"):
                transport.query_block("DATA?")
            assert time.monotonic() - began < 1.5
    finally:
        server.stop()


def test_a_connection_closed_mid_block_is_a_disconnect() -> None:
    reply = _block_reply(bytes(200_000)) + b"\n"
    server = _OneShotServer([reply[:90_000]], close=True)
    try:
        transport = Transport(server.url, timeout_s=1.0, retries=0, reconnect_attempts=1)
        with transport, pytest.raises(Disconnected):
            transport.query_block("DATA?")
    finally:
        server.stop()


def test_a_write_to_a_host_that_stopped_reading_times_out() -> None:
    """The far end accepts but never reads: the socket buffers fill and the write
    gives up after ``timeout_s`` with a typed error instead of blocking."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        with Transport(url, timeout_s=0.3, retries=0) as transport:
            began = time.monotonic()
            with pytest.raises(TransportTimeout, match="write of"):
                transport.command("CHAN0:SCH", block=bytes(16 << 20))
            assert time.monotonic() - began < 1.5
    finally:
        thread.join(2.0)
        for sock in accepted:
            sock.close()
        listener.close()


def test_the_host_socket_sends_small_writes_at_once() -> None:
    """A command followed at once by ``SYST:ERR?`` must not wait for the instrument's
    delayed ACK (Nagle's algorithm, ~40 ms a command): the transport switches it off
    on the ``socket://`` port that pyserial opens with it on."""
    server = _OneShotServer([b"ok\n"])
    transport = Transport(server.url, timeout_s=2.0)
    try:
        transport.open()
        sock = transport._port._socket  # pyserial's socket behind the port
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.done.set()
        transport.close()
        server.listener.close()
