"""A full-size campaign for the report's size check: 4 rounds × 48 cells × 100 cycles
(the Attia loop), with a lifetime prediction per cell and EIS every 50 cycles on
four cells per round."""

from __future__ import annotations

import uuid

import numpy as np
from sqlalchemy import insert

from voltloop.campaigns.attia import enumerate_protocols
from voltloop.db.engine import write_session
from voltloop.db.enums import CampaignStatus, ExperimentStatus, InstrumentKind, RoundStatus
from voltloop.db.ingest import store_eis_spectrum
from voltloop.db.migrate import open_database
from voltloop.db.models import (
    Campaign,
    Candidate,
    Channel,
    Cycle,
    Experiment,
    Instrument,
    ModelVersion,
    Prediction,
    Round,
)

from .builder import EXAMPLE, randles


def build_large(url: str, *, rounds: int = 4, channels: int = 48, cycles: int = 100) -> str:
    """Write the campaign ``attia-full`` into the migrated, empty ``url``; returns its name."""
    from voltloop.campaigns.loading import load_campaign

    spec = load_campaign(EXAMPLE).model_dump(mode="json")
    spec.update(name="attia-full", rounds=rounds, batch_size=channels)
    pool = [p.as_dict() for p in enumerate_protocols()]
    rng = np.random.default_rng(0)
    db = open_database(url)
    try:
        with write_session(db) as s:
            campaign = Campaign(name="attia-full", kind="protocol", spec=spec,
                                status=CampaignStatus.COMPLETED, seed=0)  # fmt: skip
            instrument = Instrument(kind=InstrumentKind.CYCLER, url="sim://cycler")
            s.add_all([campaign, instrument])
            s.flush()
            chans = [Channel(instrument_id=instrument.id, channel_index=i) for i in range(channels)]
            model = ModelVersion(campaign_id=campaign.id, kind="lifetime", name="enet", version=1,
                                 training_set_hash="x")  # fmt: skip
            s.add_all([*chans, model])
            s.flush()
            cycle_rows, predictions = [], []
            for r in range(rounds):
                rnd = Round(campaign_id=campaign.id, round_index=r, status=RoundStatus.COMPLETED)
                s.add(rnd)
                s.flush()
                for k in range(channels):
                    params = pool[(r * channels + k) % len(pool)]
                    life = 1500.0 - 60.0 * (params["CC1"] - 5.0) ** 2 - 40.0 * params["CC2"]
                    candidate = Candidate(campaign_id=campaign.id, round_id=rnd.id,
                                          parameters={n: params[n] for n in ("CC1", "CC2", "CC3")},
                                          status="observed")  # fmt: skip
                    s.add(candidate)
                    s.flush()
                    experiment_id = str(uuid.uuid4())
                    s.add(Experiment(id=experiment_id, campaign_id=campaign.id,
                                     candidate_id=candidate.id, channel_id=chans[k].id,
                                     cell_id=f"attia-full-r{r}-{k:03d}",
                                     status=ExperimentStatus.COMPLETED,
                                     end_reason="stopped after early prediction"))  # fmt: skip
                    q = 1.1 * (1 - 0.2 * np.arange(cycles) / life) + rng.normal(0, 5e-4, cycles)
                    for c in range(cycles):
                        cycle_rows.append({
                            "experiment_id": experiment_id, "cycle_index": c,
                            "charge_capacity_ah": q[c], "discharge_capacity_ah": q[c],
                            "charge_energy_wh": 3.3 * q[c], "discharge_energy_wh": 3.2 * q[c],
                            "temperature_max_c": 35.0, "t_start_s": c * 3600.0,
                            "t_end_s": (c + 1) * 3600.0, "sample_count": 100,
                        })  # fmt: skip
                    predictions.append({"experiment_id": experiment_id,
                                        "model_version_id": model.id, "cycles_seen": cycles,
                                        "predicted_life_cycles": life,
                                        "predicted_life_std": 80.0})  # fmt: skip
                    s.flush()
                    for c in range(0, cycles + 1, 50) if k < 4 else ():
                        f, z = randles(c)
                        store_eis_spectrum(s, experiment_id, c, f, z)
            s.execute(insert(Cycle), cycle_rows)
            s.execute(insert(Prediction), predictions)
    finally:
        db.dispose()
    return "attia-full"
