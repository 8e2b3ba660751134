"""Process memory tuning for voltloop commands: glibc keeps large freed blocks for reuse.

glibc's ``malloc`` serves large requests (above a threshold that adapts up to 32 MiB)
with fresh ``mmap`` pages and returns them to the kernel on ``free``, so every new
multi-megabyte buffer — a multi-channel record reply (``FETCh?``, ~4.7 MB for 48
channels every 6 h of cycling), the simulator's record arrays, the rows an ingest
builds — is paid for again in page faults, about 2.5 ms per MB on this kind of VM.
:func:`keep_freed_memory` raises the ``mmap`` threshold to 256 MiB and the trim
threshold to 512 MiB (``mallopt``), so such buffers come from the heap and freed ones
are reused (docs/decisions/0084-malloc-reuse.md). A no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 512 << 20


def keep_freed_memory() -> bool:
    """Apply the thresholds; True if glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
