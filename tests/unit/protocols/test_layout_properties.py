"""For any valid checkpoint schedule, every aging cycle is entered by one loop jump."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from voltloop.campaigns.spec import EisCheckpoints, ReferencePerformanceTest
from voltloop.drivers.protocols import assemble, fixed_cycle_steps

from .conftest import unroll


@st.composite
def schedules(draw):
    eis_every = draw(st.one_of(st.none(), st.integers(1, 6)))
    rpt_mult = draw(st.one_of(st.none(), st.integers(1, 3)))
    base = eis_every or draw(st.integers(1, 6))
    rpt_every = base * rpt_mult if rpt_mult else None
    period = max(e for e in (eis_every, rpt_every, 1) if e)
    cycles = period * draw(st.integers(1, 4))
    return eis_every, rpt_every, cycles, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_cycles_and_checkpoints_line_up(attia_spec, schedule) -> None:
    eis_every, rpt_every, cycles, eis_start, rpt_start = schedule
    eis = EisCheckpoints(every_cycles=eis_every, at_start=eis_start) if eis_every else None
    rpt = (
        ReferencePerformanceTest(every_cycles=rpt_every, at_start=rpt_start) if rpt_every else None
    )
    cycle = attia_spec.cycling
    method, checkpoints = assemble(fixed_cycle_steps(cycle), cycle, cycles, eis, rpt)
    executed = unroll(method)
    assert Counter(c for c, s in executed if s.id == "discharge") == Counter(range(cycles))
    # checkpoints run, in order, at the cycle they follow (start-of-life ones in cycle 0)
    ran = [(s.id, c) for c, s in executed if s.id in ("eis", "rpt_discharge")]
    expected = [
        ("eis" if p.kind == "eis" else "rpt_discharge", max(p.after_cycles - 1, 0))
        for p in checkpoints
    ]
    assert ran == expected
    for kind, every in (("eis", eis_every), ("rpt", rpt_every)):
        if every:
            periodic = [p.after_cycles for p in checkpoints if p.kind == kind and p.after_cycles]
            assert periodic == list(range(every, cycles + 1, every))
