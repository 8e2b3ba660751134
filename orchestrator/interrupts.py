"""Ctrl-C between engine steps, never inside one.

A step writes its work in SQL transactions while it talks to instruments. A
``KeyboardInterrupt`` raised inside one of those transactions can leave the SQLite
connection that held it unusable but still holding the database's write lock: the
interrupted statement stays alive in the traceback's frames, so closing the
connection is deferred, and the campaign lease cannot be given up (the release waits
out the busy timeout and fails with "database is locked"). So the engine runs each
step under :func:`interrupts_deferred`: the first Ctrl-C is noted, the step finishes
(every instrument I/O has a bounded timeout), and :class:`StopAfterStep` (a
``KeyboardInterrupt``) is raised after it. A second Ctrl-C stops at once, for an
operator who will not wait, with a plain ``KeyboardInterrupt`` from inside the step.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopAfterStep(KeyboardInterrupt):
    """Ctrl-C taken between steps: nothing is half-written, the database is free."""


NOTICE = "\nCtrl-C: stopping after the current step (press Ctrl-C again to stop at once)\n"


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C until the block ends, then raise :class:`StopAfterStep`.

    Acts only in the main thread and only while SIGINT has Python's default handler;
    an ignored SIGINT, or one that another library handles, is left alone. A block
    that raises keeps its own exception. Blocks nest (the inner one does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    pressed: list[int] = []

    def note(_signum: int, _frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(1)
        sys.stderr.write(NOTICE)
        sys.stderr.flush()

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise StopAfterStep
