"""``voltloop run`` of a materials campaign against ``voltloop sim serve`` in another
process: the test is the operator. It reads each round's loading sheet, builds every
cell from the material the sheet names (the pool built from the same spec, by label)
and loads it through the simulated lab's control port, then ``voltloop confirm``.
The campaign must complete, every experiment's stored records match the simulator's
own count, each sheet names the candidate's material, and the recommendation is a
pool material. A campaign measuring specific energy without ``cell.cathode_mass_g``
is refused before anything is written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.campaigns.loading import load_campaign
from voltloop.campaigns.materials_pool import build_pool
from voltloop.db.engine import read_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Candidate, Cycle, Event, Experiment, Material
from voltloop.drivers.sim.loader_control import LoaderControlClient
from voltloop.drivers.sim.virtual_lab import CellSpec

from .test_run_cli import VOLTLOOP, env, event_count, sim_serve, voltloop, wait_for

pytestmark = pytest.mark.timeout(180)

CHANNELS = 4
TEST_CYCLES = 6  # cycle 0 = formation, then 5 test cycles
#: The cells `voltloop sim serve` builds from a structure are 18650 graphite full
#: cells with 6.9 g of cathode (drivers/sim/materials_mapping.py); a LiFePO4 one
#: holds 1.025 Ah. The campaign describes exactly those cells.
CAMPAIGN = """
name = "{name}"
kind = "materials"
seed = 4
rounds = 2
batch_size = {channels}
[lifetime]
early_prediction_cycle = {cycles}
max_cycles = 12
[cell]
kind = "olivine_graphite_18650"
nominal_capacity_Ah = 1.025
{mass_line}
min_voltage_V = 2.0
max_voltage_V = 4.3
max_charge_rate_C = 5.0
max_discharge_rate_C = 5.0
max_temperature_C = 60.0
chamber_temperature_C = 25.0
[instruments]
timeout_s = 3.0
[[instruments.cyclers]]
url = "{cycler}"
channels = {channels}
identity = "VOLTLOOP,VLC-4"
[[objectives]]
metric = "specific_energy"
direction = "maximize"
[[constraints]]
metric = "thermal_risk"
max = 0.3
[pool]
[[pool.substitutions]]
prototype = "olivine-LiFePO4"
site = "Fe"
substituents = ["Mn", "Co", "Ni"]
fractions = [0.25, 0.5, 1.0]
[[pool.substitutions]]
prototype = "layered-LiCoO2"
site = "Co"
substituents = ["Ni"]
fractions = [1.0]
[test_protocol]
formation_cycles = 1
formation_rate_C = 1.0
charge_rate_C = 2.0
upper_cutoff_V = 4.2
cv_until_rate_C = 0.2
rest_after_charge_s = 60.0
discharge_rate_C = 2.0
lower_cutoff_V = 2.5
rest_after_discharge_s = 60.0
record_interval_s = 60.0
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with sim_serve(tmp_path_factory.mktemp("materials-lab"), CHANNELS, 20_000) as info:
        yield info


def campaign_file(tmp: Path, cycler: str, name: str, mass_g: float | None) -> Path:
    path = tmp / f"{name}.toml"
    mass_line = "" if mass_g is None else f"cathode_mass_g = {mass_g}"
    path.write_text(
        CAMPAIGN.format(
            name=name, cycler=cycler, channels=CHANNELS, cycles=TEST_CYCLES, mass_line=mass_line
        )
    )
    return path


def _run_refused(config, tmp_path) -> subprocess.CompletedProcess:
    """``voltloop run`` of a campaign that must be refused before any I/O."""
    return voltloop(
        ["run", str(config), "--db", f"sqlite:///{tmp_path / 'run.db'}", "--no-prefect",
         "--sheets", "sheets"],
        tmp_path,
    )  # fmt: skip


def test_missing_cathode_mass_is_refused_before_anything_is_written(tmp_path) -> None:
    # nothing listens on this port: the refusal must come before any instrument I/O
    config = campaign_file(tmp_path, "socket://127.0.0.1:9", "no-mass", None)
    result = _run_refused(config, tmp_path)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "objectives[0] = specific_energy" in message
    assert "set cell.cathode_mass_g" in message and "Traceback" not in message
    assert not (tmp_path / "run.db").exists() and not (tmp_path / "sheets").exists()


def _operate_round(
    sheet: list[dict[str, str]], hands: LoaderControlClient, pool: dict, seed: int
) -> None:
    """Build each cell from the material its sheet row names and load it."""
    for i, row in enumerate(sheet):
        candidate = pool[row["material_label"]]
        cell = CellSpec(
            cell_id=row["cell_id"],
            seed=seed + i,
            material=candidate.structure,
            chamber_temperature_C=25.0,
        )
        hands.load_cell(int(row["channel"]), cell)


def _simulator_counts(sheet: list[dict[str, str]], hands: LoaderControlClient) -> dict:
    """What the simulated cycler holds for each cell of ``sheet``: cell id → (experiment
    id, state, record count)."""
    out = {}
    for row in sheet:
        status = hands.status(int(row["channel"]))
        assert status["cell_id"] == row["cell_id"]
        out[row["cell_id"]] = (status["experiment_id"], status["state"], status["record_count"])
    return out


@pytest.mark.parametrize("prefect", [False, True], ids=["engine", "prefect-form"])
def test_materials_run_with_the_test_as_operator(lab, tmp_path, prefect: bool) -> None:
    """With ``--prefect`` (the default, with the input form) each round's flow pauses
    for the loading form; ``voltloop confirm`` settles the sheet and the run resumes."""
    name = "materials-real-ci"
    url = f"sqlite:///{tmp_path / 'run.db'}"
    config = campaign_file(tmp_path, lab["cycler"], name, 6.9)
    spec = load_campaign(config)
    pool = {c.label: c for c in build_pool(spec)}
    hands = LoaderControlClient(lab["loader"])
    run = subprocess.Popen(
        [str(VOLTLOOP), "run", str(config), "--db", url, "--sheets", "sheets",
         "--prefect" if prefect else "--no-prefect", "--poll-interval", "0.1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env(tmp_path),
    )  # fmt: skip
    sheets = tmp_path / "sheets"
    try:
        first = wait_for(sheets / f"{name}-loading-sheet-round-0.csv", run)
        assert [int(r["channel"]) for r in first] == list(range(CHANNELS))
        _operate_round(first, hands, pool, seed=0)
        assert voltloop(["confirm", name, "--db", url], tmp_path).returncode == 0

        second = wait_for(sheets / f"{name}-loading-sheet-round-1.csv", run)
        simulated = _simulator_counts(first, hands)  # round 0's cells, before reloading
        _operate_round(second, hands, pool, seed=10)
        assert voltloop(["confirm", name, "--db", url], tmp_path).returncode == 0
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 0, err[-3000:]
    simulated |= _simulator_counts(second, hands)
    summary = json.loads(out)
    assert summary["kind"] == "materials" and summary["rounds_completed"] == 2
    assert summary["experiments"] == {"completed": 2 * CHANNELS}
    assert any("cathode mass 6.9 g per cell (cell.cathode_mass_g)" in n for n in summary["notes"])
    said = " ".join(err.split())
    assert "material_label=" in said  # the printed sheet names each cell's material

    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            pool_event = session.scalar(select(Event).where(Event.kind == "materials_pool"))
            labels = dict(
                zip(pool_event.payload["material_ids"], pool_event.payload["labels"], strict=True)
            )
            rows = session.execute(
                select(Experiment, Material)
                .join(Candidate, Candidate.id == Experiment.candidate_id)
                .join(Material, Material.id == Candidate.material_id)
            ).all()
            stored = {
                e.cell_id: (e.id, e.status.value, e.end_reason, e.records_ingested) for e, _ in rows
            }
            materials = {e.cell_id: (m.id, m.formula, m.structure_hash) for e, m in rows}
            cycles = dict(
                session.execute(
                    select(Cycle.experiment_id, func.count()).group_by(Cycle.experiment_id)
                ).all()
            )
    finally:
        db.dispose()

    assert set(labels.values()) == set(pool)
    tested = [material_id for material_id, *_ in materials.values()]
    assert len(tested) == len(set(tested)) == 2 * CHANNELS  # each material tested once
    assert not {"LiCoO2", "LiNiO2"} & {labels[i] for i in tested}  # thermal_risk > 0.3
    for row in first + second:
        experiment_id, status, reason, records = stored[row["cell_id"]]
        material_id, formula, structure_hash = materials[row["cell_id"]]
        # the sheet named the candidate's material, and the cell was built from it
        assert row["material_label"] == labels[material_id]
        assert row["material"] == formula
        assert pool[row["material_label"]].structure_hash == structure_hash
        assert status == "completed", (row, reason)
        if reason.startswith("end of life"):
            # below 80 % of nominal: the host stops it (at 20,000x the test may have
            # finished on the cycler before the stop arrived)
            assert 1 <= cycles.get(experiment_id, 0) <= TEST_CYCLES
            states = {"stopped", "completed"}
        else:
            assert reason.startswith("protocol finished"), reason
            assert cycles[experiment_id] == TEST_CYCLES
            states = {"completed"}
        # every record the simulated cycler produced for the cell is stored, once
        simulated_id, state, simulated_records = simulated[row["cell_id"]]
        assert (simulated_id, simulated_records) == (experiment_id, records)
        assert state in states, (row, reason, state)
    assert summary["cycles_stored"] == sum(cycles.values())

    rec = summary["recommendation"]
    assert rec["metric"] == "specific_energy" and rec["material_id"] in tested
    assert rec["label"] == labels[rec["material_id"]] and rec["label"] in pool
    # an olivine 18650 stores a few hundred Wh per kg of cathode at 2 C
    assert 200.0 < rec["objective"] < 800.0

    # `voltloop resume` reads the stored spec and pool (the stored spec has no TOML
    # directory), checks the instrument again and finds nothing left to do
    dispatched = event_count(url, "dispatched")
    again = voltloop(["resume", name, "--db", url, "--no-prefect", "--json"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout)
    assert resumed["kind"] == "materials" and resumed["experiments"] == summary["experiments"]
    assert resumed["recommendation"]["label"] == rec["label"]
    assert event_count(url, "dispatched") == dispatched == 2 * CHANNELS
    assert event_count(url, "loading_sheet") == 2 and event_count(url, "materials_pool") == 1


def test_a_bad_pool_is_refused_before_anything_is_written(lab, tmp_path) -> None:
    config = campaign_file(tmp_path, lab["cycler"], "bad-pool", 6.9)
    config.write_text(config.read_text().replace("[pool]\n", '[pool]\nstructures = ["gone.cif"]\n'))
    result = _run_refused(config, tmp_path)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "gone.cif" in message and "Traceback" not in message
    assert not (tmp_path / "run.db").exists() and not (tmp_path / "sheets").exists()
