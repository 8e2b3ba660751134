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
    BUDGET,
    CUTOFF,
    SAFETY,
    TIME,
    Coefficients,
    Phase,
    trajectory,
)
from voltloop.drivers.sim.program import CompiledProtocol, OpKind
from voltloop.drivers.sim.record_buffer import RecordBuffer

#: A voltage scan runs as this many constant-voltage stairs.
SCAN_SEGMENTS = 20
#: Consecutive iterations without progress before a channel is faulted.
STALL_LIMIT = 200


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
        self, voltage_V: float = 1e-4, current_rel: float = 2e-4, temperature_C: float = 0.05
    ) -> None:
        self.voltage_V = voltage_V
        self.current_rel = current_rel
        self.temperature_C = temperature_C


_RUNNING, _WAITING = int(RunState.RUNNING), int(RunState.WAITING_EIS)
_CC, _CV, _SCAN, _EIS = int(OpKind.CC), int(OpKind.CV), int(OpKind.SCAN), int(OpKind.EIS)
_TAG, _LOOP = int(OpKind.TAG), int(OpKind.LOOP)


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
        zero, nan = np.zeros(1), np.full(1, np.nan)
        phase = Phase(
            self.bank, sel, np.zeros(1, bool), zero, zero, nan, nan, zero, np.ones(1),
            (np.full(1, -np.inf), np.full(1, np.inf), np.full(1, np.inf)),
        )  # fmt: skip
        pending: list[tuple] = []
        self._schedule(phase, sel, np.array([1]), np.zeros(1), pending)
        self._flush(pending)

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
        pending: list[tuple] = []
        stalls = 0
        while True:
            self._settle()
            live = (self.run == _RUNNING) | (self.run == _WAITING)
            live &= rem > 1e-9
            if not live.any():
                break
            before = rem.copy()
            pcs = self.pc.copy()
            self._run_phase(live, rem, pending)
            stuck = live & (before - rem < 1e-6) & (self.pc == pcs)
            stalls = stalls + 1 if stuck.any() else 0
            if stalls > STALL_LIMIT:  # never expected; keeps a dry run from hanging
                for c in np.flatnonzero(stuck):
                    self.halt(int(c), RunState.FAULT, f"simulator stalled at step {self.pc[c]}")
                    rem[c] = 0.0
                stalls = 0
        self._flush(pending)

    def _settle(self) -> None:
        """Process zero-time ops until every running channel sits on a timed op."""
        ar = self._ar
        for _ in range(10 * self.max_ops + 10):
            run = self.run == _RUNNING
            if not run.any():
                return
            ended = run & (self.pc >= self.n_ops)
            if ended.any():
                self.run[ended] = RunState.COMPLETED
                self._close_cycle(np.flatnonzero(ended))
                run &= ~ended
            kind = self.k_kind[ar, self.pc]
            tag = run & (kind == _TAG)
            loop = run & (kind == _LOOP)
            eis = run & (kind == _EIS)
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

    def _run_phase(self, m: np.ndarray, rem: np.ndarray, pending: list[tuple]) -> None:
        """One phase solve for every live channel (all step kinds at once)."""
        sel = slice(None) if m.all() else np.flatnonzero(m)
        chs = self._ar[sel]
        pcs = self.pc[sel]
        kind = self.k_kind[chs, pcs]
        value = self.k_value[chs, pcs]
        step_t = self.step_t[sel]
        is_cc = kind == _CC
        is_cv = kind == _CV
        is_scan = kind == _SCAN
        is_eis = kind == _EIS
        t_left = self.k_time[chs, pcs] - step_t
        v_set = np.where(is_cv, value, 0.0)
        if is_scan.any():  # staircase: CV segments of SCAN_SEGMENTS per sweep
            seg = self.k_time[chs, pcs] / SCAN_SEGMENTS
            n_done = np.floor(step_t / np.where(is_scan, seg, 1.0) + 1e-9)
            seg_left = (n_done + 1.0) * seg - step_t
            mid = (n_done + 0.5) * seg
            v_scan = value + np.sign(self.k_volt[chs, pcs] - value) * self.k_curr[chs, pcs] * mid
            v_set = np.where(is_scan, v_scan, v_set)
            t_left = np.where(is_scan, np.minimum(seg_left, t_left), t_left)
        if is_eis.any():
            t_left = np.where(is_eis, self.eis_timeout_s - self.eis_waited[sel], t_left)
        phase = Phase(
            self.bank,
            sel,
            is_cv | is_scan,
            np.where(is_cc, value, 0.0),
            v_set,
            np.where(is_cc, self.k_volt[chs, pcs], np.nan),
            np.where(is_cv, self.k_curr[chs, pcs], np.nan),
            rem[sel],
            t_left,
            (self.v_lo[sel], self.v_hi[sel], self.t_hi[sel]),
        )
        end_t, code = phase.end_t, phase.code
        if is_scan.any():
            finished = step_t + end_t >= self.k_time[chs, pcs] - 1e-9
            code = np.where(is_scan & (code == TIME) & ~finished, BUDGET, code)
        step_done = code != BUDGET
        if self.keep_records:
            self._records(phase, sel, chs, end_t, step_done, pending)
        passed = phase.passed_Ah
        phase.commit()
        rem[sel] -= end_t
        self.step_t[sel] += end_t
        self.exp_t[sel] += end_t
        self.chg[sel] += np.maximum(passed, 0.0)
        self.dis[sel] += np.maximum(-passed, 0.0)
        if is_eis.any():
            self.eis_waited[sel] += np.where(is_eis, end_t, 0.0)
        advance = (code == TIME) | (code == CUTOFF)
        if advance.any():
            done = chs[advance]
            timed_out = done[is_eis[advance]]
            for c in timed_out:
                self.skipped_eis[c].append(int(self.cycle[c]))
            self.run[timed_out] = RunState.RUNNING
            self.pc[done] += 1
            self.step_t[done] = 0.0
        over_cap = (self.chg[sel] > self.max_cap[sel]) | (self.dis[sel] > self.max_cap[sel])
        tripped = (code == SAFETY) | over_cap
        if tripped.any():
            for c, reason in zip(
                chs[tripped],
                self._safety_reasons(chs[tripped], over_cap[tripped], phase.v_end[tripped]),
                strict=True,
            ):
                self.run[c] = RunState.SAFETY_STOPPED
                self.reason[c] = reason
                rem[c] = 0.0

    def _safety_reasons(
        self, chs: np.ndarray, over_cap: np.ndarray, v_end: np.ndarray
    ) -> list[str]:
        out = []
        bank = self.bank
        for c, cap, v in zip(chs, over_cap, v_end, strict=True):
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
        phase: Phase,
        sel: object,
        chs: np.ndarray,
        end_t: np.ndarray,
        step_done: np.ndarray,
        pending: list[tuple],
    ) -> None:
        """Schedule the records that fall inside this phase (every ``record.time_s`` of
        test time, plus one at the end of each step)."""
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
        last_extra = (j == counts[rows] - 1) & (extra[rows] == 1)
        tau = np.where(last_extra, end_t[rows], tau)
        self._schedule(phase, chs, counts, tau, pending)

    def _schedule(
        self,
        phase: Phase,
        chs: np.ndarray,
        counts: np.ndarray,
        tau: np.ndarray,
        pending: list[tuple],
    ) -> None:
        """Reserve record numbers now; evaluate the values in one batch at flush time."""
        meta = np.empty((chs.size, 6))
        meta[:, 0] = chs
        meta[:, 1] = self.rec_count[chs]
        meta[:, 2] = self.exp_t[chs]
        meta[:, 3] = self.cycle[chs]
        meta[:, 4] = self.pc[chs]
        meta[:, 5] = self.chg[chs]
        dis0 = self.dis[chs].copy()
        self.rec_count[chs] += counts
        pending.append((phase.coef, meta, dis0, counts, tau))

    def _flush(self, pending: list[tuple]) -> None:
        """Evaluate all scheduled records of one advance and append them per channel."""
        if not pending:
            return
        coef = np.concatenate([p[0] for p in pending])
        meta = np.concatenate([p[1] for p in pending])
        dis0 = np.concatenate([p[2] for p in pending])
        counts = np.concatenate([p[3] for p in pending])
        tau = np.concatenate([p[4] for p in pending])
        rows = np.repeat(np.arange(counts.size), counts)
        starts = np.cumsum(counts) - counts
        c = Coefficients(coef[rows])
        v, current, temp, q, *_ = trajectory(self.bank, c, tau)
        v = np.where(c.cv > 0, c.v_set, v)
        passed = q - c.q0
        m = meta[rows]
        out = empty_records(rows.size)
        out["record"] = m[:, 1].astype(np.int64) + (np.arange(rows.size) - starts[rows])
        out["t_s"] = m[:, 2] + tau
        out["cycle"] = m[:, 3]
        out["step"] = m[:, 4]
        noise, rng = self.noise, self.rng
        out["voltage_V"] = v + rng.normal(0.0, noise.voltage_V, v.size)
        out["current_A"] = current * (1.0 + rng.normal(0.0, noise.current_rel, v.size))
        out["temperature_C"] = temp + rng.normal(0.0, noise.temperature_C, v.size)
        out["charge_Ah"] = m[:, 5] + np.maximum(passed, 0.0)
        out["discharge_Ah"] = dis0[rows] + np.maximum(-passed, 0.0)
        chans = m[:, 0].astype(np.int64)
        order = np.lexsort((out["record"], chans))
        chans, out = chans[order], out[order]
        per = np.bincount(chans, minlength=self.n)
        bounds = np.cumsum(per)
        for ch in np.flatnonzero(per):
            self.buffers[ch].append(out[bounds[ch] - per[ch] : bounds[ch]])
