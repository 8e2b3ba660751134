"""The contract between the simulated lab's physics and its wire-level instruments.

``SimulatedLab`` (drivers/sim/lab.py) implements :class:`VirtualLab`: N cycler
channels, each holding at most one virtual cell, executing uploaded
``aurora_unicycler`` protocols on a virtual clock. The simulated cycler server
(drivers/sim/cycler_server.py) and the simulated potentiostat server
(drivers/sim/potentiostat_server.py) only translate bytes to these calls; they
hold no physics. The loader methods (``load_cell``, ``attach_potentiostat``,
``truth``) are the simulator-only control surface — the part a lab operator plays
in a real lab — and are never reachable through an instrument protocol.

Thread-safety: every method may be called from any thread; implementations
serialise access internally. ``advance`` is called by :class:`LabClock`
implementations (a background thread), the rest by servers and tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class ChannelState(enum.StrEnum):
    """What a cycler channel is doing. Reported verbatim on the wire."""

    EMPTY = "empty"  # no cell in the channel
    IDLE = "idle"  # a cell is loaded, nothing running
    RUNNING = "running"
    WAITING_EIS = "waiting_eis"  # paused at an EIS checkpoint until resumed
    COMPLETED = "completed"  # protocol ran to its end
    STOPPED = "stopped"  # stopped by the host
    SAFETY_STOPPED = "safety_stopped"  # a protocol/instrument safety limit tripped
    FAULT = "fault"  # channel hardware fault


@dataclass(frozen=True)
class InstrumentLimits:
    """Hard limits of a cycler channel; a protocol outside them is refused at upload."""

    max_current_A: float = 10.0
    min_voltage_V: float = 0.0
    max_voltage_V: float = 5.0
    max_temperature_C: float = 80.0
    max_steps: int = 256


@dataclass(frozen=True)
class ChannelStatus:
    channel: int
    state: ChannelState
    experiment_id: str | None = None
    cell_id: str | None = None
    cycle: int = 0
    step: int = 0
    record_count: int = 0  # records produced so far by the current experiment
    t_s: float = 0.0  # test time of the current experiment
    reason: str | None = None  # why it stopped/faulted (safety limit, fault kind, ...)


@dataclass(frozen=True)
class CellSpec:
    """What the loader puts in a channel.

    ``kind`` names a cell type ("lfp_graphite_18650", "nmc_graphite_18650") or, for
    materials campaigns, ``material`` carries a pymatgen Structure dict that the
    material mapping turns into cell parameters. ``seed`` draws the cell-to-cell
    variation, so the same (kind, seed) is the same virtual cell.
    """

    cell_id: str
    kind: str = "lfp_graphite_18650"
    seed: int = 0
    material: dict[str, Any] | None = None
    chamber_temperature_C: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellTruth:
    """Simulator-only ground truth about a loaded cell (never on the wire)."""

    cell_id: str
    capacity_Ah: float  # present true capacity
    nominal_capacity_Ah: float
    soh: float  # capacity_Ah / nominal_capacity_Ah
    resistance_ohm: float
    temperature_C: float
    parameters: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class VirtualLab(Protocol):
    """Physics and protocol execution behind the simulated instruments."""

    @property
    def channel_count(self) -> int: ...

    @property
    def limits(self) -> InstrumentLimits: ...

    @property
    def now_s(self) -> float:
        """Virtual time since the lab was created, s."""
        ...

    # --- instrument verbs (the simulated cycler server calls these) ---------------
    def start(self, channel: int, protocol_json: str, experiment_id: str) -> bool:
        """Start ``protocol_json`` (aurora_unicycler CyclingProtocol JSON) on ``channel``.

        Returns False (no-op) if ``experiment_id`` is already running there; raises
        ``ValueError`` with a reason for an invalid protocol, one outside the limits,
        an empty channel, or a channel busy with another experiment.
        """
        ...

    def stop(self, channel: int) -> None: ...

    def reset(self) -> None:
        """Instrument reset: host session state is lost, running channels keep running."""
        ...

    def status(self, channel: int) -> ChannelStatus: ...

    def records(self, channel: int, since: int, limit: int = 100_000) -> np.ndarray:
        """Records with ``record >= since`` of the channel's current (or last)
        experiment, oldest first, at most ``limit`` (dtype drivers.records.SAMPLE_DTYPE)."""
        ...

    def resume(self, channel: int) -> None:
        """Continue after an EIS checkpoint (WAITING_EIS → RUNNING)."""
        ...

    # --- potentiostat side ----------------------------------------------------------
    def impedance(self, channel: int, frequencies_Hz: np.ndarray) -> np.ndarray:
        """Complex impedance (ohm) of the cell in ``channel`` at its present state,
        with measurement noise; the channel must be WAITING_EIS, IDLE or COMPLETED."""
        ...

    def open_circuit_voltage(self, channel: int) -> float: ...

    # --- loader: simulator-only control surface ---------------------------------
    def load_cell(self, channel: int, cell: CellSpec) -> None: ...

    def unload_cell(self, channel: int) -> None: ...

    def attach_potentiostat(self, channel: int) -> None:
        """Route the (single) simulated potentiostat to ``channel``'s cell."""
        ...

    @property
    def potentiostat_channel(self) -> int | None: ...

    def truth(self, channel: int) -> CellTruth: ...

    # --- time ------------------------------------------------------------------------
    def advance(self, dt_s: float) -> None:
        """Advance every channel by ``dt_s`` seconds of virtual time."""
        ...

    def inject_fault(self, channel: int, kind: str) -> None:
        """Put a channel into FAULT ("hardware") or SAFETY_STOPPED ("over_temperature")."""
        ...
