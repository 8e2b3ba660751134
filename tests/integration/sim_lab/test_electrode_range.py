"""A cell charged past its electrode's range stops with a reason instead of hanging."""

from __future__ import annotations

import json

import pytest

from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState


@pytest.mark.timeout(60)
def test_lifepo4_charged_to_4v5_stops_at_the_end_of_its_range() -> None:
    from voltloop.campaigns.materials_campaign import Prototype
    from voltloop.campaigns.materials_pool import prototype_structure

    lab = SimulatedLab(1)
    material = prototype_structure(Prototype.OLIVINE_LIFEPO4).as_dict()
    lab.load_cell(0, CellSpec("c", material=material))
    step = {"step": "constant_current", "rate_C": 0.1, "until_voltage_V": 4.5}
    step["until_time_s"] = 54000
    protocol = {"sample": {"capacity_mAh": 1025}, "record": {"time_s": 60}, "method": [step]}
    lab.start(0, json.dumps(protocol), "e")
    for _ in range(16):  # used to hang in hour 11
        lab.advance(3600.0)
    status = lab.status(0)
    assert status.state == ChannelState.SAFETY_STOPPED
    assert "electrode range exhausted" in (status.reason or "")
    assert "charged further" in (status.reason or "")
    rec = lab.records(0, 0, 10**6)
    # the whole cathode was delithiated (~2 % past its range), below the 4.5 V cut-off
    assert 1.0 < rec["charge_Ah"][-1] < 1.1
    assert 4.0 < rec["voltage_V"][-1] < 4.5
    assert 10 * 3600 < status.t_s < 11.5 * 3600
