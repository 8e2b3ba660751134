"""A migrated SQLite database holding synthetic cells whose lives are known."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from voltloop.db.cycles import CycleData, CycleSummary
from voltloop.db.engine import make_engine, write_session
from voltloop.db.enums import CampaignKind, ExperimentStatus
from voltloop.db.ingest import append_cycles, store_eis_spectrum
from voltloop.db.migrate import init_database
from voltloop.db.models import Campaign, Candidate, Experiment
from voltloop.surrogates.lifetime.dataset import CellHistory

SPEC = {"cell": {"nominal_capacity_Ah": 1.1}, "lifetime": {"early_prediction_cycle": 100}}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'lifetime.db'}"
    init_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def add_campaign(engine: Engine, name: str = "fastcharge") -> int:
    with write_session(engine) as session:
        row = Campaign(name=name, kind=CampaignKind.PROTOCOL, spec=SPEC)
        session.add(row)
        session.flush()
        return int(row.id)


def add_cell(
    engine: Engine,
    campaign_id: int,
    cell: CellHistory,
    last_cycle: int | None = None,
    status: ExperimentStatus = ExperimentStatus.COMPLETED,
) -> str:
    """Store a synthetic cell as an experiment with cycle rows (raw series for its curves)."""
    keep = cell.cycle_index <= (last_cycle if last_cycle is not None else cell.last_cycle)
    with write_session(engine) as session:
        candidate = Candidate(campaign_id=campaign_id, parameters=cell.protocol)
        session.add(candidate)
        session.flush()
        experiment = Experiment(
            campaign_id=campaign_id, candidate_id=candidate.id, cell_id=cell.cell_id, status=status
        )
        session.add(experiment)
        session.flush()
        rows = []
        s = cell.summary
        for i in np.flatnonzero(keep):
            c = int(cell.cycle_index[i])
            t0 = 2400.0 * c
            summary = CycleSummary(
                charge_capacity_ah=float(s["charge_capacity_Ah"][i]),
                discharge_capacity_ah=float(s["discharge_capacity_Ah"][i]),
                charge_energy_wh=3.3,
                discharge_energy_wh=3.2,
                t_start_s=t0,
                t_end_s=t0 + 2400.0,
                sample_count=10,
                temperature_max_c=float(s["temperature_max_C"][i]),
                temperature_mean_c=float(s["temperature_mean_C"][i]),
                temperature_min_c=float(s["temperature_min_C"][i]),
                internal_resistance_ohm=float(s["internal_resistance_ohm"][i]),
                charge_time_s=float(s["charge_time_s"][i]),
            )
            series = None
            if c in cell.discharge_curves:
                curve = cell.discharge_curves[c]
                m = curve.voltage_V.size
                series = {
                    "t_s": t0 + np.arange(m, dtype=float),
                    "voltage_V": curve.voltage_V,
                    "current_A": np.full(m, -4.4),
                    "temperature_C": np.full(m, 31.0),
                    "discharge_Ah": curve.capacity_Ah,
                    "charge_Ah": np.zeros(m),
                }
            rows.append(CycleData(cycle_index=c, summary=summary, series=series))
        append_cycles(session, experiment.id, rows)
        for spectrum in cell.spectra:
            if spectrum.cycle <= cell.cycle_index[keep][-1]:
                store_eis_spectrum(
                    session,
                    experiment.id,
                    spectrum.cycle,
                    spectrum.frequency_Hz,
                    spectrum.impedance_ohm,
                )
        return str(experiment.id)
