"""Runs compiled unicycler protocols step by step on every channel at once.

The executor keeps, per channel, a program counter into the channel's op table,
the time spent in the current step, loop counters, the cycle index and the
record counter. ``advance(dt)`` moves every running channel forward by ``dt``
seconds of virtual time: it repeatedly lets every live channel finish (or continue)
its current timed step — or a chain of steps (decision 0033) — in one vectorised
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
from voltloop.drivers.sim.degradation import apply_ageing, sei_growth
from voltloop.drivers.sim.open_phases import PHASE_MAX_S, OpenPhases, PhasePlan
from voltloop.drivers.sim.phases import (
    AGED_ROWS,
    BUDGET,
    RANGE,
    SAFETY,
    TIME,
    C,
    Phase,
    end_state,
    segment_ageing,
    trajectory,
)
from voltloop.drivers.sim.program import CompiledProtocol, OpKind
from voltloop.drivers.sim.record_batch import RecordBatch, SensorNoise
from voltloop.drivers.sim.record_buffer import RecordBuffer

__all__ = ["Executor", "RunState", "SensorNoise"]

#: A voltage scan runs as this many constant-voltage stairs.
SCAN_SEGMENTS = 20
#: Most steps one phase solve chains (a CC, CV or rest step whose end is known, then
#: rest and discharging CC steps; docs/decisions/0033).
MAX_CHAIN = 6
#: Most consecutive iterations a channel waits while longer chains are planned.
WAIT_LIMIT = 2
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
_CC, _CV, _SCAN, _EIS = int(OpKind.CC), int(OpKind.CV), int(OpKind.SCAN), int(OpKind.EIS)
_REST = int(OpKind.REST)
_TAG, _LOOP = int(OpKind.TAG), int(OpKind.LOOP)
#: Which run states advance with the clock (indexed by RunState value).
_LIVE_STATE = np.array([s in (RunState.RUNNING, RunState.WAITING_EIS) for s in RunState])
#: Rows of the executor's op table ``k_ops`` (n_fields, n_channels, max_ops + 1).
_OP_FIELDS = 8
_O_KIND, _O_TIME, _O_ISET, _O_VSET, _O_VCUT, _O_ICUT, _O_CV, _O_SPECIAL = range(_OP_FIELDS)
#: The op table entry of a chain segment that does not exist (a zero-length rest).
_Q, _TEMP, _V1, _V2, _H = ROW["q"], ROW["temp"], ROW["v1"], ROW["v2"], ROW["h"]
_THROUGHPUT = ROW["throughput"]
_NO_OP = np.array([_REST, 0.0, 0.0, 0.0, np.nan, np.nan, 0.0, 0.0])[:, None, None]


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
        # per channel and experiment: the key of its sensor-noise stream (record_batch)
        self.noise_key = np.zeros(n, dtype=np.uint64)
        self._ar = np.arange(n)
        self.k_kind = np.full((n, max_ops + 1), int(OpKind.TAG), dtype=np.int8)
        self.k_value = np.zeros((n, max_ops + 1))
        self.k_time = np.full((n, max_ops + 1), np.inf)
        self.k_volt = np.full((n, max_ops + 1), np.nan)
        self.k_curr = np.full((n, max_ops + 1), np.nan)
        self.k_target = np.full((n, max_ops + 1), -1, dtype=np.int64)
        self.k_count = np.zeros((n, max_ops + 1), dtype=np.int64)
        self.n_ops = np.zeros(n, dtype=np.int64)
        # per (channel, op): True for ops that take no time (tag, loop, EIS entry, end)
        self.k_zero = np.ones((n, max_ops + 1), dtype=bool)
        # per (channel, op): how many consecutive steps one phase may solve from there
        self.k_chain = np.ones((n, max_ops + 1), dtype=np.int64)
        # what a phase solve needs of each op, gathered in one call (rows _O_*)
        self.k_ops = np.zeros((_OP_FIELDS, n, max_ops + 1))
        self.k_ops[_O_VCUT] = self.k_ops[_O_ICUT] = np.nan
        self.k_ops[_O_TIME] = np.inf
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
        self.waited = np.zeros(n, dtype=np.int64)  # iterations waited for longer chains

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
        kind = prog.kind.astype(np.int64)
        self.k_zero[ch, :] = True
        self.k_zero[ch, :k] = np.isin(kind, (_TAG, _LOOP, _EIS))
        ops = self.k_ops[:, ch]
        ops[:] = 0.0
        ops[_O_VCUT] = ops[_O_ICUT] = np.nan
        ops[_O_TIME] = np.inf
        ops[_O_KIND, :k] = kind
        ops[_O_TIME, :k] = prog.until_time
        cc, cv = kind == _CC, kind == _CV
        ops[_O_ISET, :k] = np.where(cc, prog.value, 0.0)
        ops[_O_VSET, :k] = np.where(cv, prog.value, 0.0)
        ops[_O_VCUT, :k] = np.where(cc, prog.until_voltage, np.nan)
        ops[_O_ICUT, :k] = np.where(cv, prog.until_current, np.nan)
        ops[_O_CV, :k] = cv | (kind == _SCAN)
        ops[_O_SPECIAL, :k] = (kind == _SCAN) | (kind == _EIS)
        self.k_chain[ch, :] = 1
        for i in range(k - 2, -1, -1):  # chains of steps solved in one phase (0033, 0037)
            ends_known = (kind[i] in (_CC, _REST) and np.isfinite(prog.until_time[i])) or (
                kind[i] == _CV
                and (np.isfinite(prog.until_time[i]) or np.isfinite(prog.until_current[i]))
            )
            # a chain continues into CC and rest steps; each starts from the end state
            # of the step before with that step's ageing applied, as a separate solve
            if ends_known and kind[i + 1] in (_CC, _REST):
                self.k_chain[ch, i] = min(self.k_chain[ch, i + 1] + 1, MAX_CHAIN)
        self.rec_dt[ch] = prog.record_interval_s
        self.limits[:, ch] = prog.v_lo, prog.v_hi, prog.max_temperature_C
        self.max_cap[ch] = prog.max_capacity_Ah
        self._capped = bool(np.isfinite(self.max_cap).any())
        self.open.open[ch] = False
        self.waited[ch] = 0
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
        self._records(phase.coefs, sel, zero, zero, np.ones((1, 1), bool),
                      (self.cycle[sel][None], self.pc[sel][None], zero, zero), pending)  # fmt: skip
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

        Every channel chains as its own protocol allows (and a chain is the same as
        step-by-step solves, decision 0037), so its physics never depends on which
        channels share its solve. A solve costs every channel as many segments as its
        longest chain: the channels with the longest chains are planned, the others
        wait up to ``WAIT_LIMIT`` iterations of the advance (when a phase is planned
        does not change it), which keeps channels of one protocol in step."""
        chs = m.nonzero()[0]
        pcs = self.pc[chs]
        chain = self.k_chain[chs, pcs]
        n_seg = int(chain.max())
        if n_seg > 1:
            # the longest chains go first and the others wait (at most WAIT_LIMIT
            # iterations), so channels that drifted apart in the cycle line up again
            go = chain == n_seg
            go |= self.waited[chs] >= WAIT_LIMIT
            if np.count_nonzero(go) < chs.size:
                self.waited[chs[~go]] += 1
                chs, pcs, chain = chs[go], pcs[go], chain[go]
        self.waited[chs] = 0
        if n_seg > 1:
            valid = np.arange(n_seg)[:, None] < chain  # (S, n)
            seg_pcs = np.where(valid, pcs + np.arange(n_seg)[:, None], pcs)
            ops = np.where(valid, self.k_ops[:, chs, seg_pcs], _NO_OP)  # (F, S, n)
        else:
            valid = None
            ops = self.k_ops[:, chs, pcs][:, None, :]
        step_t = self.step_t[chs]
        k_time = ops[_O_TIME, 0]
        t_left = ops[_O_TIME].copy()
        t_left[0] -= step_t
        v_set = ops[_O_VSET]
        any_scan = any_eis = False
        if np.count_nonzero(ops[_O_SPECIAL, 0]):
            kind = ops[_O_KIND, 0]
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
            ops[_O_CV] > 0.0,
            ops[_O_ISET],
            v_set,
            ops[_O_VCUT],
            ops[_O_ICUT],
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
            seg_t = p.seg_t
            n_seg = seg_t.shape[0]
            offset = np.cumsum(seg_t, axis=0) - seg_t  # segment starts (S, m)
            gained = np.maximum(p.passed, 0.0)
            # charge and discharge counters at every segment's start (summed in order)
            counters = np.empty((2, n_seg, chs.size))
            counters[0, 0], counters[1, 0] = self.chg[chs], self.dis[chs]
            counters[0, 1:] = gained[:-1]
            np.subtract(gained[:-1], p.passed[:-1], out=counters[1, 1:])
            np.cumsum(counters, axis=1, out=counters)
            if fresh and whole:  # all of every phase
                start, upto, ends = None, seg_t, p.seg_done
            else:
                stop = offset + seg_t
                ends = p.seg_done & (fin | (stop <= new_el))
                if not fresh:
                    ends &= stop > el
                start = np.minimum(np.maximum((0.0 if fresh else el) - offset, 0.0), seg_t)
                upto = np.minimum(np.maximum(new_el - offset, 0.0), seg_t)
            steps = self.pc[chs] + np.arange(n_seg)[:, None]
            cycles = np.broadcast_to(self.cycle[chs], steps.shape)
            self._records(p.coefs, chs, self.exp_t[chs] + offset, upto, ends,
                          (cycles, steps, counters[0], counters[1]), pending, start)  # fmt: skip
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
        offset = np.cumsum(p.seg_t, axis=0) - p.seg_t
        reached = (offset <= el) & (np.arange(offset.shape[0])[:, None] <= p.seg_end)
        cur = np.maximum(reached.sum(axis=0) - 1, 0)
        rows = np.arange(chs.size)
        q, temp, v1, v2, h = end_state(p.coefs[cur, :, rows].T, el - offset[cur, rows])
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
        offset = np.cumsum(p.seg_t, axis=0) - p.seg_t
        seg_el = np.minimum(np.maximum(el - offset, 0.0), p.seg_t)  # (S, 1)
        # the segment under way (as in _at): the aged fields at its start, plus its
        # ageing up to the interruption
        reached = (offset[:, 0] <= el) & (np.arange(offset.shape[0]) <= p.seg_end[0])
        cur = max(int(np.count_nonzero(reached)) - 1, 0)
        d = self.bank.data[:, chs]
        d[AGED_ROWS] = p.aged[cur]
        ageing = sei_growth(d, segment_ageing(p.age_inc[:, cur], p.t_max[cur], seg_el[cur]))
        g = (1.0 - np.exp(p.coefs[:, 0] * seg_el)) * p.coefs[:, C["inv_a"]]
        g += p.coefs[:, C["is_lin"]] * seg_el
        passed = p.coefs[:, C["kq"]] * g  # (S, 1)
        d[_THROUGHPUT] += np.abs(passed[cur])
        apply_ageing(d, d[_Q].copy(), *ageing)
        self.bank.data[:, chs] = d
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
    def _records(
        self,
        coefs: np.ndarray,
        chs: np.ndarray,
        t0: np.ndarray,
        end_t: np.ndarray,
        step_done: np.ndarray,
        where: tuple[np.ndarray, ...],
        pending: RecordBatch,
        start: np.ndarray | None = None,
    ) -> None:
        """Schedule the records of the step segments ``coefs`` (S, NC, m) of channels
        ``chs`` (per-segment arrays (S, m); from ``start`` s into each) and reserve
        their numbers."""
        counts = pending.schedule(
            coefs, chs, self.rec_count[chs], t0, self.rec_dt[chs], end_t, step_done, where,
            start,
        )  # fmt: skip
        self.rec_count[chs] += counts

    def _flush(self, pending: RecordBatch) -> None:
        """Evaluate all scheduled records of one advance and append them per channel."""
        pending.flush(self.bank.tables, self.noise_key, self.noise, self.buffers)
