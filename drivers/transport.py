"""Line and block transport over pyserial with bounded timeouts, retries and reconnect.

One :class:`Transport` talks to one instrument through ``serial.serial_for_url``: a
real port (``/dev/ttyUSB0``), a pty path, or ``socket://host:port``. It frames ASCII
lines with a configurable terminator and IEEE 488.2 definite-length arbitrary blocks
(``#<n><len><bytes>``), and guarantees:

* **Bounded time.** The port's own read timeout is a short poll slice; every read
  loops against a deadline (``timeout_s``, extended for long blocks by their size at
  the line rate), every write has ``write_timeout``. Nothing blocks forever, whatever
  the far end does.
* **Typed errors** (:mod:`voltloop.drivers.errors`): no complete reply in time →
  :class:`TransportTimeout`; bytes that arrived but do not form a reply (non-ASCII or
  invalid bytes in a line, a partial line, a malformed block) → :class:`ProtocolError`;
  pyserial/OS errors (unplugged adapter, closed pty, reset TCP connection) →
  :class:`Disconnected`.
* **No stale answers.** After a timeout or protocol error the transport is *dirty*:
  before the next command it discards pending input and calls the instrument's
  ``resync`` hook (e.g. the cycler's ``SYST:SYNC?`` token echo) so a late reply is never
  taken as the answer to the next command.
* **Retries only where safe.** A query the caller marks ``idempotent`` is retried with
  exponential backoff after a timeout, protocol error or disconnect (reconnecting
  first); commands and non-idempotent queries raise at once.
* **Transcript.** Bytes in and out with timestamps, switchable per instrument.

Worst-case time of one call: ``(1 + retries) × (resync + write + read timeouts)`` plus
backoff and reconnect attempts — all finite and configurable.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import serial

try:  # termios.error is what pyserial lets through from tcdrain() on a dead pty
    from termios import error as termios_error
except ImportError:  # pragma: no cover - not on POSIX
    termios_error = OSError

from voltloop.drivers.block_buffers import SHARED as SHARED_BLOCK_BUFFERS
from voltloop.drivers.errors import Disconnected, ProtocolError, TransportTimeout
from voltloop.drivers.scpi import encode_block, quote, split_fields
from voltloop.drivers.transcript import Direction, Transcript, TranscriptEntry

#: Re-exported: drivers import the transcript and SCPI element helpers from here too.
__all__ = [
    "BlockReply",
    "Direction",
    "Transcript",
    "TranscriptEntry",
    "Transport",
    "encode_block",
    "quote",
    "split_fields",
]

T = TypeVar("T")

#: What pyserial raises when the link is gone (mapped to Disconnected).
_LINK_ERRORS = (serial.SerialException, OSError, termios_error)

#: Bytes a line reply may contain: printable ASCII and TAB.
_LINE_BYTES = frozenset(range(0x20, 0x7F)) | {0x09}
_LINE_BYTES_STR = bytes(sorted(_LINE_BYTES))  # for bytes.translate(None, ...)


@dataclass(frozen=True)
class BlockReply:
    """A reply whose last element is a definite-length block.

    ``prefix`` is the ASCII text before ``#`` (e.g. ``'"uuid",0,12,1A2B3C4D,'``),
    ``data`` the block's bytes: the writable buffer the reply was read into, which no
    other reply will use while anything refers to it (a fresh ``bytearray``; for
    blocks of 1 MB and more a view of a reused one, see
    :mod:`voltloop.drivers.block_buffers`), so a caller may wrap it (``np.frombuffer``)
    without copying.
    """

    prefix: str
    data: bytes | bytearray | memoryview


def _no_delay(port: object) -> None:
    """Switch Nagle's algorithm off on a ``socket://`` port. pyserial leaves it on, so
    a command written just after another one (``START`` then ``SYST:ERR?``) waits
    for the instrument's delayed ACK, about 40 ms on Linux, before it is sent.
    Instruments on a LAN are driven with it off (VISA's TCPIP sockets do the same)."""
    sock = getattr(port, "_socket", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Transport:
    """A bounded-time, line/block framed link to one instrument (see module docstring).

    ``resync`` is called (with this transport) after a timeout or protocol error, before
    the next command, once pending input has been discarded; it may use :meth:`write`
    and :meth:`read_line` but not :meth:`query`. The default waits until the line is
    quiet for ``quiet_s``. ``port_factory`` replaces ``serial_for_url`` (tests use the
    expected-exchange fake port of :mod:`voltloop.drivers.testing`).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        terminator: bytes = b"\n",
        baudrate: int = 115200,
        retries: int = 2,
        backoff_s: float = 0.05,
        reconnect_attempts: int = 4,
        quiet_s: float = 0.05,
        poll_s: float = 0.02,
        max_line_bytes: int = 1 << 20,
        max_block_bytes: int = 1 << 28,
        transcript: Transcript | None = None,
        resync: Callable[[Transport], None] | None = None,
        port_factory: Callable[[], serial.SerialBase] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not terminator:
            raise ValueError("terminator must not be empty")
        self.url = url
        self.timeout_s = timeout_s
        self.terminator = terminator
        self.baudrate = baudrate
        self.retries = retries
        self.backoff_s = backoff_s
        self.reconnect_attempts = reconnect_attempts
        self.quiet_s = quiet_s
        self.poll_s = min(poll_s, timeout_s)
        self.max_line_bytes = max_line_bytes
        self.max_block_bytes = max_block_bytes
        self.transcript = transcript if transcript is not None else Transcript(enabled=False)
        self.resync = resync
        self.port_factory = port_factory
        # pyserial's socket:// in_waiting only says 0 or 1: read greedily instead
        self._greedy = url.startswith("socket://") and port_factory is None
        self.reconnects = 0  # how many times the link was re-established
        self._port: serial.SerialBase | None = None
        self._sock: socket.socket | None = None  # pyserial's socket behind socket://
        self._buf = bytearray()
        self._blocks = SHARED_BLOCK_BUFFERS
        self._dirty = False
        self._was_open = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ connection
    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        """Open the port once; :class:`Disconnected` if it cannot be opened."""
        with self._lock:
            if self.is_open:
                return
            try:
                if self.port_factory is not None:
                    port = self.port_factory()
                else:
                    port = serial.serial_for_url(
                        self.url,
                        baudrate=self.baudrate,
                        timeout=self.poll_s,
                        write_timeout=self.timeout_s,
                    )
            except (*_LINK_ERRORS, ValueError) as exc:
                raise Disconnected(f"cannot open: {exc}", url=self.url) from exc
            self._port = port
            _no_delay(port)
            self._sock = self._raw_socket(port)
            self._buf.clear()
            self._was_open = True
            self.transcript.note("open")

    def close(self) -> None:
        with self._lock:
            port, self._port = self._port, None
            self._sock = None
            self._buf.clear()
            if port is not None:
                with contextlib.suppress(Exception):
                    port.close()
                self.transcript.note("close")

    def reconnect(self) -> None:
        """Close and reopen, with backoff, up to ``reconnect_attempts`` times."""
        with self._lock:
            self.close()
            last: Disconnected | None = None
            for attempt in range(max(1, self.reconnect_attempts)):
                if attempt:
                    time.sleep(self.backoff_s * 2**attempt)
                try:
                    self.open()
                except Disconnected as exc:
                    last = exc
                    continue
                self.reconnects += 1
                self._dirty = True  # whatever the far end had queued is stale now
                return
            assert last is not None
            raise last

    def _ensure_open(self) -> None:
        if self.is_open:
            return
        if self._was_open:
            self.reconnect()
        else:
            self.open()

    def _lost(self, exc: BaseException) -> Disconnected:
        self.close()
        return Disconnected(f"link lost: {exc}", url=self.url)

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ raw I/O
    def write(self, data: bytes) -> None:
        """Write all of ``data`` within ``timeout_s``."""
        self._ensure_open()
        assert self._port is not None
        self.transcript.record(Direction.OUT, data)
        if self._sock is not None:
            self._send_all(data)
            return
        try:
            # no flush(): on POSIX it is tcdrain(), which has no timeout; write() with
            # write_timeout already bounds handing the bytes to the OS
            self._port.write(data)
        except serial.SerialTimeoutException as exc:
            self._dirty = True
            raise TransportTimeout(f"write of {len(data)} bytes timed out", url=self.url) from exc
        except _LINK_ERRORS as exc:
            raise self._lost(exc) from exc

    def _raw_socket(self, port: serial.SerialBase) -> socket.socket | None:
        """The TCP socket behind pyserial's ``socket://`` port, read directly (one
        ``select`` + ``recv_into`` per chunk instead of pyserial's select/recv/extend/copy
        loop and its 0-or-1 ``in_waiting``); None for any other port, which then goes
        through pyserial's ``read``."""
        if not self._greedy:
            return None
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket) and sock.gettimeout() == 0.0:  # non-blocking
            return sock
        return None

    def _recv_into(self, view: memoryview, wait_s: float) -> int:
        """Bytes received into ``view`` within ``wait_s`` (0 if none); raw socket only."""
        assert self._sock is not None
        try:
            # take what has arrived; select only when nothing has (a long block comes in
            # tens of reads, each of which would otherwise pay a select first)
            try:
                got = self._sock.recv_into(view)
            except BlockingIOError:
                ready, _, _ = select.select([self._sock], [], [], wait_s)
                if not ready:
                    return 0
                got = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return 0
        except (OSError, ValueError) as exc:  # ValueError: select on a closed socket
            raise self._lost(exc) from exc
        if not got:
            raise self._lost(EOFError("socket disconnected"))
        return got

    def _send_all(self, data: bytes) -> None:
        """Hand all of ``data`` to the socket within ``timeout_s`` (raw socket only)."""
        assert self._sock is not None
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout_s
        try:
            while view:
                try:
                    sent = self._sock.send(view)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                view = view[sent:]
                if not view:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                select.select([], [self._sock], [], remaining)
        except (OSError, ValueError) as exc:
            raise self._lost(exc) from exc
        self._dirty = True
        raise TransportTimeout(f"write of {len(data)} bytes timed out", url=self.url)

    def _fill(self, want: int = 1) -> None:
        """Read what is available (up to ``want`` bytes if more are known to be due),
        waiting at most one poll slice. ``want`` matters for ``socket://``, whose
        ``in_waiting`` only says 0 or 1."""
        assert self._port is not None
        if self._sock is not None:
            chunk = bytearray(max(1 << 16, min(want, 1 << 22)))
            got = self._recv_into(memoryview(chunk), self.poll_s)
            if got:
                del chunk[got:]
                self.transcript.record(Direction.IN, chunk)
                self._buf += chunk
            return
        try:
            waiting = self._port.in_waiting
            chunk = self._port.read(max(1, waiting, min(want, 1 << 16)))
            if chunk and self._greedy:  # take what else is there without waiting
                chunk += self._read_now()
        except _LINK_ERRORS as exc:
            raise self._lost(exc) from exc
        if chunk:
            self.transcript.record(Direction.IN, chunk)
            self._buf += chunk

    def _fill_into(self, view: memoryview) -> int:
        """Read straight into ``view`` (no intermediate buffer on ``socket://``),
        waiting at most one poll slice; returns the byte count."""
        assert self._port is not None
        if self._sock is not None:
            got = self._recv_into(view, self.poll_s)
        else:
            try:
                waiting = self._port.in_waiting
                chunk = self._port.read(max(1, min(len(view), max(waiting, 1 << 16))))
            except _LINK_ERRORS as exc:
                raise self._lost(exc) from exc
            got = len(chunk)
            view[:got] = chunk
        if got:
            self.transcript.record(Direction.IN, view[:got])
        return got

    def _read_now(self) -> bytes:
        """What has already arrived, without waiting (raises pyserial/OS errors)."""
        assert self._port is not None
        if self._sock is not None:
            chunk = bytearray(1 << 16)
            ready, _, _ = select.select([self._sock], [], [], 0)
            got = self._sock.recv_into(chunk) if ready else 0
            if ready and not got:
                raise OSError("socket disconnected")
            return bytes(chunk[:got])
        waiting = self._port.in_waiting
        if not waiting:
            return b""
        if not self._greedy:
            return self._port.read(waiting)
        self._port.timeout = 0
        try:
            return self._port.read(1 << 16)
        finally:
            self._port.timeout = self.poll_s

    def _read_exactly(self, n: int, deadline: float, what: str) -> bytes:
        """``n`` bytes before ``deadline``; also fails once no byte has come for
        ``timeout_s`` (a cut-off block is reported after one timeout, not after the
        whole allowance of a long block)."""
        stalled_at = time.monotonic() + self.timeout_s
        while len(self._buf) < n:
            now = time.monotonic()
            if now >= deadline or now >= stalled_at:
                got = len(self._buf)
                self._buf.clear()
                self._dirty = True
                if got:
                    raise ProtocolError(f"partial {what}: {got} of {n} bytes", url=self.url)
                raise TransportTimeout(f"no {what} within {self.timeout_s} s", url=self.url)
            before = len(self._buf)
            self._fill(n - len(self._buf))
            if len(self._buf) > before:
                stalled_at = time.monotonic() + self.timeout_s
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_into(self, out: memoryview, deadline: float, what: str) -> None:
        """Fill ``out`` before ``deadline`` (buffered bytes first, then straight from the
        link); the same stall rule as :meth:`_read_exactly`."""
        n = len(out)
        pos = min(n, len(self._buf))
        if pos:
            out[:pos] = self._buf[:pos]
            del self._buf[:pos]
        stalled_at = time.monotonic() + self.timeout_s
        while pos < n:
            now = time.monotonic()
            if now >= deadline or now >= stalled_at:
                self._buf.clear()
                self._dirty = True
                if pos:
                    raise ProtocolError(f"partial {what}: {pos} of {n} bytes", url=self.url)
                raise TransportTimeout(f"no {what} within {self.timeout_s} s", url=self.url)
            got = self._fill_into(out[pos:])
            if got:
                pos += got
                stalled_at = time.monotonic() + self.timeout_s

    def _check_line(self, raw: bytes) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.translate(None, _LINE_BYTES_STR):  # only allowed bytes (the usual case)
            return raw.decode("ascii")
        for pos, byte in enumerate(raw):
            if byte not in _LINE_BYTES:
                self._dirty = True
                raise ProtocolError(
                    f"garbled reply: byte 0x{byte:02X} at position {pos} in {raw[:80]!r}",
                    url=self.url,
                )
        return raw.decode("ascii")

    def read_line(self, timeout_s: float | None = None) -> str:
        """One terminated ASCII line (terminator stripped) within the timeout."""
        self._ensure_open()
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        term = self.terminator
        while True:
            idx = self._buf.find(term)
            if idx >= 0:
                raw = bytes(self._buf[:idx])
                del self._buf[: idx + len(term)]
                return self._check_line(raw)
            if len(self._buf) > self.max_line_bytes:
                self._buf.clear()
                self._dirty = True
                raise ProtocolError(f"line longer than {self.max_line_bytes} bytes", url=self.url)
            if time.monotonic() >= deadline:
                partial = bytes(self._buf)
                self._buf.clear()
                self._dirty = True
                if partial:
                    raise ProtocolError(
                        f"partial line without terminator: {partial[:80]!r}", url=self.url
                    )
                raise TransportTimeout(f"no reply within {self.timeout_s} s", url=self.url)
            self._fill()

    def read_block_reply(self, timeout_s: float | None = None) -> BlockReply:
        """``<ascii prefix>#<n><len><bytes><terminator>`` within the timeout.

        The deadline grows with the announced block length at the line rate
        (10 bits per byte at ``baudrate``), so a long block on a slow port is not cut off.
        """
        self._ensure_open()
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            hash_at = self._buf.find(b"#")
            term_at = self._buf.find(self.terminator)
            if term_at >= 0 and (hash_at < 0 or term_at < hash_at):
                line = self._check_line(bytes(self._buf[:term_at]))
                del self._buf[: term_at + len(self.terminator)]
                self._dirty = True
                raise ProtocolError(f"expected a block reply, got line {line!r}", url=self.url)
            if hash_at >= 0:
                break
            if len(self._buf) > self.max_line_bytes:
                self._buf.clear()
                self._dirty = True
                raise ProtocolError("block reply without '#'", url=self.url)
            if time.monotonic() >= deadline:
                partial = bytes(self._buf)
                self._buf.clear()
                self._dirty = True
                if partial:
                    raise ProtocolError(f"partial block reply: {partial[:80]!r}", url=self.url)
                raise TransportTimeout(f"no reply within {self.timeout_s} s", url=self.url)
            self._fill()
        prefix = self._check_line(bytes(self._buf[:hash_at]))
        del self._buf[: hash_at + 1]
        n_digits = self._read_exactly(1, deadline, "block header")
        if not n_digits.isdigit() or n_digits == b"0":
            self._dirty = True
            raise ProtocolError(f"bad block header digit {n_digits!r}", url=self.url)
        length_raw = self._read_exactly(int(n_digits), deadline, "block length")
        if not length_raw.isdigit():
            self._dirty = True
            raise ProtocolError(f"bad block length {length_raw!r}", url=self.url)
        length = int(length_raw)
        if length > self.max_block_bytes:
            self._buf.clear()
            self._dirty = True
            raise ProtocolError(
                f"block of {length} bytes exceeds max_block_bytes {self.max_block_bytes}",
                url=self.url,
            )
        deadline += length * 10 / max(self.baudrate, 1)
        data = self._blocks.take(length)  # read into once: no copies of the payload after this
        self._read_into(memoryview(data), deadline, "block data")
        end = self._read_exactly(len(self.terminator), deadline, "block terminator")
        if end != self.terminator:
            self._dirty = True
            raise ProtocolError(f"block not followed by terminator: {end!r}", url=self.url)
        return BlockReply(prefix, data)

    def drain(self, quiet_s: float = 0.0) -> bytes:
        """Discard buffered and pending input; with ``quiet_s`` > 0 keep reading until
        the line has been quiet that long (never longer than ``timeout_s``)."""
        self._ensure_open()
        assert self._port is not None
        dropped = bytes(self._buf)
        self._buf.clear()
        deadline = time.monotonic() + self.timeout_s
        last_byte = time.monotonic()
        while True:
            try:
                chunk = self._read_now()
            except _LINK_ERRORS as exc:
                raise self._lost(exc) from exc
            now = time.monotonic()
            if chunk:
                self.transcript.record(Direction.IN, chunk)
                dropped += chunk
                last_byte = now
            elif now - last_byte >= quiet_s or now >= deadline:
                break
            else:
                time.sleep(min(self.poll_s, quiet_s))
        if dropped:
            self.transcript.note(f"discarded {len(dropped)} stale bytes")
        return dropped

    # ------------------------------------------------------------------ exchanges
    def _prepare(self) -> None:
        """Before a command: reopen if needed, discard stale input, resync if dirty."""
        self._ensure_open()
        if self._dirty:
            self.drain(self.quiet_s)
            if self.resync is not None:
                self.resync(self)
            self._dirty = False
        elif self._buf or (self._port is not None and self._port.in_waiting):
            self.drain()

    def _frame(self, command: str | bytes, block: bytes | None) -> bytes:
        data = command.encode("ascii") if isinstance(command, str) else command
        if block is not None:
            data += b" " + encode_block(block)
        return data + self.terminator

    def _call(self, op: Callable[[], T], *, idempotent: bool) -> T:
        attempts = 1 + (self.retries if idempotent else 0)
        with self._lock:
            for attempt in range(attempts):
                last = attempt == attempts - 1
                try:
                    self._prepare()
                    return op()
                except Disconnected:
                    if last:
                        raise
                    time.sleep(self.backoff_s * 2**attempt)
                    self.reconnect()
                except (TransportTimeout, ProtocolError) as exc:
                    self._dirty = True
                    self.transcript.note(f"{type(exc).__name__}: {exc}")
                    if last:
                        raise
                    time.sleep(self.backoff_s * 2**attempt)
            raise AssertionError("unreachable")

    def command(self, command: str | bytes, block: bytes | None = None) -> None:
        """Send a command that has no reply (optionally with a trailing data block)."""
        frame = self._frame(command, block)
        self._call(lambda: self.write(frame), idempotent=False)

    def query(self, command: str | bytes, *, idempotent: bool = False) -> str:
        """Send a query and return its one-line reply."""
        frame = self._frame(command, None)

        def op() -> str:
            self.write(frame)
            return self.read_line()

        return self._call(op, idempotent=idempotent)

    def query_block(
        self,
        command: str | bytes,
        *,
        idempotent: bool = False,
        check: Callable[[BlockReply], T] | None = None,
    ) -> BlockReply | T:
        """Send a query whose reply ends in a definite-length block.

        ``check`` validates/decodes the reply inside the retry loop: a
        :class:`ProtocolError` it raises (e.g. a CRC mismatch) is retried like any other.
        """
        frame = self._frame(command, None)

        def op() -> BlockReply | T:
            self.write(frame)
            reply = self.read_block_reply()
            return check(reply) if check is not None else reply

        return self._call(op, idempotent=idempotent)
