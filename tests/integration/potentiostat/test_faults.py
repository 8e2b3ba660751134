"""Every fault kind the simulated potentiostat supports: the driver recovers (retry after
abort-and-sync) or raises its typed error within its time budget."""

from __future__ import annotations

import time

import numpy as np
import pytest
from potentiostat_fake_lab import FakeLab, model_impedance

from voltloop.drivers import potentiostat_scripts as ps
from voltloop.drivers.eis import EisSpec
from voltloop.drivers.errors import (
    Disconnected,
    InstrumentCommunicationError,
    ProtocolError,
    TransportTimeout,
)
from voltloop.drivers.sim.faults import FaultInjector, FaultKind

pytestmark = pytest.mark.integration

#: 1 kHz -> 100 Hz, 11 points at a fixed DC level: the longest point budget is
#: 3 x (4/100 + 0.5) = 1.62 s, so a silent device is noticed within that.
SPEC = EisSpec(f_start_Hz=1e3, f_end_Hz=100, points_per_decade=10, dc_potential_V=3.3)
WIRE_FAULTS = [
    FaultKind.DELAY,
    FaultKind.DROP,
    FaultKind.GARBLE,
    FaultKind.PARTIAL,
    FaultKind.DISCONNECT,
    FaultKind.RESET,
]


def injector(seed: int = 3) -> FaultInjector:
    # delayed output comes later than the longest point budget; links stay down 0.2 s
    return FaultInjector(seed=seed, delay_s=2.0, down_s=0.2)


def assert_matches_lab(spectrum) -> None:
    assert spectrum.complete and spectrum.n_points == SPEC.n_points
    truth = model_impedance(spectrum.frequencies)
    assert np.max(np.abs(spectrum.impedance - truth) / np.abs(truth)) < 0.006


@pytest.mark.parametrize("kind", WIRE_FAULTS)
def test_eis_recovers_from_a_fault_in_the_output_stream(
    serve, lab: FakeLab, kind: FaultKind
) -> None:
    faults = injector()
    _, driver = serve(lab, "tcp", faults=faults, driver_options={"analyse": False})
    faults.force(kind, match="e")
    start = time.monotonic()
    spectrum = driver.eis(SPEC)
    elapsed = time.monotonic() - start
    assert faults.counts[kind] == 1
    assert_matches_lab(spectrum)
    # one failed attempt (at most the longest point budget) + sync + a clean attempt
    assert elapsed < ps.eis_point_budget_s(100) + 3.0


@pytest.mark.parametrize("kind", [FaultKind.GARBLE, FaultKind.DISCONNECT, FaultKind.PARTIAL])
def test_eis_recovers_over_a_pty(serve, lab: FakeLab, kind: FaultKind) -> None:
    faults = injector()
    _, driver = serve(lab, "pty", faults=faults, driver_options={"analyse": False})
    faults.force(kind, match="e")
    assert_matches_lab(driver.eis(SPEC))
    assert faults.counts[kind] == 1


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.DROP, TransportTimeout),
        (FaultKind.GARBLE, ProtocolError),
        (FaultKind.PARTIAL, ProtocolError),
        (FaultKind.DISCONNECT, Disconnected),
    ],
)
def test_eis_raises_its_typed_error_when_the_fault_persists(
    serve, lab: FakeLab, kind: FaultKind, error: type
) -> None:
    faults = injector()
    _, driver = serve(
        lab, "tcp", faults=faults, driver_options={"analyse": False, "measurement_retries": 1}
    )
    faults.force(kind, match="e", times=2)
    start = time.monotonic()
    with pytest.raises(error) as info:
        driver.eis(SPEC)
    assert isinstance(info.value, InstrumentCommunicationError)
    assert time.monotonic() - start < 2 * (ps.eis_point_budget_s(100) + 2.0)
    # the link is usable afterwards
    assert driver.identify().model == "EmStat4 HR"


@pytest.mark.parametrize("kind", WIRE_FAULTS)
def test_identify_recovers_from_every_fault(serve, lab: FakeLab, kind: FaultKind) -> None:
    faults = FaultInjector(seed=5, delay_s=1.5, down_s=0.2)
    _, driver = serve(lab, "tcp", faults=faults)
    faults.force(kind, match="t")
    start = time.monotonic()
    assert driver.identify().model == "EmStat4 HR"
    assert faults.counts[kind] == 1
    assert time.monotonic() - start < 6.0


def test_lab_faults_leave_the_potentiostat_output_unchanged(serve, lab: FakeLab) -> None:
    faults = injector()
    _, driver = serve(lab, "tcp", faults=faults, driver_options={"analyse": False})
    faults.force(FaultKind.CHANNEL_FAULT, match="e")
    assert_matches_lab(driver.eis(SPEC))


def test_a_lost_low_frequency_line_costs_the_timeout_when_the_sweep_streams_at_once(
    serve, lab: FakeLab
) -> None:
    """A campaign's sweep down to 10 mHz: a real instrument may take minutes for the last
    points, so the driver waits that long for each. A simulated one that streams the
    sweep at once (``measurement_time_scale=0``) has a lost line noticed after
    ``timeout_s``, then the sweep is retried."""
    low = EisSpec(f_start_Hz=1e3, f_end_Hz=0.01, points_per_decade=5, dc_potential_V=3.3)
    assert ps.eis_point_budget_s(0.01) > 600  # what a real-time driver would wait
    faults = injector()
    _, driver = serve(
        lab,
        "tcp",
        faults=faults,
        driver_options={"analyse": False, "measurement_time_scale": 0.0},
    )
    # the device falls silent near the end of the sweep, in the 10 mHz decade
    faults.force(FaultKind.DROP, match="e")
    faults.pick = lambda lines: lines[-4]
    start = time.monotonic()
    spectrum = driver.eis(low)
    elapsed = time.monotonic() - start
    assert faults.counts[FaultKind.DROP] == 1
    assert spectrum.complete and spectrum.n_points == low.n_points
    assert elapsed < 10 * driver.timeout_s


def test_measurement_time_scale_is_checked() -> None:
    from voltloop.drivers.potentiostat import PalmSensPotentiostat

    with pytest.raises(ValueError, match="measurement_time_scale"):
        PalmSensPotentiostat("socket://127.0.0.1:1", measurement_time_scale=2.0)
