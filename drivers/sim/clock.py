"""``LabClock``: a background thread that moves a lab's virtual time forward.

Three modes (docs/simulator.md, "Clock"):

* real time: ``factor=1.0``; every ``tick_s`` of wall time the lab advances by the
  wall time that really elapsed;
* accelerated: ``factor=k``; the lab advances k times the elapsed wall time;
* as fast as possible: ``factor=None``; the lab advances ``chunk_s`` of virtual
  time per call, back to back, yielding briefly between calls so servers can take
  the lab's lock.

``stop()`` ends the thread cleanly (bounded join). The clock never holds the
lab's lock between advances.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Advanceable(Protocol):
    def advance(self, dt_s: float) -> None: ...


class LabClock:
    """Drives ``lab.advance`` from a daemon thread. Use as a context manager or
    call ``start()``/``stop()``."""

    def __init__(
        self,
        lab: Advanceable,
        factor: float | None = 1.0,
        tick_s: float = 0.05,
        chunk_s: float = 600.0,
        max_step_s: float | None = None,
    ) -> None:
        if factor is not None and factor <= 0:
            raise ValueError(
                f"clock factor must be > 0 or None (as fast as possible), got {factor}"
            )
        if tick_s <= 0 or chunk_s <= 0:
            raise ValueError("tick_s and chunk_s must be > 0")
        self.lab = lab
        self.factor = factor
        self.tick_s = tick_s
        self.chunk_s = chunk_s
        self.max_step_s = max_step_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.virtual_elapsed_s = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LabClock:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-clock", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; waits at most ``timeout_s`` for the current advance."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> LabClock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            if self.factor is None:
                while not self._stop.is_set():
                    self.lab.advance(self.chunk_s)
                    self.virtual_elapsed_s += self.chunk_s
                    time.sleep(0)  # let other threads take the lab's lock
                return
            last = time.monotonic()
            while not self._stop.wait(self.tick_s):
                now = time.monotonic()
                dt = (now - last) * self.factor
                last = now
                if self.max_step_s is not None:
                    dt = min(dt, self.max_step_s)
                self.lab.advance(dt)
                self.virtual_elapsed_s += dt
        except BaseException as exc:  # noqa: BLE001 - reported through .error
            self.error = exc
