"""``SimulatedLab``: the physics-backed implementation of the ``VirtualLab`` contract.

N cycler channels share one vectorised cell bank (cell_model.py) and one protocol
executor (executor.py); a single re-entrant lock serialises every public method,
so the cycler server, the potentiostat server, the clock thread and tests may call
in from any thread. Time only moves in :meth:`advance` (a ``LabClock`` calls it).

Beyond the contract (simulator-only surface, never on an instrument protocol):
``clear_fault``, ``capacities`` (per-cycle discharge capacity), ``skipped_eis``,
``true_cycle_life`` (fast-forwards a copy of a channel's cell) and
``impedance_parameters``.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

import numpy as np

from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.chemistry import Chemistry, get_chemistry
from voltloop.drivers.sim.degradation import arrhenius
from voltloop.drivers.sim.executor import Executor, RunState, SensorNoise
from voltloop.drivers.sim.impedance_model import ImpedanceParameters, noisy_spectrum
from voltloop.drivers.sim.plugins import load_cell_model, load_material_mapping
from voltloop.drivers.sim.program import compile_protocol
from voltloop.drivers.sim.virtual_lab import (
    CellSpec,
    CellTruth,
    ChannelState,
    ChannelStatus,
    InstrumentLimits,
)

_STATE_OF_RUN = {
    RunState.IDLE: ChannelState.IDLE,
    RunState.RUNNING: ChannelState.RUNNING,
    RunState.WAITING_EIS: ChannelState.WAITING_EIS,
    RunState.COMPLETED: ChannelState.COMPLETED,
    RunState.STOPPED: ChannelState.STOPPED,
    RunState.SAFETY_STOPPED: ChannelState.SAFETY_STOPPED,
    RunState.FAULT: ChannelState.FAULT,
}
_EIS_STATES = (
    ChannelState.WAITING_EIS,
    ChannelState.IDLE,
    ChannelState.COMPLETED,
    ChannelState.STOPPED,
)
FAULT_KINDS = ("hardware", "over_temperature")
#: Records kept per channel by default (a ring, like a hardware cycler's buffer;
#: decision 0034): 200,000 x 48 bytes = 9.6 MB per channel, 23 days at 10 s.
DEFAULT_MAX_RECORDS = 200_000


class SimulatedLab:
    """A virtual battery lab: ``channel_count`` cycler channels and one potentiostat.

    ``max_records_per_channel`` bounds each channel's record memory (the oldest
    records go first; None keeps everything); ``keep_records=False`` produces none
    (physics only). ``seed`` seeds the sensor and EIS noise; cells draw their own
    variation from ``CellSpec.seed``. ``cell_types`` adds or overrides chemistries by name;
    ``cell_model`` (a ``CellModelFactory`` or its import path "pkg.mod:func") picks
    the chemistry of a loaded ``CellSpec`` first; ``material_mapping`` (a
    ``MaterialMapping`` or import path) turns ``CellSpec.material`` into a
    chemistry (default: materials_mapping.default_mapping). See plugins.py.
    """

    def __init__(
        self,
        channel_count: int = 8,
        seed: int = 0,
        limits: InstrumentLimits | None = None,
        *,
        eis_timeout_s: float = 3600.0,
        noise: SensorNoise | None = None,
        max_records_per_channel: int | None = DEFAULT_MAX_RECORDS,
        keep_records: bool = True,
        cell_types: dict[str, Chemistry] | None = None,
        cell_model: Any = None,
        material_mapping: Any = None,
    ) -> None:
        if channel_count < 1:
            raise ValueError(f"channel_count must be >= 1, got {channel_count}")
        self._n = channel_count
        self._seed = seed
        self._limits = limits or InstrumentLimits()
        self._lock = threading.RLock()
        self._now = 0.0
        self.bank = CellBank(channel_count)
        self.executor = Executor(
            self.bank,
            self._limits.max_steps,
            seed=seed,
            eis_timeout_s=eis_timeout_s,
            noise=noise,
            max_records=max_records_per_channel,
            keep_records=keep_records,
        )
        self._eis_rng = np.random.default_rng([seed, 0xE15])
        self._cell_types = dict(cell_types or {})
        if isinstance(cell_model, str):
            cell_model = load_cell_model(cell_model)
        if isinstance(material_mapping, str):
            material_mapping = load_material_mapping(material_mapping)
        self._cell_model = cell_model
        self._material_mapping = material_mapping
        self._specs: list[CellSpec | None] = [None] * channel_count
        self._experiment: list[str | None] = [None] * channel_count
        self._protocol: list[str | None] = [None] * channel_count
        self._potentiostat: int | None = None
        self.reset_count = 0

    # --- contract: properties ------------------------------------------------------
    @property
    def channel_count(self) -> int:
        return self._n

    @property
    def limits(self) -> InstrumentLimits:
        return self._limits

    @property
    def now_s(self) -> float:
        with self._lock:
            return self._now

    @property
    def potentiostat_channel(self) -> int | None:
        with self._lock:
            return self._potentiostat

    # --- instrument verbs ------------------------------------------------------------
    def start(self, channel: int, protocol_json: str, experiment_id: str) -> bool:
        with self._lock:
            self._check_channel(channel)
            state = self._state(channel)
            if self._experiment[channel] == experiment_id and state != ChannelState.IDLE:
                return False  # dispatch is idempotent on the experiment id
            if state == ChannelState.EMPTY:
                raise ValueError(f"channel {channel} is empty: load a cell first")
            if state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                raise ValueError(
                    f"channel {channel} is busy with experiment {self._experiment[channel]}"
                )
            if state == ChannelState.FAULT:
                raise ValueError(f"channel {channel} is in hardware fault; clear it first")
            chem = self.bank.chemistry[channel]
            assert chem is not None
            program = compile_protocol(protocol_json, self._limits, chem.nominal_capacity_Ah)
            self.executor.start(channel, program)
            self._experiment[channel] = experiment_id
            self._protocol[channel] = protocol_json
            return True

    def stop(self, channel: int) -> None:
        with self._lock:
            self._check_channel(channel)
            self.executor.halt(channel, RunState.STOPPED, "stopped by host")

    def reset(self) -> None:
        """Instrument reset: the host session is lost; channels keep running."""
        with self._lock:
            self.reset_count += 1

    def status(self, channel: int) -> ChannelStatus:
        with self._lock:
            self._check_channel(channel)
            ex = self.executor
            spec = self._specs[channel]
            reason = ex.reason[channel]
            skipped = ex.skipped_eis[channel]
            if reason is None and skipped:
                reason = f"skipped EIS checkpoint(s) at cycle(s) {', '.join(map(str, skipped))}"
            return ChannelStatus(
                channel=channel,
                state=self._state(channel),
                experiment_id=self._experiment[channel],
                cell_id=spec.cell_id if spec else None,
                cycle=int(ex.cycle[channel]),
                step=int(ex.pc[channel]),
                record_count=int(ex.rec_count[channel]),
                t_s=ex.elapsed(channel),
                reason=reason,
            )

    def records(self, channel: int, since: int, limit: int = 100_000) -> np.ndarray:
        with self._lock:
            self._check_channel(channel)
            return self.executor.buffers[channel].since(since, limit)

    def resume(self, channel: int) -> None:
        with self._lock:
            self._check_channel(channel)
            if not self.executor.resume(channel):
                raise ValueError(f"channel {channel} is not waiting at an EIS checkpoint")

    # --- potentiostat side -------------------------------------------------------------
    def impedance(self, channel: int, frequencies_Hz: np.ndarray) -> np.ndarray:
        with self._lock:
            self._check_channel(channel)
            state = self._state(channel)
            if state not in _EIS_STATES:
                raise ValueError(
                    f"channel {channel} is {state.value}; EIS needs a cell at rest "
                    f"(waiting_eis, idle, completed or stopped)"
                )
            params = self.impedance_parameters(channel)
            return noisy_spectrum(params, np.asarray(frequencies_Hz, float), self._eis_rng)

    def impedance_parameters(self, channel: int) -> ImpedanceParameters:
        """The element values behind ``impedance`` at the cell's present state."""
        with self._lock:
            self._require_cell(channel)
            bank = self.bank
            p = bank.view(np.array([channel]))
            r0, r1, r2 = bank.resistances(p, p.q, p.temp)
            r_ohm = float(p.r0[0] / arrhenius(p.r0_ea, p.temp, p.t_ref)[0])
            return ImpedanceParameters(
                inductance_H=2.0e-8,
                r_ohm=r_ohm,
                r_sei=0.002 + float(p.r_film[0]),
                tau_sei_s=2.0e-4,
                alpha_sei=0.9,
                r_ct=float(r1[0]),
                tau_ct_s=0.02,
                alpha_ct=0.85,
                r_diff=float(r2[0]),
                tau_diff_s=float(p.tau2[0]),
            )

    def open_circuit_voltage(self, channel: int) -> float:
        with self._lock:
            self._require_cell(channel)
            bank = self.bank
            p = bank.view(np.array([channel]))
            return float((bank.ocv(p, p.q) + p.h + p.v1 + p.v2)[0])

    # --- loader ----------------------------------------------------------------------
    def load_cell(self, channel: int, cell: CellSpec) -> None:
        with self._lock:
            self._check_channel(channel)
            if self._state(channel) in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                raise ValueError(f"channel {channel} is running; stop it before loading a cell")
            chem = self._chemistry_for(cell)
            rng = np.random.default_rng([cell.seed, zlib.crc32(chem.name.encode())])
            soc = float(cell.options.get("initial_soc", 0.0))
            self.executor.open.open[channel] = False  # nothing of the old cell goes on
            self.bank.load(channel, chem, rng, cell.chamber_temperature_C, soc)
            self._specs[channel] = cell
            self._experiment[channel] = None
            self._protocol[channel] = None
            self.executor.run[channel] = RunState.IDLE
            self.executor.reason[channel] = None
            self.executor.buffers[channel].clear()

    def unload_cell(self, channel: int) -> None:
        with self._lock:
            self._check_channel(channel)
            if self._state(channel) in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                raise ValueError(f"channel {channel} is running; stop it before unloading")
            self.executor.open.open[channel] = False
            self.bank.unload(channel)
            self._specs[channel] = None
            self.executor.run[channel] = RunState.IDLE
            if self._potentiostat == channel:
                self._potentiostat = None

    def attach_potentiostat(self, channel: int) -> None:
        with self._lock:
            self._require_cell(channel)
            self._potentiostat = channel

    def truth(self, channel: int) -> CellTruth:
        with self._lock:
            self._require_cell(channel)
            bank = self.bank
            sel = np.array([channel])
            p = bank.view(sel)
            cap = float(bank.capacity(sel)[0])
            r0, r1, _ = bank.resistances(p, p.q, p.temp)
            nominal = float(p.nominal_Ah[0])
            spec = self._specs[channel]
            assert spec is not None
            params = {
                "n_li_Ah": float(p.n_li[0]),
                "c_neg_Ah": float(p.c_neg[0]),
                "c_pos_Ah": float(p.c_pos[0]),
                "q_sei_Ah": float(p.q_sei[0]),
                "q_plated_Ah": float(p.q_pl[0]),
                "lam_neg_Ah": float(p.lam_neg[0]),
                "lam_pos_Ah": float(p.lam_pos[0]),
                "r_film_ohm": float(p.r_film[0]),
                "r0_ohm": float(r0[0]),
                "r1_ohm": float(r1[0]),
                "throughput_Ah": float(p.throughput[0]),
                "state_of_charge": float(p.q[0] / max(cap, 1e-9)),
            }
            return CellTruth(
                cell_id=spec.cell_id,
                capacity_Ah=cap,
                nominal_capacity_Ah=nominal,
                soh=cap / nominal,
                resistance_ohm=float(r0[0] + r1[0]),
                temperature_C=float(p.temp[0]),
                parameters=params,
            )

    # --- time ------------------------------------------------------------------------
    def advance(self, dt_s: float) -> None:
        if dt_s < 0:
            raise ValueError(f"cannot advance by a negative time ({dt_s} s)")
        with self._lock:
            self.executor.advance(dt_s)
            self._now += dt_s

    def inject_fault(self, channel: int, kind: str) -> None:
        with self._lock:
            self._check_channel(channel)
            self.executor.interrupt(channel)  # the open phase ends where it stands
            if kind == "hardware":
                self.executor.run[channel] = RunState.FAULT
                self.executor.reason[channel] = "channel hardware fault"
            elif kind == "over_temperature":
                limit = float(self.executor.t_hi[channel])
                if self.bank.loaded[channel]:
                    self.bank.temp[channel] = limit + 5.0
                self.executor.run[channel] = RunState.SAFETY_STOPPED
                self.executor.reason[channel] = (
                    f"cell temperature {limit + 5.0:.1f} C above limit {limit:.1f} C "
                    "(over-temperature event)"
                )
            else:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")

    # --- simulator-only extras -----------------------------------------------------------
    def clear_fault(self, channel: int) -> None:
        """Operator clears a hardware fault: the channel becomes idle (records kept)."""
        with self._lock:
            self._check_channel(channel)
            if self.executor.run[channel] == RunState.FAULT:
                self.executor.run[channel] = RunState.STOPPED
                self.executor.reason[channel] = "hardware fault cleared by operator"

    def capacities(self, channel: int) -> np.ndarray:
        """Discharge capacity (Ah) of each completed cycle of the current experiment."""
        with self._lock:
            self._check_channel(channel)
            return self.executor.capacities(channel)

    def skipped_eis(self, channel: int) -> list[int]:
        with self._lock:
            return list(self.executor.skipped_eis[channel])

    def protocol_json(self, channel: int) -> str | None:
        with self._lock:
            return self._protocol[channel]

    def true_cycle_life(
        self,
        channel: int,
        protocol_json: str | None = None,
        eol_fraction: float = 0.8,
        max_cycles: int = 5000,
    ) -> int | None:
        """Cycles until the cell in ``channel`` falls below ``eol_fraction`` of nominal
        discharge capacity, running ``protocol_json`` (default: the channel's protocol)
        from the cell's present state on a private copy. None if not reached."""
        from voltloop.drivers.sim.truth import fast_forward_life

        with self._lock:
            self._require_cell(channel)
            proto = protocol_json or self._protocol[channel]
            if proto is None:
                raise ValueError(f"channel {channel} has no protocol to fast-forward")
            bank = CellBank(1)
            bank.copy_slot(self.bank, channel, 0)
        return fast_forward_life(bank, proto, self._limits, eol_fraction, max_cycles)

    # --- helpers ---------------------------------------------------------------------
    def _chemistry_for(self, cell: CellSpec) -> Chemistry:
        if cell.material is not None:
            from voltloop.drivers.sim.materials_mapping import default_mapping

            mapping = self._material_mapping or default_mapping
            return mapping(cell.material)
        if self._cell_model is not None:
            chem = self._cell_model(cell)
            if chem is not None:
                if not isinstance(chem, Chemistry):
                    raise TypeError(
                        f"cell model returned {type(chem).__name__}, expected a Chemistry"
                    )
                return chem
        if cell.kind in self._cell_types:
            return self._cell_types[cell.kind]
        return get_chemistry(cell.kind)

    def _state(self, channel: int) -> ChannelState:
        if not self.bank.loaded[channel]:
            return ChannelState.EMPTY
        return _STATE_OF_RUN[RunState(int(self.executor.run[channel]))]

    def _check_channel(self, channel: int) -> None:
        if not isinstance(channel, int | np.integer) or not 0 <= channel < self._n:
            raise ValueError(f"channel {channel!r} out of range 0..{self._n - 1}")

    def _require_cell(self, channel: int) -> None:
        self._check_channel(channel)
        if not self.bank.loaded[channel]:
            raise ValueError(f"channel {channel} is empty")
