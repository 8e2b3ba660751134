"""sim serve helpers: speed parsing and building the potentiostat server by keyword."""

from __future__ import annotations

import pytest

from voltloop.drivers.sim.faults import FaultInjector
from voltloop.drivers.sim.serve import _make_potentiostat_server, parse_speed


def test_parse_speed() -> None:
    assert parse_speed("max") is None and parse_speed(None) is None
    assert parse_speed("60") == 60.0 and parse_speed(2.5) == 2.5
    for bad in ("fast", "0", "-1"):
        with pytest.raises(ValueError, match="speed"):
            parse_speed(bad)


def test_potentiostat_server_gets_the_keywords_it_accepts() -> None:
    class ByFaults:
        def __init__(self, lab, *, link="tcp", faults=None, speed=None):
            self.args = (lab, link, faults, speed)

    class ByInjector:
        def __init__(self, lab, transport="tcp", fault_injector=None):
            self.args = (lab, transport, fault_injector)

    faults = FaultInjector()
    made = _make_potentiostat_server(ByFaults, "lab", "pty", faults, 60.0)
    assert made.args == ("lab", "pty", faults, 60.0)
    made = _make_potentiostat_server(ByInjector, "lab", "pty", faults, 60.0)
    assert made.args == ("lab", "pty", faults)


def test_the_simulated_potentiostat_server_is_found() -> None:
    from voltloop.drivers.sim.serve import potentiostat_server_class

    cls = potentiostat_server_class()
    assert cls is not None and cls.__name__ == "SimulatedPotentiostatServer"
