"""What the orchestrator depends on: instrument verbs as ``typing.Protocol``s and the
pydantic models of their replies. A new instrument is a new class that satisfies a
protocol; the orchestrator never imports a concrete driver class.

The potentiostat's EIS request and spectrum models (``EisSpec``, ``EisSpectrum``) live
in ``voltloop.drivers.eis``; they are referenced here by name only.
"""

# ruff: noqa: N815 - field names carry SI units (max_current_A, max_temperature_C)

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from voltloop.drivers.records import empty_records

if TYPE_CHECKING:
    from aurora_unicycler import CyclingProtocol

    from voltloop.drivers.eis import EisSpec, EisSpectrum


class InstrumentKind(enum.StrEnum):
    CYCLER = "cycler"
    POTENTIOSTAT = "potentiostat"


class ChannelState(enum.StrEnum):
    """A cycler channel's state as the host sees it (the wire values of
    docs/protocols/cycler.md §4.3)."""

    EMPTY = "empty"
    IDLE = "idle"
    RUNNING = "running"
    WAITING_EIS = "waiting_eis"
    COMPLETED = "completed"
    STOPPED = "stopped"
    SAFETY_STOPPED = "safety_stopped"
    FAULT = "fault"

    @property
    def is_active(self) -> bool:
        """The channel is busy with an experiment (running or paused for EIS)."""
        return self in (ChannelState.RUNNING, ChannelState.WAITING_EIS)

    @property
    def is_final(self) -> bool:
        """The experiment has ended; no more records will come."""
        return self in (
            ChannelState.COMPLETED,
            ChannelState.STOPPED,
            ChannelState.SAFETY_STOPPED,
            ChannelState.FAULT,
        )


class StartOutcome(enum.StrEnum):
    STARTED = "started"
    ALREADY_RUNNING = "already_running"  # same experiment UUID already on the channel


class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstrumentIdentity(_Reply):
    """``*IDN?`` (or the potentiostat's version query), parsed."""

    kind: InstrumentKind
    maker: str
    model: str
    serial: str
    firmware: str
    url: str

    @property
    def idn(self) -> str:
        return f"{self.maker},{self.model},{self.serial},{self.firmware}"


class CyclerLimits(_Reply):
    """``SYST:LIM?``: hard limits shared by every channel of the cycler."""

    channels: int = Field(gt=0)
    max_current_A: float = Field(gt=0)
    min_voltage_V: float
    max_voltage_V: float
    max_temperature_C: float
    max_steps: int = Field(gt=0)
    max_batch: int = Field(gt=0, description="most records one DATA? reply carries")


class SelfTestResult(_Reply):
    """``*TST?``: passed, and the device errors queued by a failing self-test."""

    passed: bool
    code: int
    messages: tuple[str, ...] = ()


class CyclerChannelStatus(_Reply):
    """``CHAN<n>:STAT?`` as the host sees it."""

    channel: int = Field(ge=0)
    state: ChannelState
    experiment_id: uuid.UUID | None = None
    cycle: int = 0
    step: int = 0
    record_count: int = Field(default=0, ge=0, description="index of the next record")
    t_s: float = 0.0
    cell_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RecordBatch:
    """Records fetched from one channel: ``records`` is a structured array of shape
    ``(n,)`` with dtype ``drivers.records.SAMPLE_DTYPE``, indices ``since … next_index−1``
    without gaps. ``experiment_id`` is None if the channel never ran an experiment."""

    channel: int
    experiment_id: uuid.UUID | None
    since: int
    records: np.ndarray = field(default_factory=empty_records)

    @property
    def next_index(self) -> int:
        """The ``since`` to ask for next time."""
        return self.since + len(self.records)


@runtime_checkable
class Cycler(Protocol):
    """A multichannel cycler that runs schedules on the instrument and buffers data."""

    url: str

    def identify(self) -> InstrumentIdentity: ...

    def limits(self) -> CyclerLimits: ...

    def self_test(self) -> SelfTestResult: ...

    def start(
        self,
        channel: int,
        protocol: CyclingProtocol | dict[str, Any] | str,
        experiment_id: uuid.UUID | str,
        *,
        max_temperature_C: float | None = None,
    ) -> StartOutcome:
        """Upload and start; a no-op returning ALREADY_RUNNING if the same experiment
        is already on the channel. Raises InstrumentError if the channel is busy with
        another experiment, empty, faulted, or the protocol is outside the limits."""
        ...

    def status(self, channel: int) -> CyclerChannelStatus: ...

    def fetch(
        self,
        channel: int,
        since: int,
        *,
        experiment_id: uuid.UUID | str | None = None,
        limit: int | None = None,
    ) -> RecordBatch:
        """Records with index ≥ ``since`` (all available, or at most ``limit``).
        Asking again from the last stored index never loses or doubles a record."""
        ...

    def stop(self, channel: int) -> None: ...

    def resume(self, channel: int) -> None:
        """Continue after an EIS checkpoint (``waiting_eis`` → ``running``)."""
        ...

    def reset(self) -> None:
        """Reset the instrument session (error queue, staged schedules); channels keep
        running."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Potentiostat(Protocol):
    """An EIS-capable potentiostat (e.g. PalmSens MethodSCRIPT)."""

    url: str

    def identify(self) -> InstrumentIdentity: ...

    def eis(self, spec: EisSpec) -> EisSpectrum: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...
