"""Byte links a simulated instrument serves on: TCP and pty, one session at a time.

A :class:`Link` hands out :class:`Connection` s (one host session each) through
:meth:`Link.accept`; a server reads and writes bytes on the connection and may drop it
(the *disconnect* fault). Transport-agnostic: the simulated cycler and potentiostat
servers both use it.

* **TCP** (:class:`TcpLink`): binds ``127.0.0.1`` (port 0 picks a free port; ``url`` is
  ``socket://127.0.0.1:<port>``). A session is one accepted connection; a new
  connection takes over (the old one is closed), so an abandoned connection never
  locks the instrument; a dropped connection is closed and the listener accepts again
  after ``down_s``.
* **pty** (:class:`PtyLink`): ``os.openpty``; the URL is a stable symlink to the slave
  (like ``/dev/serial/by-id/…`` for a USB adapter), so a host can reopen it after a
  disconnect. The server keeps its own slave fd open, so the pty survives the host
  closing and reopening it; one session lasts as long as the pty. Dropping the
  connection closes both fds (the host sees EIO, exactly like an unplugged USB serial
  adapter), removes the symlink, and after ``down_s`` a new pty is created and the
  symlink points at it.

Every read waits at most its timeout; every write gives up after ``write_timeout_s``
(a host that stopped reading cannot wedge the server).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import tempfile
import threading
import time
import tty
from pathlib import Path


class LinkClosedError(EOFError):
    """The host side of the connection is gone."""


class Gather:
    """A reply held as its parts (e.g. a block's header, the record arrays of each
    channel, its terminator), sent with one gathering write where the link can
    (``sendmsg`` on TCP) instead of being joined into one new buffer first: a
    48-channel ``FETC?`` sweep is ~4.6 MB, which a join copies into fresh memory.
    ``bytes(gather)`` is the joined reply."""

    def __init__(self, parts: list[bytes | memoryview]) -> None:
        self.parts = [memoryview(p).cast("B") for p in parts]
        self.nbytes = sum(p.nbytes for p in self.parts)

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


def as_bytes(data: bytes | Gather) -> bytes:
    """A reply as one bytes object."""
    return bytes(data) if isinstance(data, Gather) else data


class Connection:
    """One host session on a link."""

    def recv(self, timeout_s: float) -> bytes:
        """Bytes received within ``timeout_s`` (``b""`` if none); LinkClosedError at EOF."""
        raise NotImplementedError

    def send(self, data: bytes | Gather) -> None:
        """Send all of ``data``; LinkClosedError if the host is gone or stopped reading."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Link:
    """Where a simulated instrument listens; see the module docstring."""

    url: str

    def __init__(self, *, down_s: float = 0.2, write_timeout_s: float = 5.0) -> None:
        self.down_s = down_s
        self.write_timeout_s = write_timeout_s

    def start(self) -> str:
        raise NotImplementedError

    def accept(self, stop: threading.Event) -> Connection | None:
        """Block until a session begins (or ``stop`` is set → None)."""
        raise NotImplementedError

    def drop(self, connection: Connection) -> None:
        """The disconnect fault: end the session abruptly; back after ``down_s``."""
        raise NotImplementedError

    def takeover_pending(self) -> bool:
        """A new host is waiting to connect (TCP): the server ends the current session
        so a leaked or abandoned connection never locks the instrument."""
        return False

    def close(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- TCP
#: Parts per ``sendmsg`` (below the kernel's IOV_MAX of 1024).
_MAX_IOV = 512


class _TcpConnection(Connection):
    def __init__(self, sock: socket.socket, write_timeout_s: float) -> None:
        self.sock = sock
        self.write_timeout_s = write_timeout_s

    def recv(self, timeout_s: float) -> bytes:
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout_s)
            if not ready:
                return b""
            data = self.sock.recv(1 << 18)
        except (OSError, ValueError) as exc:  # ValueError: select() on a closed socket (fd -1)
            raise LinkClosedError(f"connection closed: {exc}") from exc
        if not data:
            raise LinkClosedError("peer closed the connection")
        return data

    def send(self, data: bytes | Gather) -> None:
        try:
            self.sock.settimeout(self.write_timeout_s)
            if isinstance(data, Gather):
                self._send_parts(data.parts)
            else:
                self.sock.sendall(data)
        except (OSError, ValueError) as exc:
            raise LinkClosedError(f"connection closed: {exc}") from exc

    def _send_parts(self, parts: list[memoryview]) -> None:
        """``sendmsg`` until every part is sent (each call sends what fits in the socket
        buffer), within ``write_timeout_s`` in all, as ``sendall``."""
        pending = [p for p in parts if p.nbytes]
        deadline = time.monotonic() + self.write_timeout_s
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"host stopped reading ({self.write_timeout_s} s)")
            self.sock.settimeout(remaining)
            sent = self.sock.sendmsg(pending[:_MAX_IOV])
            while sent and sent >= pending[0].nbytes:
                sent -= pending.pop(0).nbytes
            if sent:
                pending[0] = pending[0][sent:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class TcpLink(Link):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._resume_at = 0.0

    def start(self) -> str:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(4)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.url = f"socket://{self.host}:{self.port}"
        return self.url

    def accept(self, stop: threading.Event) -> Connection | None:
        assert self._listener is not None, "start() first"
        while not stop.is_set():
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                stop.wait(wait)
                continue
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
            except (OSError, ValueError):
                return None  # listener closed
            if ready:
                sock, _ = self._listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _TcpConnection(sock, self.write_timeout_s)
        return None

    def drop(self, connection: Connection) -> None:
        connection.close()
        self._resume_at = time.monotonic() + self.down_s

    def takeover_pending(self) -> bool:
        if self._listener is None or time.monotonic() < self._resume_at:
            return False
        try:
            ready, _, _ = select.select([self._listener], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(ready)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None


# --------------------------------------------------------------------------- pty
class _PtyConnection(Connection):
    def __init__(self, master: int, write_timeout_s: float) -> None:
        self.master = master
        self.write_timeout_s = write_timeout_s

    def recv(self, timeout_s: float) -> bytes:
        try:
            ready, _, _ = select.select([self.master], [], [], timeout_s)
            if not ready:
                return b""
            data = os.read(self.master, 65536)
        except (OSError, ValueError) as exc:  # ValueError: select() on a closed fd
            raise LinkClosedError(f"pty closed: {exc}") from exc
        if not data:
            raise LinkClosedError("pty closed")
        return data

    def send(self, data: bytes | Gather) -> None:
        view = memoryview(as_bytes(data))
        deadline = time.monotonic() + self.write_timeout_s
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkClosedError("host stopped reading the pty")
            try:
                _, ready, _ = select.select([], [self.master], [], min(remaining, 0.1))
                if ready:
                    written = os.write(self.master, view)
                    view = view[written:]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise LinkClosedError(str(exc)) from exc

    def close(self) -> None:
        """The pty's fds belong to the link (:meth:`PtyLink.drop`, :meth:`PtyLink.close`)."""


class PtyLink(Link):
    def __init__(
        self, path: str | Path | None = None, *, name: str = "tty", **kwargs: float
    ) -> None:
        super().__init__(**kwargs)
        if path is None:
            folder = Path(tempfile.mkdtemp(prefix="voltloop-sim-"))
            path = folder / name
            self._own_folder: Path | None = folder
        else:
            self._own_folder = None
        self.path = Path(path)
        self.url = str(self.path)
        self._master: int | None = None
        self._slave: int | None = None
        self._resume_at = 0.0
        self._lock = threading.Lock()

    def _create(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def _destroy(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def start(self) -> str:
        with self._lock:
            self._create()
        return self.url

    @property
    def device(self) -> str | None:
        """The current /dev/pts/N behind the symlink."""
        return os.ttyname(self._slave) if self._slave is not None else None

    def accept(self, stop: threading.Event) -> Connection | None:
        while not stop.is_set():
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                stop.wait(wait)
                continue
            with self._lock:
                if self._master is None:
                    self._create()
                assert self._master is not None
                return _PtyConnection(self._master, self.write_timeout_s)
        return None

    def drop(self, connection: Connection) -> None:
        with self._lock:
            self._destroy()
        self._resume_at = time.monotonic() + self.down_s

    def close(self) -> None:
        with self._lock:
            self._destroy()
        if self._own_folder is not None:
            with contextlib.suppress(OSError):
                self._own_folder.rmdir()


def make_link(kind: str, *, name: str = "tty", **kwargs: float) -> Link:
    """``"tcp"`` or ``"pty"`` (``name``: the pty symlink's file name, e.g. ``cycler``)."""
    if kind == "tcp":
        return TcpLink(**kwargs)  # type: ignore[arg-type]
    if kind == "pty":
        return PtyLink(name=name, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown link {kind!r}; use 'tcp' or 'pty'")
