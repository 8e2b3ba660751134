"""Material mapping, user physics plugins and the lab clock."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from voltloop.drivers.sim.chemistry import LFP_GRAPHITE_18650
from voltloop.drivers.sim.clock import LabClock
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.materials_mapping import MaterialError, material_properties
from voltloop.drivers.sim.plugins import PluginError, load_plugin
from voltloop.drivers.sim.virtual_lab import CellSpec

STRUCTURES = Path(__import__("pymatgen.core").core.__file__).parent.parent / "util" / "structures"


def _structure(name: str) -> dict:
    from pymatgen.core import Structure

    return Structure.from_file(STRUCTURES / f"{name}.json").as_dict()


def test_lifepo4_maps_to_textbook_values() -> None:
    props = material_properties(_structure("LiFePO4"))
    assert props.family == "olivine" and props.mobile_ion == "Li"
    assert props.capacity_mAh_g == pytest.approx(169.9, abs=0.5)  # 1 e- / 157.76 g/mol
    assert props.average_voltage_V == pytest.approx(3.45)
    assert props.thermal_risk < 0.2


def test_sodium_and_vanadium_hosts_differ_as_documented() -> None:
    na = material_properties(_structure("NaFePO4"))
    lvp = material_properties(_structure("Li3V2(PO4)3"))
    assert na.average_voltage_V == pytest.approx(3.45 - 0.3)
    assert na.resistance_factor > 1.0
    assert lvp.capacity_mAh_g == pytest.approx(197, abs=1)  # 3 Li per formula
    assert lvp.average_voltage_V == pytest.approx(3.8)


def test_material_without_mobile_ion_is_refused() -> None:
    with pytest.raises(MaterialError, match="no mobile ion"):
        material_properties(_structure("TiO2"))


def test_lab_loads_a_material_cell() -> None:
    lab = SimulatedLab(1)
    lab.load_cell(0, CellSpec(cell_id="m", material=_structure("Li3V2(PO4)3")))
    truth = lab.truth(0)
    assert truth.capacity_Ah > 1.0
    assert 2.6 < lab.open_circuit_voltage(0) < 4.1


def custom_cell(spec: CellSpec) -> object:
    """A user cell model for the plugin test: a bigger LFP cell for kind 'big'."""
    if spec.kind != "big":
        return None
    return LFP_GRAPHITE_18650.with_(
        name="big", nominal_capacity_Ah=2.2, c_pos_Ah=2.4, c_neg_Ah=2.6, n_li_Ah=2.34
    )


def test_cell_model_plugin_by_import_path() -> None:
    lab = SimulatedLab(2, cell_model=f"{__name__}:custom_cell")
    lab.load_cell(0, CellSpec(cell_id="a", kind="big"))
    lab.load_cell(1, CellSpec(cell_id="b"))
    assert lab.truth(0).capacity_Ah > 2.0
    assert lab.truth(1).capacity_Ah < 1.2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "expected 'package.module:attribute'"),
        ("voltloop.nothing_here:f", "cannot import module"),
        ("voltloop.drivers.sim.chemistry:missing", "has no attribute"),
        ("voltloop.drivers.sim.chemistry:GRID_POINTS", "not callable"),
    ],
)
def test_bad_plugin_paths_name_the_problem(path: str, message: str) -> None:
    with pytest.raises(PluginError, match=message) as err:
        load_plugin(path, "cell model")
    assert err.value.exit_code == 2


def test_clock_modes_advance_and_stop_cleanly() -> None:
    lab = SimulatedLab(1)
    with LabClock(lab, factor=1000.0, tick_s=0.01):
        time.sleep(0.1)
    assert 20.0 < lab.now_s < 1000.0
    fast = LabClock(lab, factor=None, chunk_s=60.0).start()
    time.sleep(0.05)
    fast.stop()
    assert not fast.running and fast.error is None
    assert lab.now_s > 1000.0
    with pytest.raises(ValueError):
        LabClock(lab, factor=0.0)


def test_thermally_risky_cathode_runs_hotter() -> None:
    from pymatgen.core import Lattice, Structure

    from voltloop.drivers.sim.materials_mapping import chemistry_from_properties

    nickelate = Structure(
        Lattice.hexagonal(2.88, 14.2),
        ["Li", "Ni", "O", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.26], [0, 0, 0.74]],
    ).as_dict()
    props = material_properties(nickelate)
    assert props.family == "layered" and props.thermal_risk > 0.8
    risky = chemistry_from_properties(props)
    assert risky.side_heat_V > 0.04
    calm = risky.with_(name="calm", side_heat_V=0.0)
    lab = SimulatedLab(2, cell_types={"risky": risky, "calm": calm})
    for ch, kind in enumerate(("risky", "calm")):
        lab.load_cell(ch, CellSpec(cell_id=kind, kind=kind, options={"initial_soc": 0.2}))
        step = {"step": "constant_current", "rate_C": 2.0, "until_time_s": 900}
        lab.start(ch, json.dumps({"record": {"time_s": 30}, "method": [step]}), kind)
    lab.advance(900.0)
    rise = [lab.truth(ch).temperature_C - 30.0 for ch in range(2)]
    assert rise[0] > rise[1] + 0.5  # same cell, only the parasitic heat differs
