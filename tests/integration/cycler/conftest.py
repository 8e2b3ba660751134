"""A small deterministic VirtualLab for the cycler's wire-level tests.

It executes aurora_unicycler protocols step by step with simple linear voltage ramps
(no physics: the physics lab is tested elsewhere), logs a record every
``record.time_s``, pauses at EIS steps, honours loops, and keeps every record so the
tests can compare what the driver fetched with what the instrument produced.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest
from aurora_unicycler import CyclingProtocol

from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.sim.virtual_lab import (
    CellSpec,
    CellTruth,
    ChannelState,
    ChannelStatus,
    InstrumentLimits,
)

CAPACITY_AH = 1.1


@dataclass
class _Channel:
    index: int
    cell: CellSpec | None = None
    state: ChannelState = ChannelState.EMPTY
    experiment_id: str | None = None
    protocol: CyclingProtocol | None = None
    step: int = 0
    step_t: float = 0.0
    t_s: float = 0.0
    next_record_t: float = 0.0
    cycle: int = 0
    loops_done: dict[int, int] = field(default_factory=dict)
    q_ch: float = 0.0
    q_dis: float = 0.0
    reason: str | None = None
    records: list[tuple] = field(default_factory=list)


class FakeLab:
    """VirtualLab stand-in: CC/CV steps last ``until_time_s`` or 600 s / |C-rate|."""

    def __init__(self, channels: int = 4, limits: InstrumentLimits | None = None) -> None:
        self._channels = [_Channel(i) for i in range(channels)]
        self._limits = limits or InstrumentLimits()
        self._now = 0.0
        self._lock = threading.RLock()
        self.resets = 0
        self.faults: list[tuple[int, str]] = []
        self._pstat: int | None = None
        self.temperature_limits: dict[int, float | None] = {}

    # --- properties
    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def limits(self) -> InstrumentLimits:
        return self._limits

    @property
    def now_s(self) -> float:
        return self._now

    # --- loader
    def load_cell(self, channel: int, cell: CellSpec) -> None:
        with self._lock:
            ch = self._channels[channel]
            ch.cell = cell
            ch.state = ChannelState.IDLE

    def unload_cell(self, channel: int) -> None:
        with self._lock:
            self._channels[channel] = _Channel(channel)

    def attach_potentiostat(self, channel: int) -> None:
        self._pstat = channel

    @property
    def potentiostat_channel(self) -> int | None:
        return self._pstat

    def truth(self, channel: int) -> CellTruth:
        cell = self._channels[channel].cell
        assert cell is not None
        return CellTruth(cell.cell_id, CAPACITY_AH, CAPACITY_AH, 1.0, 0.02, 30.0)

    # --- instrument verbs
    def start(self, channel: int, protocol_json: str, experiment_id: str) -> bool:
        with self._lock:
            ch = self._channels[channel]
            if ch.experiment_id == experiment_id and ch.state is ChannelState.RUNNING:
                return False
            if ch.state is ChannelState.EMPTY:
                raise ValueError(f"channel {channel} is empty")
            if ch.state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                raise ValueError(f"channel {channel} busy")
            data = json.loads(protocol_json)
            self.temperature_limits[channel] = (data.pop("voltloop", None) or {}).get(
                "max_temperature_C"
            )
            protocol = CyclingProtocol.model_validate(data)
            cell = ch.cell
            self._channels[channel] = ch = _Channel(channel, cell=cell)
            ch.protocol, ch.experiment_id, ch.state = protocol, experiment_id, ChannelState.RUNNING
            self._skip_zero_time(ch)
            return True

    def stop(self, channel: int) -> None:
        with self._lock:
            ch = self._channels[channel]
            if ch.state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                ch.state, ch.reason = ChannelState.STOPPED, "stopped by host"

    def reset(self) -> None:
        self.resets += 1

    def status(self, channel: int) -> ChannelStatus:
        with self._lock:
            ch = self._channels[channel]
            return ChannelStatus(
                channel=channel,
                state=ch.state,
                experiment_id=ch.experiment_id,
                cell_id=ch.cell.cell_id if ch.cell else None,
                cycle=ch.cycle,
                step=ch.step,
                record_count=len(ch.records),
                t_s=ch.t_s,
                reason=ch.reason,
            )

    def records(self, channel: int, since: int, limit: int = 100_000) -> np.ndarray:
        with self._lock:
            rows = self._channels[channel].records[since : since + limit]
            return np.array(rows, dtype=SAMPLE_DTYPE)

    def all_records(self, channel: int) -> np.ndarray:
        return self.records(channel, 0, 10**9)

    def resume(self, channel: int) -> None:
        with self._lock:
            ch = self._channels[channel]
            if ch.state is not ChannelState.WAITING_EIS:
                raise ValueError("not waiting for EIS")
            ch.state = ChannelState.RUNNING
            ch.step += 1
            ch.step_t = 0.0
            self._skip_zero_time(ch)

    def impedance(self, channel: int, frequencies_Hz: np.ndarray) -> np.ndarray:
        w = 2 * np.pi * np.asarray(frequencies_Hz)
        return 0.02 + 0.01 / (1 + 1j * w * 0.01 * 0.5)

    def open_circuit_voltage(self, channel: int) -> float:
        return 3.3

    def inject_fault(self, channel: int, kind: str) -> None:
        with self._lock:
            ch = self._channels[channel]
            self.faults.append((channel, kind))
            if kind == "hardware":
                ch.state, ch.reason = ChannelState.FAULT, "hardware: injected"
            else:
                ch.state, ch.reason = ChannelState.SAFETY_STOPPED, "over_temperature: injected"

    # --- execution
    def _skip_zero_time(self, ch: _Channel) -> None:
        """Execute tags, loops and EIS pauses until a timed step (or the end)."""
        assert ch.protocol is not None
        method = ch.protocol.method
        while ch.state is ChannelState.RUNNING:
            if ch.step >= len(method):
                ch.state = ChannelState.COMPLETED
                return
            step = method[ch.step]
            kind = step.step
            if kind == "tag":
                ch.step += 1
            elif kind == "impedance_spectroscopy":
                ch.state = ChannelState.WAITING_EIS
            elif kind == "loop":
                done = ch.loops_done.get(ch.step, 1)
                if done < step.cycle_count:
                    ch.loops_done[ch.step] = done + 1
                    target = step.loop_to
                    if isinstance(target, str):
                        target = next(
                            i for i, s in enumerate(method) if getattr(s, "tag", None) == target
                        )
                    else:
                        target -= 1
                    ch.step = target
                    ch.cycle += 1
                    ch.q_ch = ch.q_dis = 0.0
                else:
                    ch.step += 1
            else:
                return

    def _duration(self, ch: _Channel) -> tuple[float, float]:
        step = ch.protocol.method[ch.step]
        current = 0.0
        if step.step == "constant_current":
            current = (step.rate_C or 0.0) * CAPACITY_AH
            if step.current_mA and not step.rate_C:
                current = step.current_mA / 1000
        elif step.step == "constant_voltage":
            current = 0.1
        duration = getattr(step, "until_time_s", None)
        if duration is None:
            duration = 600.0 / max(abs(current) / CAPACITY_AH, 0.1)
        return float(duration), current

    def advance(self, dt_s: float) -> None:
        with self._lock:
            self._now += dt_s
            for ch in self._channels:
                remaining = dt_s
                while ch.state is ChannelState.RUNNING and remaining > 0:
                    duration, current = self._duration(ch)
                    record_dt = ch.protocol.record.time_s
                    left = duration - ch.step_t
                    dt = min(remaining, left, max(ch.next_record_t - ch.t_s, 0.0) or record_dt)
                    ch.t_s += dt
                    ch.step_t += dt
                    remaining -= dt
                    if current > 0:
                        ch.q_ch += current * dt / 3600
                    else:
                        ch.q_dis += -current * dt / 3600
                    if ch.t_s >= ch.next_record_t - 1e-9:
                        soc = min(ch.q_ch - ch.q_dis, CAPACITY_AH) / CAPACITY_AH
                        v = 3.0 + 0.5 * soc + 0.02 * current
                        ch.records.append(
                            (len(ch.records), ch.t_s, ch.cycle, ch.step, v, current,
                             30.0 + abs(current), ch.q_ch, ch.q_dis)
                        )  # fmt: skip
                        ch.next_record_t = ch.t_s + record_dt
                    if ch.step_t >= duration - 1e-9:
                        ch.step += 1
                        ch.step_t = 0.0
                        self._skip_zero_time(ch)


class FakeClock:
    """Advances a lab by ``dt_s`` of virtual time every ``period_s`` of wall time."""

    def __init__(self, lab: FakeLab, dt_s: float = 60.0, period_s: float = 0.002) -> None:
        self.lab, self.dt_s, self.period_s = lab, dt_s, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.lab.advance(self.dt_s)

    def __enter__(self) -> FakeClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def short_protocol(cycles: int = 3, eis: bool = False, record_s: float = 30.0) -> dict:
    """A few-cycle CC charge / CV / rest / CC discharge protocol as JSON-ready dict."""
    method: list[dict] = [
        {"step": "tag", "tag": "cycle"},
        {"step": "constant_current", "rate_C": 2.0, "until_time_s": 600},
        {"step": "constant_voltage", "voltage_V": 3.6, "until_time_s": 300},
        {"step": "open_circuit_voltage", "until_time_s": 120},
        {"step": "constant_current", "rate_C": -2.0, "until_time_s": 600},
    ]
    if eis:
        method.append(
            {
                "step": "impedance_spectroscopy",
                "amplitude_V": 0.005,
                "start_frequency_Hz": 1e4,
                "end_frequency_Hz": 0.1,
            }
        )
    method.append({"step": "loop", "loop_to": "cycle", "cycle_count": cycles})
    protocol = CyclingProtocol.model_validate(
        {
            "sample": {"name": "cell", "capacity_mAh": 1100},
            "record": {"time_s": record_s},
            "safety": {"max_voltage_V": 3.7, "min_voltage_V": 1.9},
            "method": method,
        }
    )
    return protocol.model_dump(mode="json")


@pytest.fixture
def lab() -> FakeLab:
    lab = FakeLab(channels=4)
    for ch in range(3):  # channel 3 stays empty
        lab.load_cell(ch, CellSpec(cell_id=f"cell-{ch}", seed=ch))
    return lab


@pytest.fixture(params=["tcp", "pty"])
def link(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_uuid() -> str:
    return str(uuid.uuid4())


# Test modules cannot import this conftest under --import-mode=importlib: the helpers
# travel as fixtures instead.
@pytest.fixture
def make_protocol():  # noqa: ANN201
    return short_protocol


@pytest.fixture
def clock_type() -> type[FakeClock]:
    return FakeClock


@pytest.fixture
def lab_type() -> type[FakeLab]:
    return FakeLab
