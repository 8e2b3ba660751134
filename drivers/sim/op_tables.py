"""The executor's op tables: every channel's compiled protocol as arrays.

``Executor.advance`` looks up, for all channels at once, what their current op is
and what a phase solve needs of it; so each channel's ``CompiledProtocol``
(program.py) is copied into per-(channel, op) arrays of shape (n_channels,
max_ops + 1) when it starts (the extra column is a TAG that ends the program).
Besides the op fields this holds, per op, whether it takes no time (tags, loops,
EIS entries) and how many consecutive steps one phase solve may chain from it
(decisions 0033, 0037), and one matrix ``ops`` of the fields a solve gathers in a
single call (rows ``O_*``).
"""

from __future__ import annotations

import numpy as np

from voltloop.drivers.sim.program import CompiledProtocol, OpKind

_CC, _CV, _SCAN, _EIS = int(OpKind.CC), int(OpKind.CV), int(OpKind.SCAN), int(OpKind.EIS)
_REST, _TAG, _LOOP = int(OpKind.REST), int(OpKind.TAG), int(OpKind.LOOP)
#: Rows of ``OpTables.ops`` (n_fields, n_channels, max_ops + 1).
OP_FIELDS = 8
O_KIND, O_TIME, O_ISET, O_VSET, O_VCUT, O_ICUT, O_CV, O_SPECIAL = range(OP_FIELDS)
#: The ``ops`` entry of a chain segment that does not exist (a zero-length rest).
NO_OP = np.array([_REST, 0.0, 0.0, 0.0, np.nan, np.nan, 0.0, 0.0])[:, None, None]


class OpTables:
    """Op fields of ``n`` channels' programs, shape (n, max_ops + 1) each."""

    def __init__(self, n: int, max_ops: int) -> None:
        shape = (n, max_ops + 1)
        self.kind = np.full(shape, _TAG, dtype=np.int8)
        self.value = np.zeros(shape)  # A for CC, V for CV and scans
        self.time = np.full(shape, np.inf)  # step time limit, s
        self.volt = np.full(shape, np.nan)  # voltage cut-off (scan: end voltage), V
        self.curr = np.full(shape, np.nan)  # current cut-off (scan: rate V/s), A
        self.target = np.full(shape, -1, dtype=np.int64)  # loop jump target
        self.count = np.zeros(shape, dtype=np.int64)  # loop passes
        self.n_ops = np.zeros(n, dtype=np.int64)
        # True for ops that take no time (tag, loop, EIS entry, end of program)
        self.zero = np.ones(shape, dtype=bool)
        # how many consecutive steps one phase may solve from there
        self.chain = np.ones(shape, dtype=np.int64)
        # what a phase solve needs of each op, gathered in one call (rows O_*)
        self.ops = np.zeros((OP_FIELDS, *shape))
        self.ops[O_VCUT] = self.ops[O_ICUT] = np.nan
        self.ops[O_TIME] = np.inf

    def load(self, ch: int, prog: CompiledProtocol, max_chain: int) -> None:
        """Copy ``prog`` into channel ``ch``'s rows; chains of at most ``max_chain``."""
        k = prog.n_ops
        self.kind[ch, :] = _TAG
        self.kind[ch, :k] = prog.kind
        self.value[ch, :k] = prog.value
        self.time[ch, :k] = prog.until_time
        self.volt[ch, :k] = prog.until_voltage
        self.curr[ch, :k] = prog.until_current
        self.target[ch, :k] = prog.loop_target
        self.count[ch, :k] = prog.loop_count
        self.n_ops[ch] = k
        kind = prog.kind.astype(np.int64)
        self.zero[ch, :] = True
        self.zero[ch, :k] = np.isin(kind, (_TAG, _LOOP, _EIS))
        ops = self.ops[:, ch]
        ops[:] = 0.0
        ops[O_VCUT] = ops[O_ICUT] = np.nan
        ops[O_TIME] = np.inf
        ops[O_KIND, :k] = kind
        ops[O_TIME, :k] = prog.until_time
        cc, cv = kind == _CC, kind == _CV
        ops[O_ISET, :k] = np.where(cc, prog.value, 0.0)
        ops[O_VSET, :k] = np.where(cv, prog.value, 0.0)
        ops[O_VCUT, :k] = np.where(cc, prog.until_voltage, np.nan)
        ops[O_ICUT, :k] = np.where(cv, prog.until_current, np.nan)
        ops[O_CV, :k] = cv | (kind == _SCAN)
        ops[O_SPECIAL, :k] = (kind == _SCAN) | (kind == _EIS)
        self.chain[ch, :] = 1
        for i in range(k - 2, -1, -1):  # chains of steps solved in one phase (0033, 0037)
            ends_known = (kind[i] in (_CC, _REST) and np.isfinite(prog.until_time[i])) or (
                kind[i] == _CV
                and (np.isfinite(prog.until_time[i]) or np.isfinite(prog.until_current[i]))
            )
            # a chain continues into CC and rest steps; each starts from the end state
            # of the step before with that step's ageing applied, as a separate solve
            if ends_known and kind[i + 1] in (_CC, _REST):
                self.chain[ch, i] = min(self.chain[ch, i + 1] + 1, max_chain)

    def segments(
        self, chs: np.ndarray, pcs: np.ndarray, chain: np.ndarray, n_seg: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The ``ops`` fields (F, S, m) of ``n_seg`` consecutive ops from ``pcs`` (m,) of
        channels ``chs``, where each chain is ``chain`` (m,) long (shorter chains are
        padded with NO_OP), and which segments exist (S, m; None if S = 1)."""
        if n_seg == 1:
            return self.ops[:, chs, pcs][:, None, :], None
        valid = np.arange(n_seg)[:, None] < chain  # (S, m)
        seg_pcs = np.where(valid, pcs + np.arange(n_seg)[:, None], pcs)
        return np.where(valid, self.ops[:, chs, seg_pcs], NO_OP), valid
