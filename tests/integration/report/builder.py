"""A small campaign database written through the db ingest API, for report tests.

Two rounds of three Attia candidates on a four-channel cycler. Capacity fades
linearly from 1.1 Ah to 80 % at a known life per candidate; some cells run past
end of life (a measured life), the others stop at cycle 30 with an early
prediction. One cell fails, one is safety-stopped, one is never loaded. EIS
spectra (a Randles circuit whose resistance grows with cycling) are stored at
checkpoints when asked. :class:`BuiltCampaign` says what went in, so tests
compare the report with the truth.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voltloop.campaigns.loading import load_campaign
from voltloop.db.cycles import CycleData, CycleSummary
from voltloop.db.engine import write_session
from voltloop.db.enums import (
    CampaignStatus,
    CandidateStatus,
    ChannelState,
    EventLevel,
    ExperimentStatus,
    InstrumentKind,
    RoundStatus,
)
from voltloop.db.ingest import append_cycles, record_event, store_eis_spectrum, store_prediction
from voltloop.db.migrate import open_database
from voltloop.db.models import (
    Campaign,
    Candidate,
    Channel,
    Experiment,
    Instrument,
    ModelVersion,
    Round,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"
NOMINAL_AH = 1.1
T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class CellPlan:
    """What one experiment does: its candidate, how it ends, how many cycles it stores."""

    parameters: dict[str, float]
    life: float  # cycles to 80 % capacity (the fade line)
    cycles: int  # cycles stored (0 for a cell never loaded)
    status: ExperimentStatus
    end_reason: str
    predicted: float | None = None  # early prediction at cycle 30
    predicted_std: float | None = None
    peak_temperature: float = 38.0


ROUND_PLANS: list[list[CellPlan]] = [
    [
        CellPlan({"CC1": 3.6, "CC2": 6.0, "CC3": 5.6}, 60.0, 70, ExperimentStatus.COMPLETED,
                 "end of life at cycle 61", 58.0, 6.0),
        CellPlan({"CC1": 8.0, "CC2": 4.0, "CC3": 4.4}, 400.0, 30, ExperimentStatus.COMPLETED,
                 "stopped after early prediction", 420.0, 40.0),
        CellPlan({"CC1": 5.6, "CC2": 7.0, "CC3": 3.6}, 300.0, 12, ExperimentStatus.FAILED,
                 "fault: channel overcurrent"),
    ],
    [
        CellPlan({"CC1": 5.2, "CC2": 4.0, "CC3": 5.6}, 80.0, 90, ExperimentStatus.COMPLETED,
                 "end of life at cycle 81", 95.0, 10.0),
        CellPlan({"CC1": 6.0, "CC2": 6.0, "CC3": 4.8}, 500.0, 20, ExperimentStatus.SAFETY_STOPPED,
                 "safety_stopped: cell temperature 61.0 C above limit 60.0 C",
                 peak_temperature=61.0),
        CellPlan({"CC1": 7.0, "CC2": 4.8, "CC3": 4.0}, 350.0, 0, ExperimentStatus.ABORTED,
                 "operator: cell damaged"),
    ],
]  # fmt: skip


@dataclass
class BuiltCampaign:
    url: str
    name: str
    campaign_id: int
    experiment_ids: list[list[str]] = field(default_factory=list)  # per round
    candidate_ids: list[list[int]] = field(default_factory=list)
    cell_ids: list[list[str]] = field(default_factory=list)
    channels: list[list[int]] = field(default_factory=list)
    spectra: int = 0
    recommended_candidate: int | None = None


def fade(life: float, cycles: int) -> np.ndarray:
    """Discharge capacity (Ah) of cycles 0..cycles-1: linear to 80 % at ``life``;
    cycle 0 (conditioning) reads high, as on the simulated cycler."""
    index = np.arange(cycles)
    q = NOMINAL_AH * (1.0 - 0.2 * index / life)
    if cycles:
        q[0] = 1.5
    return q


def _cycle(index: int, q: float, peak: float) -> CycleData:
    summary = CycleSummary(
        charge_capacity_ah=q,
        discharge_capacity_ah=q,
        charge_energy_wh=3.3 * q,
        discharge_energy_wh=3.2 * q,
        t_start_s=index * 3600.0,
        t_end_s=(index + 1) * 3600.0,
        sample_count=10,
        temperature_max_c=peak if index == 5 else 35.0,
        charge_time_s=600.0,
    )
    return CycleData(index, summary, None)


def randles(cycle: int) -> tuple[np.ndarray, np.ndarray]:
    """A Randles-circuit spectrum (10 kHz → 10 mHz, 25 points) that grows with cycling."""
    f = np.logspace(4, -2, 25)
    w = 2 * np.pi * f
    r0, rct, cdl = 0.015 + 1e-5 * cycle, 0.010 + 5e-5 * cycle, 1.0
    return f, r0 + rct / (1 + 1j * w * rct * cdl) + 0.002 / np.sqrt(1j * w)


def build_campaign(
    url: str,
    *,
    predictions: bool = True,
    eis: bool = True,
    recommendation: bool = True,
    cycles: bool = True,
    objectives: list[dict] | None = None,
    name: str = "report-test",
    extra_events: int = 0,
) -> BuiltCampaign:
    """Write the campaign of :data:`ROUND_PLANS` into the (migrated, empty) ``url``."""
    spec = load_campaign(EXAMPLE).model_dump(mode="json")
    spec["name"] = name
    spec["rounds"], spec["batch_size"] = 2, 3
    if objectives is not None:
        spec["objectives"] = objectives
    db = open_database(url)
    built = BuiltCampaign(url=url, name=name, campaign_id=0)
    try:
        with write_session(db) as s:
            campaign = Campaign(
                name=name, kind="protocol", spec=spec, status=CampaignStatus.COMPLETED, seed=11
            )
            instrument = Instrument(kind=InstrumentKind.CYCLER, url="sim://cycler")
            s.add_all([campaign, instrument])
            s.flush()
            built.campaign_id = campaign.id
            channels = [
                Channel(instrument_id=instrument.id, channel_index=i, state=ChannelState.IDLE)
                for i in range(4)
            ]
            model = ModelVersion(
                campaign_id=campaign.id, kind="lifetime", name="fade-line", version=3,
                training_set_hash="t", hyperparameters={}, metrics={},
            )  # fmt: skip
            s.add_all([*channels, model])
            s.flush()
            for r, plans in enumerate(ROUND_PLANS):
                start = T0 + dt.timedelta(hours=10 * r)
                rnd = Round(
                    campaign_id=campaign.id, round_index=r, status=RoundStatus.COMPLETED,
                    started_at=start, ended_at=start + dt.timedelta(hours=9, minutes=30),
                    model_version_ids=[model.id],
                )  # fmt: skip
                s.add(rnd)
                s.flush()
                record_event(s, EventLevel.INFO, "round_opened", f"round {r} opened",
                             campaign_id=campaign.id, payload={"round": r})  # fmt: skip
                ids, cands, cells, chans = [], [], [], []
                for k, plan in enumerate(plans):
                    candidate = Candidate(
                        campaign_id=campaign.id, round_id=rnd.id, parameters=plan.parameters,
                        acquisition_value=0.5 + 0.1 * k, predicted_mean=plan.life * 0.9,
                        predicted_std=50.0 + k, status=_candidate_status(plan.status),
                    )  # fmt: skip
                    s.add(candidate)
                    s.flush()
                    experiment_id = str(uuid.uuid4())
                    loaded = plan.status != ExperimentStatus.ABORTED
                    channel = channels[(k + r) % 4]
                    cell_id = f"{name}-r{r}-{k:03d}"
                    s.add(
                        Experiment(
                            id=experiment_id, campaign_id=campaign.id, candidate_id=candidate.id,
                            channel_id=channel.id, cell_id=cell_id, protocol={"p": 1},
                            status=plan.status, end_reason=plan.end_reason,
                            created_at=start, queued_at=start + dt.timedelta(minutes=5),
                            started_at=start + dt.timedelta(minutes=6) if loaded else None,
                            ended_at=start + dt.timedelta(hours=9),
                        )
                    )  # fmt: skip
                    s.flush()
                    ids.append(experiment_id)
                    cands.append(candidate.id)
                    cells.append(cell_id)
                    chans.append(channel.channel_index)
                    if cycles and plan.cycles:
                        q = fade(plan.life, plan.cycles)
                        append_cycles(
                            s,
                            experiment_id,
                            [_cycle(i, q[i], plan.peak_temperature) for i in range(plan.cycles)],
                        )
                    if predictions and plan.predicted is not None:
                        store_prediction(s, experiment_id, model.id, 10, plan.predicted * 1.3, 99.0)
                        store_prediction(
                            s, experiment_id, model.id, 30, plan.predicted, plan.predicted_std
                        )
                    if eis and plan.cycles >= 30:
                        for c in (0, 15, 30):
                            f, z = randles(c)
                            store_eis_spectrum(s, experiment_id, c, f, z, linkk_residual=0.004)
                            built.spectra += 1
                    record_event(s, EventLevel.INFO, "cell_loaded", f"cell {cell_id} loaded",
                                 campaign_id=campaign.id, experiment_id=experiment_id)  # fmt: skip
                    level = (
                        EventLevel.INFO
                        if plan.status == ExperimentStatus.COMPLETED
                        else EventLevel.WARNING
                    )
                    record_event(s, level, "experiment_ended", plan.end_reason,
                                 campaign_id=campaign.id, experiment_id=experiment_id,
                                 payload={"status": plan.status.value})  # fmt: skip
                built.experiment_ids.append(ids)
                built.candidate_ids.append(cands)
                built.cell_ids.append(cells)
                built.channels.append(chans)
            for i in range(extra_events):
                record_event(s, EventLevel.DEBUG, "poll_retry", f"retry {i}",
                             campaign_id=campaign.id)  # fmt: skip
            record_event(s, EventLevel.ERROR, "dispatch_failed", "start refused <b>bold</b>",
                         campaign_id=campaign.id)  # fmt: skip
            if recommendation:
                best = built.candidate_ids[0][1]  # predicted 420 cycles: the best observed
                built.recommended_candidate = best
                record_event(
                    s, EventLevel.INFO, "recommendation", f"best candidate {best}",
                    campaign_id=campaign.id,
                    payload={"candidate_id": best, "parameters": ROUND_PLANS[0][1].parameters,
                             "objective": 420.0},
                )  # fmt: skip
    finally:
        db.dispose()
    return built


def _candidate_status(status: ExperimentStatus) -> CandidateStatus:
    if status in (ExperimentStatus.FAILED, ExperimentStatus.ABORTED):
        return CandidateStatus.FAILED
    return CandidateStatus.OBSERVED
