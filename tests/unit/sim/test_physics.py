"""Physics of the simulated cells: OCV, conservation, heat, ageing, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.chemistry import CHEMISTRIES, LFP_GRAPHITE_18650
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec


def _cc_protocol(rate_c: float, seconds: float, until_v: float | None = None) -> str:
    step: dict = {"step": "constant_current", "rate_C": rate_c, "until_time_s": seconds}
    if until_v is not None:
        step["until_voltage_V"] = until_v
    return json.dumps({"sample": {"capacity_mAh": 1100}, "record": {"time_s": 5}, "method": [step]})


def _lab(n: int = 1, **kw: object) -> SimulatedLab:
    lab = SimulatedLab(n, seed=1, **kw)  # type: ignore[arg-type]
    for ch in range(n):
        lab.load_cell(ch, CellSpec(cell_id=f"c{ch}", seed=ch, options={"initial_soc": 0.3}))
    return lab


@pytest.mark.parametrize("kind", sorted(CHEMISTRIES))
def test_ocv_rises_monotonically_with_charge(kind: str) -> None:
    bank = CellBank(1)
    bank.load(0, CHEMISTRIES[kind], np.random.default_rng(0))
    p = bank.view(np.array([0]), column=True)
    q = np.linspace(0.01, float(bank.n_li[0]) - 0.01, 400)[None, :]
    ocv = bank.ocv(p, q)[0]
    assert np.all(np.diff(ocv) > 0)
    lo, hi = bank.window(np.array([0]))
    chem = CHEMISTRIES[kind]
    assert chem.min_voltage_V < bank.ocv(p, (lo + hi)[:, None] / 2)[0, 0] < chem.max_voltage_V


def test_lfp_plateau_and_capacity_like_a123() -> None:
    bank = CellBank(1)
    bank.load(0, LFP_GRAPHITE_18650, np.random.default_rng(0))
    lo, hi = bank.window(np.array([0]))
    assert 1.08 < float(hi[0] - lo[0]) < 1.16  # ~1.1 Ah between 2.0 and 3.6 V
    p = bank.view(np.array([0]), column=True)
    mid = np.linspace(lo[0] + 0.3 * (hi[0] - lo[0]), lo[0] + 0.8 * (hi[0] - lo[0]), 50)
    ocv = bank.ocv(p, mid[None, :])[0]
    assert ocv.min() > 3.2 and ocv.max() < 3.4  # flat plateau around 3.3 V


def test_charge_is_conserved_in_records_and_state() -> None:
    lab = _lab()
    q0 = float(lab.bank.q[0])
    lab.start(0, _cc_protocol(1.0, 1200.0), "cc")
    lab.advance(1300.0)
    rec = lab.records(0, 0, 10**6)
    assert rec["charge_Ah"][-1] == pytest.approx(1.1 * 1200 / 3600, rel=1e-4)
    lost = lab.bank.q_sei[0] + lab.bank.q_pl[0] + lab.bank.lam_neg[0]
    assert float(lab.bank.q[0]) - q0 == pytest.approx(1.1 / 3 - lost, abs=1e-6)
    # voltage during a charge is above the OCV, current is constant and positive
    assert np.all(rec["current_A"][1:] > 1.09)


def test_energy_efficiency_and_heat_over_a_cycle() -> None:
    lab = _lab()
    lab.start(0, attia_protocol(4.8, 5.2, 5.2, cycles=2, record_interval_s=2.0), "e")
    lab.advance(6 * 3600.0)
    rec = lab.records(0, 0, 10**6)
    c1 = rec[rec["cycle"] == 1]
    dt = np.diff(c1["t_s"])
    power = (c1["voltage_V"] * c1["current_A"])[1:]
    e_in = float(np.sum(np.where(power > 0, power, 0) * dt))
    e_out = -float(np.sum(np.where(power < 0, power, 0) * dt))
    assert 0.80 < e_out / e_in < 0.97  # round-trip energy efficiency at 4.8C/4C
    assert c1["temperature_C"].max() > 33.0  # fast charge warms the cell
    assert c1["temperature_C"].max() < 50.0


def test_thermal_steady_state_matches_joule_heat() -> None:
    lab = _lab()
    # heat is frozen per phase (re-evaluated at every step start, not at the clock's
    # chunks): 12 steps of 250 s
    protocol = json.loads(_cc_protocol(0.5, 250.0))
    protocol["method"] *= 12
    lab.start(0, json.dumps(protocol), "cc")
    for _ in range(7):
        lab.advance(431.0)
    b = lab.bank
    p = b.view(np.array([0]))
    r0, r1, r2 = b.resistances(p, p.q, p.temp)
    i = 0.55
    heat = i * i * (r0 + r1 + r2)[0] + i * (b.temp[0] + 273.15) * b.entropic(p, p.q)[0]
    heat += i * b.hyst_m[0]
    expected = b.t_chamber[0] + heat / b.h_area[0]
    assert b.temp[0] == pytest.approx(expected, abs=0.05)


def test_ageing_is_monotone() -> None:
    lab = _lab(1, keep_records=False)
    lab.start(0, attia_protocol(3.6, 6.0, 5.6, cycles=900), "harsh")
    b = lab.bank
    history = []
    for _ in range(8):
        lab.advance(4 * 3600.0)
        history.append((b.n_li[0], b.c_neg[0], b.r_film[0], b.q_sei[0], b.q_pl[0]))
    h = np.array(history)
    assert np.all(np.diff(h[:, 0]) < 0) and np.all(np.diff(h[:, 1]) < 0)
    assert np.all(np.diff(h[:, 2:], axis=0) > 0)
    caps = lab.capacities(0)
    assert caps[-1] < caps[1]


def test_seeded_runs_are_identical() -> None:
    runs = []
    for _ in range(2):
        lab = _lab(2)
        for ch in range(2):
            lab.start(ch, attia_protocol(5.6, 5.6, 5.6, cycles=3), f"e{ch}")
        lab.advance(4 * 3600.0)
        runs.append([lab.records(ch, 0, 10**6) for ch in range(2)])
    for a, b in zip(runs[0], runs[1], strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(runs[0][0]["voltage_V"][:50], runs[0][1]["voltage_V"][:50])


def test_true_cycle_life_fast_forwards_a_copy() -> None:
    from dataclasses import replace

    from voltloop.drivers.sim.chemistry import DegradationParams
    from voltloop.drivers.sim.truth import cycle_lives

    fragile = LFP_GRAPHITE_18650.with_(
        name="fragile", degradation=replace(DegradationParams(), plating_k_A=0.03)
    )
    lab = SimulatedLab(1, seed=1, cell_types={"fragile": fragile})
    spec = CellSpec(cell_id="f", kind="fragile", seed=9)
    lab.load_cell(0, spec)
    proto = attia_protocol(3.6, 6.0, 5.6, cycles=400)
    lab.start(0, proto, "e")
    before = lab.truth(0)
    life = lab.true_cycle_life(0)
    assert life is not None and 10 < life < 400
    assert lab.truth(0) == before  # the channel's own cell did not age
    run = cycle_lives([spec], [proto], max_cycles=400, cell_types={"fragile": fragile})
    assert run.lives[0] == pytest.approx(life, abs=2)


def test_true_cycle_life_runs_through_eis_checkpoints() -> None:
    from dataclasses import replace

    from voltloop.drivers.sim.chemistry import DegradationParams
    from voltloop.drivers.sim.truth import cycle_lives

    fragile = LFP_GRAPHITE_18650.with_(
        name="fragile", degradation=replace(DegradationParams(), plating_k_A=0.03)
    )
    spec = CellSpec(cell_id="f", kind="fragile", seed=9)
    plain = attia_protocol(3.6, 6.0, 5.6, cycles=400)
    checked = attia_protocol(3.6, 6.0, 5.6, cycles=400, eis_every=10)
    run = cycle_lives(
        [spec, spec], [plain, checked], max_cycles=400, cell_types={"fragile": fragile}
    )
    assert np.isfinite(run.lives).all() and run.lives[1] > 30  # past many checkpoints
    # a 10-min rest every 10 cycles barely ages the cell
    assert run.lives[1] == pytest.approx(run.lives[0], rel=0.03)
    lab = SimulatedLab(1, seed=1, cell_types={"fragile": fragile})
    lab.load_cell(0, spec)
    lab.start(0, checked, "e")
    assert lab.true_cycle_life(0) == pytest.approx(run.lives[1], abs=2)
