"""Receive buffers for large block replies, reused once nothing refers to them.

A block reply is read straight into one buffer and handed on without a copy (the
cycler driver wraps its rows with ``np.frombuffer``), so a buffer belongs to whoever
holds those rows. A new multi-megabyte buffer costs its page faults on first touch —
about 0.5 ms per MB on this kind of VM, half the cost of a 48-channel ``FETC?`` sweep
(4.6 MB) — while a host that polls every few seconds stores last poll's rows and
drops them. :class:`BlockBuffers` keeps the last few large buffers and hands one out
again when CPython's reference count says that nothing but the pool refers to it any
more (no array, memoryview or slice of it is alive anywhere): rows a caller still
holds are never written over. Small blocks get a fresh ``bytearray`` as before.

The transports of a process share one pool (:data:`SHARED`): a driver opened again,
or the next of several instruments polled in turn, finds buffers already mapped.
"""

from __future__ import annotations

import sys
import threading

#: Blocks of at least this many bytes use pooled buffers.
POOLED_BYTES = 1 << 20
#: ``sys.getrefcount`` of a pooled buffer nothing else refers to: the pool's list, the
#: loop variable and getrefcount's own argument.
_UNREFERENCED = 3


class BlockBuffers:
    """At most ``keep`` reusable buffers for blocks of ``POOLED_BYTES`` or more."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._pool: list[bytearray] = []
        self._lock = threading.Lock()
        self.reused = 0  # buffers handed out again (for tests and benchmarks)

    def take(self, n: int) -> bytearray | memoryview:
        """A writable buffer of exactly ``n`` bytes (contents undefined)."""
        if n < POOLED_BYTES:
            return bytearray(n)
        with self._lock:
            return self._take(n)

    def _take(self, n: int) -> memoryview:
        for buf in self._pool:
            # no larger than twice the block: a small block does not pin a huge buffer
            if n <= len(buf) <= 2 * n and sys.getrefcount(buf) == _UNREFERENCED:
                self.reused += 1
                return memoryview(buf)[:n]
        buf = bytearray(n + n // 4)  # room for the next, slightly longer block
        self._pool.append(buf)
        if len(self._pool) > self.keep:
            self._pool.pop(0)
        return memoryview(buf)[:n]


#: The pool of every transport in this process.
SHARED = BlockBuffers()
