"""Injectable instrument faults for the simulated instruments (transport-agnostic).

A :class:`FaultInjector` decides, once per reply a simulated instrument is about to
send, whether a fault happens and which (per-kind rates, seeded, reproducible), and
:meth:`FaultInjector.plan` turns that decision into a :class:`ReplyPlan` — what bytes to
send, after which delay, and whether to drop the link or reset the session afterwards.
The server only executes the plan, so the cycler and the potentiostat servers share
one fault model whatever their byte protocol or link (pty, TCP).

Fault kinds (docs/protocols/cycler.md §8):

* ``delay``: the reply is sent ``delay_s`` late (past the host's timeout);
* ``drop``: the reply is never sent;
* ``garble``: 1–3 reply bytes are replaced by bytes ≥ 0x80 (always detectable);
* ``partial``: the reply is cut short, without its terminator;
* ``disconnect``: part of the reply, then the link closes (TCP: the connection; pty:
  both fds) and comes back after ``down_s``;
* ``reset``: the reply is lost and session state is cleared; channels keep running;
* ``channel_fault``: a running channel goes to ``fault`` (``VirtualLab.inject_fault``);
* ``over_temperature``: a running channel goes to ``safety_stopped``.

Faults never corrupt data silently: garbling only writes non-ASCII bytes (a line reply
becomes invalid) and changes at least one byte (a block's CRC-32 no longer matches).
Tests make faults deterministic with :meth:`FaultInjector.force`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from voltloop.drivers.sim.links import Gather, as_bytes

T = TypeVar("T")


class FaultKind(StrEnum):
    DELAY = "delay"
    DROP = "drop"
    GARBLE = "garble"
    PARTIAL = "partial"
    DISCONNECT = "disconnect"
    RESET = "reset"
    CHANNEL_FAULT = "channel_fault"
    OVER_TEMPERATURE = "over_temperature"


#: Faults that end an experiment; they are rarer in :meth:`FaultRates.uniform`.
LAB_FAULTS = frozenset({FaultKind.CHANNEL_FAULT, FaultKind.OVER_TEMPERATURE})

#: Relative weights used by ``--faults RATE``: link/wire faults dominate, cell-ending
#: faults are 20× rarer so a dry run with faults still finishes most experiments.
DEFAULT_WEIGHTS: dict[FaultKind, float] = {
    FaultKind.DELAY: 1.0,
    FaultKind.DROP: 1.0,
    FaultKind.GARBLE: 1.0,
    FaultKind.PARTIAL: 1.0,
    FaultKind.DISCONNECT: 0.5,
    FaultKind.RESET: 0.5,
    FaultKind.CHANNEL_FAULT: 0.05,
    FaultKind.OVER_TEMPERATURE: 0.05,
}


@dataclass(frozen=True)
class FaultRates:
    """Probability per reply of each fault kind; their sum must not exceed 1."""

    rates: dict[FaultKind, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            FaultKind(kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind} must be in [0, 1], got {rate}")
        total = sum(self.rates.values())
        if total > 1.0 + 1e-12:
            raise ValueError(f"fault rates sum to {total:.3f} > 1")

    @classmethod
    def uniform(cls, rate: float, weights: dict[FaultKind, float] | None = None) -> FaultRates:
        """Total fault probability ``rate`` per reply, split by ``weights``."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {rate}")
        weights = DEFAULT_WEIGHTS if weights is None else weights
        total = sum(weights.values())
        return cls({FaultKind(k): rate * w / total for k, w in weights.items()})

    @property
    def total(self) -> float:
        return sum(self.rates.values())


@dataclass(frozen=True)
class FaultEvent:
    time: float  # POSIX time, s
    kind: FaultKind
    context: str  # the command (or other context) whose reply was faulted


@dataclass(frozen=True)
class ReplyPlan:
    """What a server does with one reply.

    Order: sleep ``delay_s``; send ``send`` (if not None); then close the link if
    ``disconnect``; clear session state if ``reset``; inject ``lab_fault`` into a
    running channel if set.
    """

    send: bytes | Gather | None
    delay_s: float = 0.0
    disconnect: bool = False
    reset: bool = False
    lab_fault: FaultKind | None = None
    kind: FaultKind | None = None


@dataclass
class _Forced:
    kind: FaultKind
    match: str | None
    remaining: int
    skip: int = 0


class FaultInjector:
    """Decides per reply which fault (if any) happens; seeded and thread-safe.

    ``delay_s`` is how late a delayed reply comes (choose it above the host timeout);
    ``down_s`` how long a disconnected link stays down.
    """

    def __init__(
        self,
        rates: FaultRates | None = None,
        *,
        seed: int = 0,
        delay_s: float = 3.0,
        down_s: float = 0.2,
    ) -> None:
        self.rates = rates or FaultRates()
        self.delay_s = delay_s
        self.down_s = down_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._forced: list[_Forced] = []
        self.events: list[FaultEvent] = []
        self.decisions = 0  # messages decided on while enabled
        self.enabled = True

    @property
    def counts(self) -> Counter[FaultKind]:
        with self._lock:
            return Counter(e.kind for e in self.events)

    def force(
        self,
        kind: FaultKind | str,
        *,
        match: str | None = None,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Make ``times`` replies whose context starts with ``match`` (case-insensitive;
        None = any) suffer ``kind``, after letting ``after`` matching replies through.
        Forced faults come before random ones."""
        with self._lock:
            self._forced.append(_Forced(FaultKind(kind), match and match.upper(), times, after))

    def clear(self) -> None:
        with self._lock:
            self._forced.clear()

    def decide(self, context: str = "") -> FaultKind | None:
        """The fault for the reply to ``context`` (a command), or None."""
        with self._lock:
            if not self.enabled:
                return None
            self.decisions += 1
            kind = self._take_forced(context.upper())
            if kind is None and self.rates.total > 0:
                draw = self._rng.random()
                acc = 0.0
                for k, rate in self.rates.rates.items():
                    acc += rate
                    if draw < acc:
                        kind = FaultKind(k)
                        break
            if kind is not None:
                self.events.append(FaultEvent(time.time(), kind, context))
            return kind

    def _take_forced(self, context: str) -> FaultKind | None:
        for forced in self._forced:
            if forced.match is None or context.startswith(forced.match):
                if forced.skip > 0:
                    forced.skip -= 1
                    return None
                forced.remaining -= 1
                if forced.remaining <= 0:
                    self._forced.remove(forced)
                return forced.kind
        return None

    def plan(self, reply: bytes | Gather | None, context: str = "") -> ReplyPlan:
        """Decide and build the plan for ``reply`` (None: the command has no reply;
        only link, session and lab faults can then apply)."""
        kind = self.decide(context)
        if kind is None:
            return ReplyPlan(reply)
        if reply is not None and kind in (
            FaultKind.GARBLE,
            FaultKind.PARTIAL,
            FaultKind.DISCONNECT,
        ):
            reply = as_bytes(reply)  # these faults rewrite the reply's bytes
        if reply is None and kind in (
            FaultKind.DELAY,
            FaultKind.DROP,
            FaultKind.GARBLE,
            FaultKind.PARTIAL,
        ):
            return ReplyPlan(None, kind=kind)
        match kind:
            case FaultKind.DELAY:
                return ReplyPlan(reply, delay_s=self.delay_s, kind=kind)
            case FaultKind.DROP:
                return ReplyPlan(None, kind=kind)
            case FaultKind.GARBLE:
                assert isinstance(reply, bytes)
                return ReplyPlan(self.garble(reply), kind=kind)
            case FaultKind.PARTIAL:
                assert isinstance(reply, bytes)
                return ReplyPlan(self.truncate(reply), kind=kind)
            case FaultKind.DISCONNECT:  # the cable goes mid-reply
                cut = self.truncate(reply) if reply else None
                return ReplyPlan(cut, disconnect=True, kind=kind)
            case FaultKind.RESET:
                return ReplyPlan(None, reset=True, kind=kind)
            case _:
                return ReplyPlan(reply, lab_fault=kind, kind=kind)

    # ------------------------------------------------------------------ byte helpers
    def garble(self, reply: bytes) -> bytes:
        """Replace 1–3 bytes (never the same value) with bytes in 0x80–0xFF."""
        if not reply:
            return bytes([0xFF])
        out = bytearray(reply)
        with self._lock:
            n = self._rng.randint(1, min(3, len(out)))
            positions = self._rng.sample(range(len(out)), n)
            for pos in positions:
                new = self._rng.randint(0x80, 0xFF)
                if new == out[pos]:
                    new = 0x80 | ((new + 1) & 0x7F)
                out[pos] = new
        return bytes(out)

    def truncate(self, reply: bytes, terminator: bytes = b"\n") -> bytes:
        """A non-empty prefix of ``reply`` without its terminator."""
        body = reply[: -len(terminator)] if reply.endswith(terminator) else reply
        if len(body) <= 1:
            return body
        with self._lock:
            cut = self._rng.randint(1, len(body) - 1)
        return body[:cut]

    def pick(self, options: Sequence[T]) -> T | None:
        """A seeded choice (e.g. which running channel a lab fault hits)."""
        if not options:
            return None
        with self._lock:
            return self._rng.choice(list(options))
