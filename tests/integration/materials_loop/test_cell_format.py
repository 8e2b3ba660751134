"""The materials metrics and the simulated cell format (no instruments)."""

from __future__ import annotations

import pytest

from voltloop.orchestrator.observations import materials_metrics


def test_metrics_at_the_test_cycle() -> None:
    metrics = materials_metrics(
        [9.0, 3.0, 2.9, 2.7],  # cycle 0 holds the formation cycles too
        [30.0, 10.0, 9.6, 9.0],
        [25.0, 26.5, None, 25.5],
        test_cycle=3,
        nominal_ah=3.0,
        cathode_mass_g=20.0,
        eol_threshold_ah=2.4,
    )
    assert metrics["discharge_capacity"] == 3.0
    assert metrics["capacity_retention"] == pytest.approx(0.9)
    assert metrics["specific_energy"] == pytest.approx(9.0 / 0.020)
    assert metrics["peak_temperature"] == 26.5
    assert metrics["cycle_life"] == 4.0  # never below 2.4 Ah: the cycles run (a lower bound)
    # stopped before the test cycle: read at the last stored one; a dead first cycle
    # retains nothing
    short = materials_metrics(
        [1.0, 0.01, 0.0], [3.0, 0.02, 0.0], [25.0] * 3,
        test_cycle=19, nominal_ah=3.0, cathode_mass_g=None, eol_threshold_ah=2.4,
    )  # fmt: skip
    assert short["capacity_retention"] == 0.0 and short["cycle_life"] == 1.0
    assert "specific_energy" not in short


def test_lifepo4_cell_has_the_campaigns_nominal_capacity(ci_spec) -> None:
    from voltloop.campaigns.materials_pool import build_pool
    from voltloop.orchestrator.materials_dry_run import SimulatedCellFormat

    cell_format = SimulatedCellFormat(ci_spec)
    pool = {c.label: c for c in build_pool(ci_spec)}
    lfp = cell_format(pool["LiFePO4"].structure)
    assert lfp.nominal_capacity_Ah == pytest.approx(ci_spec.cell.nominal_capacity_Ah)
    assert cell_format(pool["LiFePO4"].structure) is lfp  # one chemistry per material
    assert cell_format.cathode_mass_g == pytest.approx(6.9 * cell_format.scale)
    layered = cell_format(pool["LiCoO2"].structure)
    assert layered.nominal_capacity_Ah > 1.5 * lfp.nominal_capacity_Ah  # 274 vs 170 mAh/g
    assert layered.r0_ohm * layered.nominal_capacity_Ah == pytest.approx(
        lfp.r0_ohm * lfp.nominal_capacity_Ah, rel=0.5
    )


def test_a_spec_cathode_mass_builds_the_simulated_cells(ci_spec) -> None:
    """Without ``cell.cathode_mass_g`` the dry run uses the format's mass and says so;
    with it, the simulated cells are built with that mass (decision 0083)."""
    from types import SimpleNamespace

    from voltloop.campaigns.materials_pool import build_pool
    from voltloop.orchestrator.materials_dry_run import MaterialsDryRun

    default = MaterialsDryRun(ci_spec)
    note = default.cathode_mass_note()
    assert default.cathode_mass_g == pytest.approx(0.0202, rel=0.01)  # 20.2 mg, 3 mAh
    assert "20.2 mg per cell: the simulated cell format's" in note
    assert "cell.cathode_mass_g not set" in note

    data = ci_spec.model_dump(mode="json")
    data["cell"]["cathode_mass_g"] = 0.0101  # half the loading
    spec = type(ci_spec).model_validate(data)
    heavy = MaterialsDryRun(spec)
    assert heavy.cathode_mass_g == pytest.approx(0.0101)
    assert heavy.cell_format.scale == pytest.approx(default.cell_format.scale / 2, rel=0.01)
    lfp = build_pool(spec)[0]
    assert lfp.label == "LiFePO4"
    built = heavy.cell_format(lfp.structure)
    assert built.nominal_capacity_Ah == pytest.approx(0.0015, rel=0.01)  # half of 3 mAh
    note = heavy.cathode_mass_note()
    assert "10.1 mg per cell (cell.cathode_mass_g)" in note and "holds 1.5 mAh" in note
    summary = SimpleNamespace(kind="", notes=[], recommendation=None)
    heavy.finish(summary)
    assert summary.kind == "materials" and note in summary.notes


def test_the_example_in_the_docs_validates(tmp_path) -> None:
    from pathlib import Path

    from voltloop.campaigns.loading import load_campaign
    from voltloop.campaigns.materials_campaign import MaterialsCampaign
    from voltloop.campaigns.materials_pool import build_pool

    docs = Path(__file__).resolve().parents[3] / "docs" / "materials-campaigns.md"
    text = docs.read_text().split("## Write your own")[1].split("```toml")[1].split("```")[0]
    path = tmp_path / "my-olivines.toml"
    path.write_text(text)
    spec = load_campaign(path)
    assert isinstance(spec, MaterialsCampaign) and spec.name == "my-olivines"
    assert len(build_pool(spec)) == 7


def test_a_scaled_cell_behaves_like_the_18650_at_the_same_c_rate(ci_spec) -> None:
    """Capacities per nominal and temperatures match cycle by cycle (decision 0007)."""
    import numpy as np

    from voltloop.campaigns.materials_campaign import Prototype
    from voltloop.campaigns.materials_pool import prototype_structure
    from voltloop.drivers.protocols import compile_material_test
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.materials_mapping import default_mapping
    from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState
    from voltloop.orchestrator.materials_dry_run import SimulatedCellFormat

    structure = prototype_structure(Prototype.OLIVINE_LIFEPO4).as_dict()
    bare = ci_spec.model_copy(update={"eis": None})
    runs = {}
    for name, mapping in (("coin", SimulatedCellFormat(ci_spec)), ("18650", default_mapping)):
        nominal = mapping(structure).nominal_capacity_Ah
        cell = bare.cell.model_copy(update={"nominal_capacity_Ah": nominal})
        spec = bare.model_copy(update={"cell": cell})
        lab = SimulatedLab(1, seed=3, material_mapping=mapping)
        lab.load_cell(0, CellSpec("c", seed=4, material=structure, chamber_temperature_C=25.0))
        protocol = compile_material_test(spec, "LiFePO4", cycles=20).protocol
        lab.start(0, protocol.model_dump_json(), "e")
        while lab.status(0).state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
            lab.advance(6 * 3600.0)
        records = lab.records(0, 0, limit=10**9)
        runs[name] = (lab.capacities(0) / nominal, float(records["temperature_C"].max()))
    (coin, coin_t), (big, big_t) = runs["coin"], runs["18650"]
    assert len(coin) == len(big) == 20
    np.testing.assert_allclose(coin[1:], big[1:], rtol=0.03)  # cell-to-cell draws differ
    assert abs((coin[-1] / coin[1]) - (big[-1] / big[1])) < 0.01  # same relative fade
    assert coin_t == pytest.approx(big_t, abs=0.3)
