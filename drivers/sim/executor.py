"""Runs compiled unicycler protocols step by step on every channel at once.

The executor keeps, per channel, a program counter into the channel's op table,
the time spent in the current step, loop counters, the cycle index and the
record counter. ``advance(dt)`` moves every running channel forward by ``dt``
seconds of virtual time: it repeatedly lets each channel finish (or continue) its
current timed step with one large-step phase solve per step kind
(phases.py), all channels of a kind in one vectorised call, and handles zero-time
ops (tags, loops, end of protocol, entering an EIS pause) in between.

Cycle index: starts at 0 and increments on every loop pass (a Loop op that jumps
back); ``charge_Ah``/``discharge_Ah`` reset with it.
"""

from __future__ import annotations

import enum

import numpy as np

from voltloop.drivers.records import empty_records
from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.phases import (
    CUTOFF,
    SAFETY,
    TIME,
    ConstantCurrentPhase,
    ConstantVoltagePhase,
    PhaseLimits,
    RestPhase,
    VoltageScanPhase,
)
from voltloop.drivers.sim.program import CompiledProtocol, OpKind
from voltloop.drivers.sim.record_buffer import RecordBuffer


class RunState(enum.IntEnum):
    """Execution state of a channel (the lab maps it to ``ChannelState``)."""

    IDLE = 0
    RUNNING = 1
    WAITING_EIS = 2
    COMPLETED = 3
    STOPPED = 4
    SAFETY_STOPPED = 5
    FAULT = 6


class SensorNoise:
    """Standard deviations of the cycler's measurement noise."""

    def __init__(
        self, voltage_V: float = 3e-4, current_rel: float = 2e-4, temperature_C: float = 0.05
    ) -> None:
        self.voltage_V = voltage_V
        self.current_rel = current_rel
        self.temperature_C = temperature_C


class Executor:
    """Protocol execution for ``bank.n_slots`` channels (arrays shape (n_channels,))."""

    def __init__(
        self,
        bank: CellBank,
        max_ops: int,
        seed: int = 0,
        eis_timeout_s: float = 3600.0,
        noise: SensorNoise | None = None,
        max_records: int | None = None,
        keep_records: bool = True,
    ) -> None:
        n = bank.n_slots
        self.bank = bank
        self.n = n
        self.max_ops = max_ops
        self.eis_timeout_s = eis_timeout_s
        self.noise = noise or SensorNoise()
        self.keep_records = keep_records
        self.rng = np.random.default_rng([seed, 0x5EED])
        self._ar = np.arange(n)
        self.k_kind = np.full((n, max_ops + 1), int(OpKind.TAG), dtype=np.int8)
        self.k_value = np.zeros((n, max_ops + 1))
        self.k_time = np.full((n, max_ops + 1), np.inf)
        self.k_volt = np.full((n, max_ops + 1), np.nan)
        self.k_curr = np.full((n, max_ops + 1), np.nan)
        self.k_target = np.full((n, max_ops + 1), -1, dtype=np.int64)
        self.k_count = np.zeros((n, max_ops + 1), dtype=np.int64)
        self.n_ops = np.zeros(n, dtype=np.int64)
        self.rec_dt = np.full(n, 10.0)
        self.v_lo = np.zeros(n)
        self.v_hi = np.full(n, 5.0)
        self.t_hi = np.full(n, 80.0)
        self.max_cap = np.full(n, np.inf)
        self.run = np.zeros(n, dtype=np.int8)
        self.pc = np.zeros(n, dtype=np.int64)
        self.step_t = np.zeros(n)
        self.exp_t = np.zeros(n)
        self.cycle = np.zeros(n, dtype=np.int64)
        self.loop_ctr = np.zeros((n, max_ops + 1), dtype=np.int64)
        self.chg = np.zeros(n)
        self.dis = np.zeros(n)
        self.eis_waited = np.zeros(n)
        self.reason: list[str | None] = [None] * n
        self.skipped_eis: list[list[int]] = [[] for _ in range(n)]
        self.buffers = [RecordBuffer(max_records) for _ in range(n)]
        self.rec_count = np.zeros(n, dtype=np.int64)
        self.closed = np.zeros(n, dtype=np.int64)  # cycles with a summary
        self.cap_hist = np.zeros((n, 256))
        self.chg_hist = np.zeros((n, 256))

    # --- control ---------------------------------------------------------------------
    def start(self, ch: int, prog: CompiledProtocol) -> None:
        """Load ``prog`` into channel ``ch`` and start it at t = 0 (record 0 at rest)."""
        k = prog.n_ops
        self.k_kind[ch, :] = int(OpKind.TAG)
        self.k_kind[ch, :k] = prog.kind
        self.k_value[ch, :k] = prog.value
        self.k_time[ch, :k] = prog.until_time
        self.k_volt[ch, :k] = prog.until_voltage
        self.k_curr[ch, :k] = prog.until_current
        self.k_target[ch, :k] = prog.loop_target
        self.k_count[ch, :k] = prog.loop_count
        self.n_ops[ch] = k
        self.rec_dt[ch] = prog.record_interval_s
        self.v_lo[ch], self.v_hi[ch] = prog.v_lo, prog.v_hi
        self.t_hi[ch] = prog.max_temperature_C
        self.max_cap[ch] = prog.max_capacity_Ah
        self.pc[ch] = 0
        self.step_t[ch] = self.exp_t[ch] = 0.0
        self.cycle[ch] = 0
        self.loop_ctr[ch, :] = 0
        self.chg[ch] = self.dis[ch] = 0.0
        self.eis_waited[ch] = 0.0
        self.reason[ch] = None
        self.skipped_eis[ch] = []
        self.buffers[ch].clear()
        self.rec_count[ch] = 0
        self.cap_hist[ch, :] = 0.0
        self.closed[ch] = 0
        self.chg_hist[ch, :] = 0.0
        self.run[ch] = RunState.RUNNING
        sel = np.array([ch])
        phase = RestPhase(self.bank, sel, np.zeros(1), np.ones(1))
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        self._emit(phase, sel, np.array([0]), np.zeros(1), pieces)
        self._flush(pieces)

    def halt(self, ch: int, state: RunState, reason: str | None = None) -> None:
        """Stop a channel (host stop, fault, safety) keeping its records."""
        if self.run[ch] in (RunState.RUNNING, RunState.WAITING_EIS):
            self.run[ch] = state
            self.reason[ch] = reason

    def resume(self, ch: int) -> bool:
        """Leave an EIS pause; False if the channel was not waiting."""
        if self.run[ch] != RunState.WAITING_EIS:
            return False
        self.pc[ch] += 1
        self.step_t[ch] = 0.0
        self.run[ch] = RunState.RUNNING
        return True

    def capacities(self, ch: int) -> np.ndarray:
        """Discharge capacity (Ah) of every completed cycle of channel ``ch``."""
        return self.cap_hist[ch, : self.closed[ch]].copy()

    # --- time ------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        """Advance every running channel by ``dt`` seconds."""
        live = (self.run == RunState.RUNNING) | (self.run == RunState.WAITING_EIS)
        if not live.any() or dt <= 0:
            return
        rem = np.where(live, float(dt), 0.0)
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(1_000_000):
            self._settle()
            live = (self.run == RunState.RUNNING) | (self.run == RunState.WAITING_EIS)
            live &= rem > 1e-9
            if not live.any():
                break
            kinds = self.k_kind[self._ar, self.pc]
            for kind in np.unique(kinds[live]):
                m = live & (kinds == kind)
                self._run_phase(OpKind(int(kind)), m, rem, pieces)
        self._flush(pieces)

    def _settle(self) -> None:
        """Process zero-time ops until every running channel sits on a timed op."""
        ar = self._ar
        for _ in range(10 * self.max_ops + 10):
            run = self.run == RunState.RUNNING
            if not run.any():
                return
            ended = run & (self.pc >= self.n_ops)
            if ended.any():
                self.run[ended] = RunState.COMPLETED
                self._close_cycle(np.flatnonzero(ended))
                run &= ~ended
            kind = self.k_kind[ar, self.pc]
            tag = run & (kind == OpKind.TAG)
            loop = run & (kind == OpKind.LOOP)
            eis = run & (kind == OpKind.EIS)
            if not (tag.any() or loop.any() or eis.any() or ended.any()):
                return
            self.pc[tag] += 1
            if loop.any():
                ch = np.flatnonzero(loop)
                pc = self.pc[ch]
                ctr = self.loop_ctr[ch, pc]
                again = ctr + 1 < self.k_count[ch, pc]
                self.loop_ctr[ch, pc] = np.where(again, ctr + 1, 0)
                self.pc[ch] = np.where(again, self.k_target[ch, pc], pc + 1)
                if again.any():
                    self._close_cycle(ch[again])
                    self.cycle[ch[again]] += 1
                    self.chg[ch[again]] = 0.0
                    self.dis[ch[again]] = 0.0
            if eis.any():
                self.run[eis] = RunState.WAITING_EIS
                self.eis_waited[eis] = 0.0
            self.step_t[tag | loop | eis] = 0.0

    def _close_cycle(self, ch: np.ndarray) -> None:
        cyc = self.cycle[ch]
        need = int(cyc.max()) + 1 if ch.size else 0
        if need > self.cap_hist.shape[1]:
            size = max(need, 2 * self.cap_hist.shape[1])
            for name in ("cap_hist", "chg_hist"):
                old = getattr(self, name)
                new = np.zeros((self.n, size))
                new[:, : old.shape[1]] = old
                setattr(self, name, new)
        self.cap_hist[ch, cyc] = self.dis[ch]
        self.closed[ch] = cyc + 1
        self.chg_hist[ch, cyc] = self.chg[ch]

    def _run_phase(
        self,
        kind: OpKind,
        m: np.ndarray,
        rem: np.ndarray,
        pieces: list[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        sel = slice(None) if m.all() else np.flatnonzero(m)
        chs = self._ar[sel]
        pcs = self.pc[sel]
        t_avail = rem[sel]
        t_left = self.k_time[chs, pcs] - self.step_t[sel]
        limits = PhaseLimits(self.v_lo[sel], self.v_hi[sel], self.t_hi[sel])
        bank = self.bank
        if kind == OpKind.CC:
            phase = ConstantCurrentPhase(
                bank, sel, self.k_value[chs, pcs], t_avail, t_left, self.k_volt[chs, pcs], limits
            )
        elif kind == OpKind.CV:
            phase = ConstantVoltagePhase(
                bank, sel, self.k_value[chs, pcs], t_avail, t_left, self.k_curr[chs, pcs], limits
            )
        elif kind == OpKind.REST:
            phase = RestPhase(bank, sel, t_avail, t_left)
        elif kind == OpKind.EIS:
            phase = RestPhase(bank, sel, t_avail, self.eis_timeout_s - self.eis_waited[sel])
        elif kind == OpKind.SCAN:
            phase = VoltageScanPhase(
                bank,
                sel,
                self.k_value[chs, pcs],
                self.k_volt[chs, pcs],
                self.k_curr[chs, pcs],
                self.step_t[sel],
                t_avail,
                limits,
            )
        else:  # pragma: no cover - zero-time ops never reach here
            raise RuntimeError(f"op kind {kind} has no phase")
        end_t, code = phase.end_t, phase.code
        step_done = (code == TIME) | (code == CUTOFF) | (code == SAFETY)
        self._records(phase, sel, chs, end_t, step_done, pieces)
        phase.commit()
        passed = phase.passed_Ah
        rem[sel] -= end_t
        self.step_t[sel] += end_t
        self.exp_t[sel] += end_t
        self.chg[sel] += np.maximum(passed, 0.0)
        self.dis[sel] += np.maximum(-passed, 0.0)
        if kind == OpKind.EIS:
            self.eis_waited[sel] += end_t
        advance = (code == TIME) | (code == CUTOFF)
        if advance.any():
            done = chs[advance]
            if kind == OpKind.EIS:
                for c in done:
                    self.skipped_eis[c].append(int(self.cycle[c]))
                self.run[done] = RunState.RUNNING
            self.pc[done] += 1
            self.step_t[done] = 0.0
        over_cap = (self.chg[sel] > self.max_cap[sel]) | (self.dis[sel] > self.max_cap[sel])
        tripped = (code == SAFETY) | over_cap
        if tripped.any():
            for c, reason in zip(
                chs[tripped], self._safety_reasons(chs[tripped], over_cap[tripped]), strict=True
            ):
                self.run[c] = RunState.SAFETY_STOPPED
                self.reason[c] = reason
                rem[c] = 0.0

    def _safety_reasons(self, chs: np.ndarray, over_cap: np.ndarray) -> list[str]:
        out = []
        bank = self.bank
        for c, cap in zip(chs, over_cap, strict=True):
            last = self.buffers[c].last()
            v = float(last["voltage_V"]) if last is not None else float("nan")
            if cap:
                out.append(f"capacity limit {self.max_cap[c] * 1000:.0f} mAh exceeded")
            elif bank.temp[c] > self.t_hi[c] - 1e-6:
                out.append(
                    f"cell temperature {bank.temp[c]:.1f} C above limit {self.t_hi[c]:.1f} C"
                )
            else:
                out.append(
                    f"voltage {v:.3f} V outside safety range [{self.v_lo[c]:.3f}, "
                    f"{self.v_hi[c]:.3f}] V"
                )
        return out

    # --- records ---------------------------------------------------------------------
    def _records(
        self,
        phase: object,
        sel: object,
        chs: np.ndarray,
        end_t: np.ndarray,
        step_done: np.ndarray,
        pieces: list[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        if not self.keep_records:
            return
        t0 = self.exp_t[sel]
        dt = self.rec_dt[sel]
        k0 = np.floor(t0 / dt + 1e-9)
        k1 = np.floor((t0 + end_t) / dt + 1e-9)
        n_reg = (k1 - k0).astype(np.int64)
        on_grid = np.abs((t0 + end_t) - k1 * dt) < 1e-6
        extra = (step_done & ~(on_grid & (n_reg > 0))).astype(np.int64)
        counts = n_reg + extra
        total = int(counts.sum())
        if total == 0:
            return
        rows = np.repeat(np.arange(chs.size), counts)
        starts = np.cumsum(counts) - counts
        j = np.arange(total) - starts[rows]
        tau = (k0[rows] + 1 + j) * dt[rows] - t0[rows]
        last = j == counts[rows] - 1
        tau = np.where(last & (extra[rows] == 1), end_t[rows], tau)
        self._emit(phase, chs, rows, tau, pieces)

    def _emit(
        self,
        phase: object,
        chs: np.ndarray,
        rows: np.ndarray,
        tau: np.ndarray,
        pieces: list[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        v, i, temp, passed = phase.sample(rows, tau)  # type: ignore[attr-defined]
        ch = chs[rows]
        out = empty_records(rows.size)
        counts = np.bincount(rows, minlength=chs.size)
        starts = np.cumsum(counts) - counts
        out["record"] = self.rec_count[ch] + (np.arange(rows.size) - starts[rows])
        self.rec_count[chs] += counts
        out["t_s"] = self.exp_t[ch] + tau
        out["cycle"] = self.cycle[ch]
        out["step"] = self.pc[ch]
        noise = self.noise
        rng = self.rng
        out["voltage_V"] = v + rng.normal(0.0, noise.voltage_V, v.size)
        out["current_A"] = i * (1.0 + rng.normal(0.0, noise.current_rel, v.size))
        out["temperature_C"] = temp + rng.normal(0.0, noise.temperature_C, v.size)
        out["charge_Ah"] = self.chg[ch] + np.maximum(passed, 0.0)
        out["discharge_Ah"] = self.dis[ch] + np.maximum(-passed, 0.0)
        pieces.append((ch, out))

    def _flush(self, pieces: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Hand the records of one advance to the channel buffers, grouped by channel."""
        if not pieces:
            return
        if len(pieces) == 1:
            chans, recs = pieces[0]
        else:
            chans = np.concatenate([c for c, _ in pieces])
            recs = np.concatenate([r for _, r in pieces])
        order = np.argsort(chans, kind="stable")
        chans, recs = chans[order], recs[order]
        counts = np.bincount(chans, minlength=self.n)
        bounds = np.cumsum(counts)
        for c in np.flatnonzero(counts):
            self.buffers[c].append(recs[bounds[c] - counts[c] : bounds[c]])
