"""Runs compiled unicycler protocols step by step on every channel at once.

The executor keeps, per channel, a program counter into the channel's op table,
the time spent in the current step, loop counters, the cycle index and the
record counter. ``advance(dt)`` moves every running channel forward by ``dt``
seconds of virtual time: it repeatedly lets every live channel finish (or continue)
its current timed step — or a chain of steps (decisions 0033, 0037) — in one vectorised
phase solve for all channels and step kinds (phases.py), and handles zero-time ops
(tags, loops, end of protocol, entering an EIS pause) in between. The records of an
advance are scheduled during the solves and evaluated at its end (record_batch.py).

Cycle index: starts at 0 and increments on every loop pass (a Loop op that jumps
back); ``charge_Ah``/``discharge_Ah`` reset with it.
"""

from __future__ import annotations

import enum

import numpy as np

from voltloop.drivers.sim.cell_model import ROW, CellBank
from voltloop.drivers.sim.degradation import apply_ageing
from voltloop.drivers.sim.op_tables import (
    O_CV,
    O_ICUT,
    O_ISET,
    O_KIND,
    O_SPECIAL,
    O_TIME,
    O_VCUT,
    O_VSET,
    OpTables,
)
from voltloop.drivers.sim.open_phases import PHASE_MAX_S, OpenPhases, PhasePlan
from voltloop.drivers.sim.phases import (
    AGED_ROWS,
    BUDGET,
    RANGE,
    SAFETY,
    TIME,
    C,
    Phase,
    trajectory,
)
from voltloop.drivers.sim.program import CompiledProtocol, OpKind
from voltloop.drivers.sim.record_batch import RecordBatch, SensorNoise
from voltloop.drivers.sim.record_buffer import RecordBuffer

__all__ = ["Executor", "RunState", "SensorNoise"]

#: A voltage scan runs as this many constant-voltage stairs.
SCAN_SEGMENTS = 20
#: Most steps one phase solve chains (a CC, CV or rest step whose end is known, then
#: CC and rest steps; decisions 0033, 0037). An Attia cycle is three chains: CC1 ..
#: CC4 -> 1C CC, CV -> rest -> 4C discharge, CV -> rest.
MAX_CHAIN = 6
#: Cost of a phase solve's bookkeeping in units of one chain segment's solve (measured
#: ~300 us against ~330 us; 2 keeps 48 channels of one protocol in three solves per
#: Attia cycle), which sets how far _plan lets chains run (decision 0037).
SOLVE_COST = 2.0
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


_RUNNING, _WAITING = int(RunState.RUNNING), int(RunState.WAITING_EIS)
_SCAN, _EIS = int(OpKind.SCAN), int(OpKind.EIS)
_TAG, _LOOP = int(OpKind.TAG), int(OpKind.LOOP)
#: Which run states advance with the clock (indexed by RunState value).
_LIVE_STATE = np.array([s in (RunState.RUNNING, RunState.WAITING_EIS) for s in RunState])
_Q, _TEMP, _V1, _V2, _H = ROW["q"], ROW["temp"], ROW["v1"], ROW["v2"], ROW["h"]
_THROUGHPUT = ROW["throughput"]


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
        from voltloop.drivers.sim.compiled import warm_up

        warm_up()  # the compiled solve, loaded before any command needs it
        n = bank.n_slots
        self.bank = bank
        self.n = n
        self.max_ops = max_ops
        self.eis_timeout_s = eis_timeout_s
        self.noise = noise or SensorNoise()
        self.keep_records = keep_records
        self.rng = np.random.default_rng([seed, 0x5EED])
        # per channel and experiment: the key of its sensor-noise stream (record_batch)
        self.noise_key = np.zeros(n, dtype=np.uint64)
        self._ar = np.arange(n)
        self.table = OpTables(n, max_ops)  # the channels' programs (op_tables.py)
        t = self.table
        self.k_kind, self.k_value, self.k_time, self.k_volt = t.kind, t.value, t.time, t.volt
        self.k_curr, self.k_target, self.k_count, self.n_ops = t.curr, t.target, t.count, t.n_ops
        self.k_zero, self.k_chain, self.k_ops = t.zero, t.chain, t.ops
        self.rec_dt = np.full(n, 10.0)
        self.limits = np.array([[0.0], [5.0], [80.0]]).repeat(n, axis=1)  # (3, n)
        self.v_lo, self.v_hi, self.t_hi = self.limits  # row views: V, V, degC
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
        self._capped = False  # any channel with a capacity safety limit
        self.open = OpenPhases(n, MAX_CHAIN)  # phases that outlive an advance (0036)
        self._phase_max = np.full(n, PHASE_MAX_S)

    # --- control ---------------------------------------------------------------------
    def start(self, ch: int, prog: CompiledProtocol) -> None:
        """Load ``prog`` into channel ``ch`` and start it at t = 0 (record 0 at rest)."""
        self.table.load(ch, prog, MAX_CHAIN)
        self.rec_dt[ch] = prog.record_interval_s
        self.limits[:, ch] = prog.v_lo, prog.v_hi, prog.max_temperature_C
        self.max_cap[ch] = prog.max_capacity_Ah
        self._capped = bool(np.isfinite(self.max_cap).any())
        self.open.open[ch] = False
        self.noise_key[ch] = self.rng.integers(0, 2**63, dtype=np.uint64)
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
        zero, nan = np.zeros((1, 1)), np.full((1, 1), np.nan)
        phase = Phase(
            self.bank, sel, np.zeros((1, 1), bool), zero, zero, nan, nan, zero[0],
            np.ones((1, 1)), (np.full(1, -np.inf), np.full(1, np.inf), np.full(1, np.inf)),
        )  # fmt: skip
        pending = RecordBatch()
        self.rec_count[sel] += pending.schedule(
            phase.coefs, sel, self.rec_count[sel], zero, self.rec_dt[sel], zero,
            np.ones((1, 1), bool), (self.cycle[sel][None], self.pc[sel][None], zero, zero),
        )  # fmt: skip
        self._flush(pending)

    def halt(self, ch: int, state: RunState, reason: str | None = None) -> None:
        """Stop a channel (host stop, fault, safety) keeping its records."""
        if self.run[ch] in (RunState.RUNNING, RunState.WAITING_EIS):
            self.interrupt(ch)
            self.run[ch] = state
            self.reason[ch] = reason

    def resume(self, ch: int) -> bool:
        """Leave an EIS pause; False if the channel was not waiting."""
        if self.run[ch] != RunState.WAITING_EIS:
            return False
        self.interrupt(ch)
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
        if not np.count_nonzero(live) or dt <= 0:
            return
        rem = np.where(live, float(dt), 0.0)
        pending = RecordBatch()
        stalls = 0
        while True:
            self._settle()
            live = _LIVE_STATE[self.run]
            live &= rem > 1e-9
            if not np.count_nonzero(live):
                break
            before = rem.copy()
            pcs = self.pc.copy()
            going = live & self.open.open  # phases planned in an earlier advance go on
            fresh = live & ~going
            if np.count_nonzero(going):
                chs = going.nonzero()[0]
                self._progress(chs, self.open.gather(chs), self.open.el[chs], rem, pending)
            if np.count_nonzero(fresh):
                planned = self._plan(fresh, rem, pending)
                going[planned] = True  # the channels that ran in this iteration
            stuck = going & (before - rem < 1e-3) & (self.pc == pcs)
            stalls = stalls + 1 if np.count_nonzero(stuck) else 0
            if stalls > STALL_LIMIT:  # never expected; keeps a dry run from hanging
                for c in stuck.nonzero()[0]:
                    self.halt(int(c), RunState.FAULT, f"simulator stalled at step {self.pc[c]}")
                    rem[c] = 0.0
                stalls = 0
        self._flush(pending)

    def _settle(self) -> None:
        """Process zero-time ops until every running channel sits on a timed op."""
        ar = self._ar
        run = self.run == _RUNNING
        if not np.count_nonzero(run & self.k_zero[ar, self.pc]):
            return  # the common case: every running channel is on a timed op
        for _ in range(10 * self.max_ops + 10):
            run = self.run == _RUNNING
            if not np.count_nonzero(run):
                return
            ended = run & (self.pc >= self.n_ops)
            if np.count_nonzero(ended):
                self.run[ended] = RunState.COMPLETED
                self._close_cycle(ended.nonzero()[0])
                run &= ~ended
            kind = self.k_kind[ar, self.pc]
            tag = run & (kind == _TAG)
            loop = run & (kind == _LOOP)
            eis = run & (kind == _EIS)
            if not np.count_nonzero(tag | loop | eis | ended):
                return
            self.pc[tag] += 1
            if np.count_nonzero(loop):
                ch = loop.nonzero()[0]
                pc = self.pc[ch]
                ctr = self.loop_ctr[ch, pc]
                again = ctr + 1 < self.k_count[ch, pc]
                self.loop_ctr[ch, pc] = np.where(again, ctr + 1, 0)
                self.pc[ch] = np.where(again, self.k_target[ch, pc], pc + 1)
                if np.count_nonzero(again):
                    self._close_cycle(ch[again])
                    self.cycle[ch[again]] += 1
                    self.chg[ch[again]] = 0.0
                    self.dis[ch[again]] = 0.0
            if np.count_nonzero(eis):
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

    def _plan(self, m: np.ndarray, rem: np.ndarray, pending: RecordBatch) -> np.ndarray:
        """Plan a phase for channels of mask ``m`` from their current step to the
        phase's natural end — each runs its step and, where the step's end is known in
        advance, the CC/rest steps that follow (a chain) — and run it for up to ``rem``;
        returns the channels planned.

        A chain is the same as step-by-step solves (decision 0037), so how far each
        channel's chain runs in one solve never changes its physics, only the cost:
        every fresh channel is planned, with its chain cut to the segment count S that
        gives the most steps per unit of cost (SOLVE_COST + S), since a solve costs
        every channel as many segments as the longest chain in it."""
        chs = m.nonzero()[0]
        pcs = self.pc[chs]
        chain = self.k_chain[chs, pcs]
        n_seg = int(chain.max())
        if n_seg > 1:
            # every fresh channel, each chain cut to the segment count that gives the
            # most steps per unit of cost (a solve costs about SOLVE_COST + S segments);
            # cutting a chain does not change the physics (decision 0037)
            counts = np.arange(1, n_seg + 1)
            steps = np.minimum(chain, counts[:, None]).sum(axis=1)
            n_seg = int(counts[np.argmax(steps / (SOLVE_COST + counts))])
            chain = np.minimum(chain, n_seg)
        ops, valid = self.table.segments(chs, pcs, chain, n_seg)  # (F, S, m)
        step_t = self.step_t[chs]
        k_time = ops[O_TIME, 0]
        t_left = ops[O_TIME].copy()
        t_left[0] -= step_t
        v_set = ops[O_VSET]
        any_scan = any_eis = False
        if np.count_nonzero(ops[O_SPECIAL, 0]):
            kind = ops[O_KIND, 0]
            is_scan, is_eis = kind == _SCAN, kind == _EIS
            any_scan, any_eis = np.count_nonzero(is_scan) > 0, np.count_nonzero(is_eis) > 0
        if any_scan:  # staircase: CV segments of SCAN_SEGMENTS per sweep
            value = self.k_value[chs, pcs]
            seg = k_time / SCAN_SEGMENTS
            n_done = np.floor(step_t / np.where(is_scan, seg, 1.0) + 1e-9)
            seg_left = (n_done + 1.0) * seg - step_t
            mid = (n_done + 0.5) * seg
            v_scan = value + np.sign(self.k_volt[chs, pcs] - value) * self.k_curr[chs, pcs] * mid
            v_set = v_set.copy()
            v_set[0] = np.where(is_scan, v_scan, v_set[0])
            t_left[0] = np.where(is_scan, np.minimum(seg_left, t_left[0]), t_left[0])
        if any_eis:
            t_left[0] = np.where(is_eis, self.eis_timeout_s - self.eis_waited[chs], t_left[0])
        limits = self.limits[:, chs]
        phase = Phase(
            self.bank,
            chs,
            ops[O_CV] > 0.0,
            ops[O_ISET],
            v_set,
            ops[O_VCUT],
            ops[O_ICUT],
            self._phase_max[: chs.size],
            t_left,
            (limits[0], limits[1], limits[2]),
            valid,
        )
        code, seg_done = phase.code, phase.seg_done
        if any_scan:  # a scan stair that ends in time is not the end of the scan
            finished = step_t + phase.end_t >= k_time - 1e-9
            code = np.where(is_scan & (code == TIME) & ~finished, BUDGET, code)
            seg_done[0] &= code != BUDGET
        plan = PhasePlan.from_phase(phase, code, seg_done)
        self._progress(chs, plan, None, rem, pending)
        return chs

    def _progress(
        self,
        chs: np.ndarray,
        p: PhasePlan,
        el: np.ndarray | None,
        rem: np.ndarray,
        pending: RecordBatch,
    ) -> None:
        """Run the phases ``p`` of channels ``chs`` (m,) from ``el`` s into them (None:
        fresh plans, from their start) for up to ``rem[chs]`` s: records of that stretch,
        then either the phase's end (state, ageing, step counters, safety) or, if the
        advance ends first, the state at the advance's end, keeping the plan for the
        next advance."""
        fresh = el is None
        left = p.end_t if fresh else p.end_t - el
        avail = rem[chs]
        fin = left <= avail + 1e-9
        new_el = np.where(fin, p.end_t, avail if fresh else el + avail)
        whole = np.count_nonzero(fin) == chs.size
        if self.keep_records:  # the records of every segment, in one batch
            part = None if fresh and whole else (el, new_el, fin)
            counts = pending.schedule_plan(
                p, chs, self.rec_count[chs], self.exp_t[chs], self.rec_dt[chs],
                (self.cycle[chs], self.pc[chs], self.chg[chs], self.dis[chs]), part,
            )  # fmt: skip
            self.rec_count[chs] += counts
        if np.count_nonzero(fin) == chs.size:
            self._finish(chs, p, left, rem)
            return
        part = (~fin).nonzero()[0]
        pch = chs[part]
        self._at(pch, p.take(part), new_el[part])
        rem[pch] = 0.0
        if fresh:  # keep the plan
            self.open.store(pch, p.take(part), new_el[part])
        else:
            self.open.el[pch] = new_el[part]
        done = fin.nonzero()[0]
        if done.size:
            self._finish(chs[done], p.take(done), left[done], rem)

    def _at(self, chs: np.ndarray, p: PhasePlan, el: np.ndarray) -> None:
        """Write the state ``el`` s into the phases ``p`` to the cells of ``chs``."""
        q, temp, v1, v2, h = p.state_at(el)
        data = self.bank.data
        data[_Q, chs], data[_TEMP, chs], data[_V1, chs], data[_V2, chs], data[_H, chs] = (
            q, temp, v1, v2, h
        )  # fmt: skip

    def _finish(self, chs: np.ndarray, p: PhasePlan, left: np.ndarray, rem: np.ndarray) -> None:
        """End the phases ``p`` of channels ``chs``: end state and ageing to the cells,
        step counters, EIS waits and safety stops; ``left`` s of them ran now."""
        if p.phase is not None:
            p.phase.commit()  # fields gathered at the solve, unchanged since
        else:
            d = self.bank.data[:, chs]
            d[AGED_ROWS] = p.aged_end
            q, d[_TEMP], d[_V1], d[_V2], d[_H] = p.end
            d[_THROUGHPUT] += np.abs(p.passed[p.seg_end, np.arange(chs.size)])
            apply_ageing(d, q, *p.ageing)
            self.bank.data[:, chs] = d
        self.open.open[chs] = False
        end_t, code, seg_end = p.end_t, p.code, p.seg_end
        seg_done = p.seg_done
        n_done = seg_done.sum(axis=0)
        rows = np.arange(chs.size)
        last = p.seg_t[seg_end, rows]
        every = chs.size == self.n
        sel = slice(None) if every else chs
        step_t = self.step_t[sel]
        pcs = self.pc[chs]  # a copy (sel may be a slice, whose view the update changes)
        gained = np.maximum(p.passed, 0.0)
        self.step_t[sel] = np.where(
            n_done == 0, step_t + end_t, np.where(n_done > seg_end, 0.0, last)
        )
        rem[sel] -= left
        self.exp_t[sel] += end_t
        self.chg[sel] += gained.sum(axis=0)
        self.dis[sel] += (gained - p.passed).sum(axis=0)
        self.pc[sel] = pcs + n_done
        is_eis = self.run[chs] == _WAITING  # waiting channels run their EIS op
        if np.count_nonzero(is_eis):
            self.eis_waited[chs] += np.where(is_eis, end_t, 0.0)
            timed_out = chs[is_eis & (n_done > 0)]
            for c in timed_out:
                self.skipped_eis[c].append(int(self.cycle[c]))
            self.run[timed_out] = RunState.RUNNING
        tripped = (code == SAFETY) | (code == RANGE)
        if self._capped:
            cap = self.max_cap[chs]
            over_cap = (self.chg[chs] > cap) | (self.dis[chs] > cap)
            tripped |= over_cap
        if np.count_nonzero(tripped):
            if not self._capped:
                over_cap = np.zeros(tripped.size, dtype=bool)
            idx = tripped.nonzero()[0]
            c_end = p.coefs[seg_end[idx], :, idx].T
            v_end = trajectory(self.bank.tables, c_end, last[idx])[0]
            v_end = np.where(c_end[C["cv"]] > 0, c_end[C["v_set"]], v_end)
            ran_out = np.where(code[idx] == RANGE, np.sign(c_end[C["i0"]]), 0.0)
            for c, reason in zip(
                chs[idx],
                self._safety_reasons(chs[idx], over_cap[idx], v_end, ran_out),
                strict=True,
            ):
                self.run[c] = RunState.SAFETY_STOPPED
                self.reason[c] = reason
                rem[c] = 0.0

    def interrupt(self, ch: int) -> None:
        """End channel ``ch``'s open phase where it stands (host stop, fault, EIS
        resume): the ageing and counters up to that time; the state is already there."""
        if not self.open.open[ch]:
            return
        self.open.open[ch] = False
        chs = np.array([ch])
        p = self.open.gather(chs)
        el = self.open.el[ch]
        d = self.bank.data[:, chs]
        passed = p.age_until(d, el)  # (S, 1)
        self.bank.data[:, chs] = d
        offset = np.cumsum(p.seg_t, axis=0) - p.seg_t
        n_done = int((p.seg_done & (offset + p.seg_t <= el)).sum())
        self.step_t[ch] = self.step_t[ch] + el if n_done == 0 else el - offset[n_done, 0]
        self.pc[ch] += n_done
        self.exp_t[ch] += el
        self.chg[ch] += np.maximum(passed, 0.0).sum()
        self.dis[ch] -= np.minimum(passed, 0.0).sum()
        if self.k_kind[ch, self.pc[ch] - n_done] == _EIS:
            self.eis_waited[ch] += el

    def elapsed(self, ch: int) -> float:
        """Test time of channel ``ch`` (s), including an open phase's progress."""
        return float(self.exp_t[ch] + (self.open.el[ch] if self.open.open[ch] else 0.0))

    def _safety_reasons(
        self, chs: np.ndarray, over_cap: np.ndarray, v_end: np.ndarray, ran_out: np.ndarray
    ) -> list[str]:
        out = []
        bank = self.bank
        for c, cap, v, out_of_range in zip(chs, over_cap, v_end, ran_out, strict=True):
            if cap:
                out.append(f"capacity limit {self.max_cap[c] * 1000:.0f} mAh exceeded")
            elif out_of_range:
                way = "charged" if out_of_range > 0 else "discharged"
                out.append(
                    f"electrode range exhausted at {v:.3f} V before the step's voltage "
                    f"cut-off: the cell cannot be {way} further"
                )
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
    def _flush(self, pending: RecordBatch) -> None:
        """Evaluate all scheduled records of one advance and append them per channel."""
        pending.flush(self.bank.tables, self.noise_key, self.noise, self.buffers)
