"""A compiled protocol runs on the simulated lab (in process, VirtualLab contract):
the lab counts one cycle per aging cycle and pauses at every EIS checkpoint."""

from __future__ import annotations

import numpy as np

from voltloop.drivers.protocols import compile_candidate
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState


def test_compiled_attia_protocol_on_the_simulated_lab(attia_spec) -> None:
    spec = attia_spec.model_copy(
        update={"eis": attia_spec.eis.model_copy(update={"every_cycles": 2, "rest_s": 60.0})}
    )
    compiled = compile_candidate(spec, {"CC1": 5.2, "CC2": 5.2, "CC3": 4.8}, cycles=4)
    lab = SimulatedLab(channel_count=1, seed=3)
    lab.load_cell(0, CellSpec(cell_id="c0", seed=3, chamber_temperature_C=30.0))
    assert lab.start(0, compiled.protocol.model_dump_json(), "exp-1")
    paused_at = []
    for _ in range(2000):
        lab.advance(900.0)
        status = lab.status(0)
        if status.state is ChannelState.WAITING_EIS:
            paused_at.append(status.cycle)
            lab.resume(0)
        if status.state not in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
            break
    assert status.state is ChannelState.COMPLETED
    assert paused_at == [0, 1, 3]  # start of life, after 2 and after 4 cycles
    records = lab.records(0, 0, 1_000_000)
    assert sorted(np.unique(records["cycle"]).tolist()) == [0, 1, 2, 3]
    discharge = [i for i, s in enumerate(compiled.protocol.method) if s.id == "discharge"]
    for cycle in range(4):
        in_cycle = records[records["cycle"] == cycle]
        assert np.isin(discharge, in_cycle["step"]).any()  # one aging discharge per cycle
