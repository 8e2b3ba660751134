"""Fault injector: seeded decisions, rates, byte helpers, forced faults."""

from __future__ import annotations

import zlib

import pytest

from voltloop.drivers.sim.faults import FaultInjector, FaultKind, FaultRates


def test_same_seed_same_faults() -> None:
    rates = FaultRates.uniform(0.5)
    a = FaultInjector(rates, seed=7)
    b = FaultInjector(rates, seed=7)
    assert [a.decide("X") for _ in range(200)] == [b.decide("X") for _ in range(200)]


def test_rates_are_respected_roughly() -> None:
    inj = FaultInjector(FaultRates({FaultKind.DROP: 0.2}), seed=1)
    n = sum(inj.decide("Q?") is FaultKind.DROP for _ in range(5000))
    assert 850 < n < 1150


def test_rates_validate() -> None:
    with pytest.raises(ValueError, match="sum"):
        FaultRates({FaultKind.DROP: 0.7, FaultKind.DELAY: 0.7})
    with pytest.raises(ValueError):
        FaultRates.uniform(1.5)


def test_uniform_makes_lab_faults_rare() -> None:
    rates = FaultRates.uniform(0.1).rates
    assert rates[FaultKind.CHANNEL_FAULT] < rates[FaultKind.DROP] / 10
    assert sum(rates.values()) == pytest.approx(0.1)


def test_garble_is_always_detectable() -> None:
    inj = FaultInjector(seed=3)
    for _ in range(500):
        reply = b'"id",0,2,1234ABCD,#18' + bytes(range(0x78, 0x80)) + b"\n"
        bad = inj.garble(reply)
        assert bad != reply and len(bad) == len(reply)
        assert any(b >= 0x80 for b in bad)
        assert zlib.crc32(bad) != zlib.crc32(reply)


def test_truncate_gives_non_empty_prefix_without_terminator() -> None:
    inj = FaultInjector(seed=4)
    for _ in range(100):
        cut = inj.truncate(b"running,1,2\n")
        assert 1 <= len(cut) < len("running,1,2") and not cut.endswith(b"\n")
        assert b"running,1,2".startswith(cut)


def test_forced_fault_matches_context_and_runs_out() -> None:
    inj = FaultInjector(seed=0)
    inj.force("disconnect", match="chan1:data?")
    assert inj.decide("*IDN?") is None
    assert inj.decide("CHAN1:DATA? 0") is FaultKind.DISCONNECT
    assert inj.decide("CHAN1:DATA? 0") is None
    assert inj.counts[FaultKind.DISCONNECT] == 1


def test_plan_per_kind() -> None:
    inj = FaultInjector(seed=0, delay_s=0.7)
    reply = b'0,"No error"\n'
    expectations = {
        "delay": lambda p: p.send == reply and p.delay_s == 0.7,
        "drop": lambda p: p.send is None,
        "garble": lambda p: p.send is not None and p.send != reply,
        "partial": lambda p: p.send is not None and not p.send.endswith(b"\n"),
        "disconnect": lambda p: p.disconnect and p.send and not p.send.endswith(b"\n"),
        "reset": lambda p: p.reset and p.send is None,
        "channel_fault": lambda p: p.send == reply and p.lab_fault is FaultKind.CHANNEL_FAULT,
        "over_temperature": lambda p: p.lab_fault is FaultKind.OVER_TEMPERATURE,
    }
    for kind, check in expectations.items():
        inj.force(kind)
        plan = inj.plan(reply, "SYST:ERR?")
        assert plan.kind == FaultKind(kind)
        assert check(plan), kind
    assert inj.plan(reply, "x").send == reply


def test_disabled_injector_never_faults() -> None:
    inj = FaultInjector(FaultRates.uniform(1.0), seed=0)
    inj.enabled = False
    assert all(inj.decide("x") is None for _ in range(50))


def test_host_and_simulator_channel_states_agree() -> None:
    """interfaces.ChannelState (host) mirrors virtual_lab.ChannelState (wire values)."""
    from voltloop.drivers.interfaces import ChannelState as HostState
    from voltloop.drivers.sim.virtual_lab import ChannelState as LabState

    assert [s.value for s in HostState] == [s.value for s in LabState]
