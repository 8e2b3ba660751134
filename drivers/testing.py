"""Public testing helpers for voltloop drivers and for users' own instrument code.

* :class:`ExpectedExchangePort` — a pymeasure-style expected-exchange fake serial port:
  given the exact ``(sent_bytes, reply_bytes)`` pairs of a conversation, it answers
  each expected write with its reply and fails on anything extra, different or missing.
  :func:`expected_exchange` wires it into a :class:`~voltloop.drivers.transport.Transport`.
* :func:`simulated_cycler` — a context manager that serves a simulated cycler (your own
  lab, or a physics lab with loaded cells and a running clock) on a pty or TCP for
  end-to-end tests and yields the server (``server.url``).

Example::

    with expected_exchange([(b"*IDN?\\n", b"VOLTLOOP,VLC-8,SIM1,1.0\\n")]) as transport:
        assert transport.query("*IDN?") == "VOLTLOOP,VLC-8,SIM1,1.0"
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from voltloop.drivers.transport import Transport

if TYPE_CHECKING:
    from voltloop.drivers.sim.cycler_server import CyclerServer
    from voltloop.drivers.sim.faults import FaultInjector
    from voltloop.drivers.sim.virtual_lab import VirtualLab


class ExchangeMismatchError(AssertionError):
    """The code under test sent bytes the expected conversation does not contain."""


class ExpectedExchangePort:
    """A fake serial port that plays a scripted conversation, byte-exact.

    ``pairs`` is a list of ``(sent, reply)``: ``sent`` the exact bytes the host must
    write (terminators included; None = no write, the reply arrives unprompted),
    ``reply`` the bytes the port then makes readable (None = no reply, e.g. a command).
    Writes may come in pieces; they are matched byte by byte, and the first byte that
    differs or exceeds the script raises :class:`ExchangeMismatchError`. Reading with nothing
    to read waits ``timeout`` (like a real port) and returns ``b""``.
    """

    def __init__(self, pairs: Sequence[tuple[bytes | None, bytes | None]], timeout: float = 0.01):
        self._pairs = list(pairs)
        self._index = 0
        self._written = bytearray()
        self._readable = bytearray()
        self.timeout = timeout
        self.is_open = True
        self.errors: list[str] = []
        self._release_unprompted()

    def _release_unprompted(self) -> None:
        while self._index < len(self._pairs) and self._pairs[self._index][0] is None:
            reply = self._pairs[self._index][1]
            if reply:
                self._readable += reply
            self._index += 1

    def _fail(self, message: str) -> None:
        self.errors.append(message)
        raise ExchangeMismatchError(message)

    # --- the subset of serial.SerialBase a Transport uses -----------------------
    def write(self, data: bytes) -> int:
        for byte in bytes(data):
            if self._index >= len(self._pairs):
                self._fail(
                    f"unexpected extra write {bytes(self._written) + bytes([byte])!r} "
                    f"after the whole exchange"
                )
            expected = self._pairs[self._index][0] or b""
            pos = len(self._written)
            if pos >= len(expected) or expected[pos] != byte:
                self._fail(
                    f"exchange {self._index}: expected {expected!r}, "
                    f"got {bytes(self._written) + bytes([byte])!r}"
                )
            self._written.append(byte)
            if len(self._written) == len(expected):
                reply = self._pairs[self._index][1]
                if reply:
                    self._readable += reply
                self._written.clear()
                self._index += 1
                self._release_unprompted()
        return len(data)

    def flush(self) -> None:
        return None

    @property
    def in_waiting(self) -> int:
        return len(self._readable)

    def read(self, size: int = 1) -> bytes:
        if not self._readable:
            time.sleep(self.timeout)
            return b""
        out = bytes(self._readable[:size])
        del self._readable[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._readable.clear()

    def close(self) -> None:
        self.is_open = False

    # --- checks --------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._index >= len(self._pairs) and not self._written

    def assert_done(self) -> None:
        """Fail if part of the expected conversation never happened."""
        if not self.done:
            missing = [p[0] for p in self._pairs[self._index :]]
            raise ExchangeMismatchError(f"expected exchanges never sent: {missing!r}")
        if self._readable:
            raise ExchangeMismatchError(f"reply bytes never read: {bytes(self._readable)!r}")


@contextmanager
def expected_exchange(
    pairs: Sequence[tuple[bytes | None, bytes | None]],
    **transport_options: Any,
) -> Iterator[Transport]:
    """A Transport over an :class:`ExpectedExchangePort`; on exit, asserts that the
    whole conversation happened and nothing else did (``transport.port`` is the fake)."""
    port = ExpectedExchangePort(pairs)
    options: dict[str, Any] = {"timeout_s": 0.2, "retries": 0}
    options.update(transport_options)
    transport = Transport("expected://", port_factory=lambda: port, **options)  # type: ignore[arg-type]
    transport.port = port  # type: ignore[attr-defined]
    transport.open()
    yield transport
    if port.errors:
        raise ExchangeMismatchError(port.errors[0])
    port.assert_done()


@contextmanager
def simulated_cycler(
    lab: VirtualLab | None = None,
    *,
    link: str = "tcp",
    faults: FaultInjector | None = None,
    channels: int = 4,
    speed: float | str | None = None,
    seed: int = 0,
) -> Iterator[CyclerServer]:
    """Serve a simulated cycler over ``link`` ("tcp" or "pty") and yield the running
    server (``server.url`` is the URL to give a driver, ``server.lab`` the lab); all is
    stopped on exit.

    Without ``lab``, a physics lab (``SimulatedLab``) with ``channels`` channels is
    built and every channel gets a default cell (the simulator-only loader), and its
    clock runs at ``speed`` (default 3600 virtual s per wall s). With a ``lab`` of your
    own, a clock runs only if ``speed`` is given (a factor or ``"max"``); otherwise you
    advance the lab yourself (deterministic tests)."""
    from voltloop.drivers.sim.cycler_server import CyclerServer
    from voltloop.drivers.sim.serve import default_lab, load_default_cells, parse_speed

    if lab is None:
        lab = default_lab(channels, seed=seed)
        load_default_cells(lab, seed=seed)
        speed = 3600.0 if speed is None else speed
    clock = None
    if speed is not None:
        from voltloop.drivers.sim.clock import LabClock

        clock = LabClock(lab, factor=parse_speed(speed))
    server = CyclerServer(lab, link=link, faults=faults)
    server.start()
    try:
        if clock is not None:
            clock.start()
        yield server
    finally:
        server.stop()
        if clock is not None:
            clock.stop()
