"""Campaign specs for the protocol-compilation tests (built from the shipped examples)."""

from __future__ import annotations

import pytest

from voltloop.campaigns.examples import example_text
from voltloop.campaigns.loading import parse_campaign
from voltloop.campaigns.spec import MaterialsCampaign, ProtocolCampaign


@pytest.fixture(scope="session")
def attia_spec() -> ProtocolCampaign:
    spec = parse_campaign(example_text("protocol"), "protocol.toml")
    assert isinstance(spec, ProtocolCampaign)
    return spec


@pytest.fixture(scope="session")
def materials_spec() -> MaterialsCampaign:
    spec = parse_campaign(example_text("materials"), "materials.toml")
    assert isinstance(spec, MaterialsCampaign)
    return spec


def unroll(method: list) -> list[tuple[int, object]]:
    """Execute a method's loops the way a cycler does; yield (cycle index, step).

    The cycle index increments at every loop jump (as the simulated cycler and Neware
    count cycles). Tags and loops themselves are not yielded.
    """
    tags = {s.tag: i for i, s in enumerate(method) if s.step == "tag"}
    counters: dict[int, int] = {}
    out = []
    cycle = 0
    pc = 0
    while pc < len(method):
        step = method[pc]
        if step.step == "tag":
            pc += 1
        elif step.step == "loop":
            target = tags[step.loop_to] if isinstance(step.loop_to, str) else step.loop_to - 1
            done = counters.get(pc, 0)
            if done + 1 < step.cycle_count:
                counters[pc] = done + 1
                cycle += 1
                pc = target
            else:
                counters[pc] = 0
                pc += 1
        else:
            out.append((cycle, step))
            pc += 1
    return out
