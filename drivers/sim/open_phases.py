"""Phase plans that outlive one clock advance (decision 0036).

A phase solve (phases.py) plans a channel's step — or chain of steps — from its start
to its natural end: its time limit, cut-off, a safety limit, or at most
``PHASE_MAX_S`` into it. When an ``advance`` ends before the plan does, the plan is
kept here per channel and the next advance continues the *same* closed form from
where the last one stopped, so where the clock happens to cut time never changes the
physics (cut-off times, frozen heat and resistance, grid, ageing integrals).

Arrays put the channel on the last axis: ``coefs`` (S, NC, n) per segment, ``seg_t``
/ ``t_max`` / ``passed`` / ``seg_done`` (S, n), ``end`` (5, n) the end state
(q, T, v1, v2, h), ``ageing`` (4, n) the Ah of SEI, plating, LAM_NE and LAM_PE of the
phase's ending segment, ``age_inc`` (5, S, n, K) the ageing integral of every grid
interval (to take the ageing up to an interruption), ``aged`` (S, A, n) the aged fields
(phases.AGED_ROWS) at the start of every segment, each with the whole ageing of the
segments before it, ``aged_end`` (A, n) those of the ending segment,
``end_t``/``code``/``seg_end`` (n,).
"""

from __future__ import annotations

import numpy as np

from voltloop.drivers.sim.cell_model import ROW
from voltloop.drivers.sim.degradation import apply_ageing, sei_growth
from voltloop.drivers.sim.phases import (
    AGED_ROWS,
    GRID,
    NC,
    C,
    Phase,
    end_state,
    segment_ageing,
)

_Q, _THROUGHPUT = ROW["q"], ROW["throughput"]

#: Longest phase (s): a step longer than this (a long rest, a slow CC, an EIS wait) is
#: planned in parts of this length counted from the step's own start, so the parts do
#: not depend on the clock either; heat and resistance are re-frozen at each part.
PHASE_MAX_S = 14400.0


class PhasePlan:
    """One planned phase for m channels (channel on the last axis, see module doc)."""

    __slots__ = ("coefs", "seg_t", "t_max", "passed", "seg_done", "end_t", "code",
                 "seg_end", "end", "ageing", "age_inc", "aged", "aged_end", "phase")  # fmt: skip

    def __init__(self, **fields: object) -> None:
        self.phase: Phase | None = None
        for name, value in fields.items():
            setattr(self, name, value)

    @classmethod
    def from_phase(cls, phase: Phase, code: np.ndarray, seg_done: np.ndarray) -> PhasePlan:
        """The plan of a fresh solve (``code``/``seg_done`` as the executor reads them)."""
        return cls(
            coefs=phase.coefs, seg_t=phase.seg_t, t_max=phase.t_max, passed=phase.passed,
            seg_done=seg_done, end_t=phase.end_t, code=code, seg_end=phase.seg_end,
            end=phase.end, ageing=phase.ageing, age_inc=phase.age_inc, aged=phase.aged,
            aged_end=phase.aged_end, phase=phase,
        )  # fmt: skip

    def take(self, idx: np.ndarray) -> PhasePlan:
        """The plans of channels ``idx`` (indices into this plan's m)."""
        return PhasePlan(
            coefs=self.coefs[:, :, idx], seg_t=self.seg_t[:, idx], t_max=self.t_max[:, idx],
            passed=self.passed[:, idx], seg_done=self.seg_done[:, idx], end_t=self.end_t[idx],
            code=self.code[idx], seg_end=self.seg_end[idx], end=np.asarray(self.end)[:, idx],
            ageing=self.ageing[:, idx], age_inc=self.age_inc[:, :, idx],
            aged=self.aged[:, :, idx], aged_end=self.aged_end[:, idx],
        )  # fmt: skip

    def _segment_at(self, el: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment starts (S, m) and the segment under way ``el`` s into each plan (m,)."""
        offset = np.cumsum(self.seg_t, axis=0) - self.seg_t
        reached = (offset <= el) & (np.arange(offset.shape[0])[:, None] <= self.seg_end)
        return offset, np.maximum(reached.sum(axis=0) - 1, 0)

    def state_at(self, el: np.ndarray) -> tuple[np.ndarray, ...]:
        """(q, T, v1, v2, h), each (m,), ``el`` s into the plans (from the closed form of
        the segment under way, which starts from the aged end of the one before)."""
        offset, cur = self._segment_at(el)
        rows = np.arange(cur.size)
        return end_state(self.coefs[cur, :, rows].T, el - offset[cur, rows])

    def age_until(self, d: np.ndarray, el: float) -> np.ndarray:
        """End one plan (m = 1) ``el`` s into it: apply to the cell's fields ``d`` (NF, 1),
        whose state is already there, the aged fields at the start of the segment under
        way and that segment's ageing up to ``el``; returns the charge (Ah, + charging)
        passed in every segment up to ``el``, shape (S, 1)."""
        offset, cur_ = self._segment_at(np.array([el]))
        cur = int(cur_[0])
        seg_el = np.minimum(np.maximum(el - offset, 0.0), self.seg_t)  # (S, 1)
        d[AGED_ROWS] = self.aged[cur]
        ageing = sei_growth(d, segment_ageing(self.age_inc[:, cur], self.t_max[cur], seg_el[cur]))
        c = self.coefs
        g = (1.0 - np.exp(c[:, 0] * seg_el)) * c[:, C["inv_a"]]
        g += c[:, C["is_lin"]] * seg_el
        passed = c[:, C["kq"]] * g
        d[_THROUGHPUT] += np.abs(passed[cur])
        apply_ageing(d, d[_Q].copy(), *ageing)
        return passed


class OpenPhases:
    """Per-channel store of phases still running at the end of an advance."""

    def __init__(self, n: int, max_segments: int) -> None:
        s = max_segments
        self.open = np.zeros(n, dtype=bool)
        self.el = np.zeros(n)  # phase time already run (s)
        self.n_seg = np.ones(n, dtype=np.int64)
        self.coefs = np.zeros((s, NC, n))
        self.seg_t = np.zeros((s, n))
        self.t_max = np.zeros((s, n))
        self.passed = np.zeros((s, n))
        self.seg_done = np.zeros((s, n), dtype=bool)
        self.end_t = np.zeros(n)
        self.code = np.zeros(n, dtype=np.int64)
        self.seg_end = np.zeros(n, dtype=np.int64)
        self.end = np.zeros((5, n))
        self.ageing = np.zeros((4, n))
        self.age_inc = np.zeros((5, s, n, GRID))
        self.aged = np.zeros((s, len(AGED_ROWS), n))
        self.aged_end = np.zeros((len(AGED_ROWS), n))

    def store(self, chs: np.ndarray, plan: PhasePlan, el: np.ndarray) -> None:
        """Keep ``plan`` for channels ``chs``, ``el`` s into it."""
        s = plan.seg_t.shape[0]
        self.open[chs] = True
        self.el[chs] = el
        self.n_seg[chs] = s
        for name in ("seg_t", "t_max", "passed", "seg_done"):
            store = getattr(self, name)
            store[:, chs] = 0
            store[:s, chs] = getattr(plan, name)
        self.coefs[:s, :, chs] = plan.coefs
        self.age_inc[:, :s, chs] = plan.age_inc
        self.aged[:s, :, chs] = plan.aged
        self.aged_end[:, chs] = plan.aged_end
        self.end_t[chs] = plan.end_t
        self.code[chs] = plan.code
        self.seg_end[chs] = plan.seg_end
        self.end[:, chs] = plan.end
        self.ageing[:, chs] = plan.ageing

    def gather(self, chs: np.ndarray) -> PhasePlan:
        """The kept plans of channels ``chs``."""
        s = int(self.n_seg[chs].max())
        return PhasePlan(
            coefs=self.coefs[:s, :, chs], seg_t=self.seg_t[:s, chs], t_max=self.t_max[:s, chs],
            passed=self.passed[:s, chs], seg_done=self.seg_done[:s, chs],
            end_t=self.end_t[chs], code=self.code[chs], seg_end=self.seg_end[chs],
            end=self.end[:, chs], ageing=self.ageing[:, chs], age_inc=self.age_inc[:, :s, chs],
            aged=self.aged[:s, :, chs], aged_end=self.aged_end[:, chs],
        )  # fmt: skip
