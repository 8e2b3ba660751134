"""Gathering a campaign report read-only from the database.

:func:`gather_report` reads one campaign — its spec, rounds, candidates,
experiments, per-cycle discharge capacities, lifetime predictions, EIS spectra
and audit trail — into the records of ``report_model``. Nothing here writes.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltloop.db.enums import EventLevel
from voltloop.db.models import (
    Candidate,
    Channel,
    Cycle,
    EisSpectrum,
    Event,
    Experiment,
    Instrument,
    Material,
    ModelVersion,
    Prediction,
    Round,
)
from voltloop.db.queries import resolve_campaign
from voltloop.db.readback import eis_spectra
from voltloop.db.types import utcnow
from voltloop.orchestrator.report_model import (
    CandidateRow,
    CapacityTrace,
    EventRow,
    ExperimentRow,
    Objective,
    PredictionRow,
    Recommendation,
    ReportData,
    RoundRow,
    SpectrumSet,
    candidate_metric_values,
    end_of_life_threshold,
    finite_or_none,
    measured_end_of_life,
    nanmax,
    objectives_of,
    observed_life,
    parameter_names_of,
)

#: Events shown in the audit-trail table by default (the newest ones).
DEFAULT_EVENT_LIMIT = 200
#: Experiments whose EIS spectra are read (the ones with the most checkpoints).
DEFAULT_SPECTRA_EXPERIMENTS = 6


def _capacity_traces(session: Session, campaign_id: int) -> dict[str, dict[str, np.ndarray]]:
    """One query for the whole campaign: per experiment, the summary columns the report
    uses, each of shape ``(n_cycles,)`` ordered by cycle index."""
    columns = (
        Cycle.experiment_id,
        Cycle.cycle_index,
        Cycle.discharge_capacity_ah,
        Cycle.temperature_max_c,
        Cycle.charge_time_s,
        Cycle.discharge_energy_wh,
        Cycle.t_start_s,
        Cycle.t_end_s,
    )
    rows = session.execute(
        select(*columns)
        .join(Experiment, Experiment.id == Cycle.experiment_id)
        .where(Experiment.campaign_id == campaign_id)
        .order_by(Cycle.experiment_id, Cycle.cycle_index)
    ).all()
    grouped: dict[str, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(tuple(row[1:]))
    out: dict[str, dict[str, np.ndarray]] = {}
    for experiment_id, values in grouped.items():
        table = np.array(values, dtype=np.float64)  # None becomes NaN
        out[experiment_id] = {
            "cycle_index": table[:, 0].astype(np.int64),
            "discharge_capacity_ah": table[:, 1],
            "temperature_max_c": table[:, 2],
            "charge_time_s": table[:, 3],
            "discharge_energy_wh": table[:, 4],
            "duration_s": table[:, 6] - table[:, 5],
        }
    return out


def _latest_predictions(session: Session, campaign_id: int) -> dict[str, PredictionRow]:
    rows = session.execute(
        select(Prediction, ModelVersion.name, ModelVersion.version)
        .join(Experiment, Experiment.id == Prediction.experiment_id)
        .outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Experiment.campaign_id == campaign_id)
        .order_by(Prediction.experiment_id, Prediction.cycles_seen, Prediction.id)
    ).all()
    latest: dict[str, PredictionRow] = {}
    for prediction, name, version in rows:  # ordered, so the last one per experiment wins
        latest[prediction.experiment_id] = PredictionRow(
            predicted_life=float(prediction.predicted_life_cycles),
            std=finite_or_none(prediction.predicted_life_std),
            cycles_seen=int(prediction.cycles_seen),
            model=f"{name} v{version}"
            if name is not None
            else f"model {prediction.model_version_id}",
            created_at=prediction.created_at,
        )
    return latest


def _experiments(
    session: Session,
    campaign_id: int,
    series: dict[str, dict[str, np.ndarray]],
    predictions: dict[str, PredictionRow],
    threshold_ah: float | None,
) -> list[ExperimentRow]:
    rows = session.execute(
        select(Experiment, Round.round_index, Instrument.url, Channel.channel_index)
        .outerjoin(Candidate, Candidate.id == Experiment.candidate_id)
        .outerjoin(Round, Round.id == Candidate.round_id)
        .outerjoin(Channel, Channel.id == Experiment.channel_id)
        .outerjoin(Instrument, Instrument.id == Channel.instrument_id)
        .where(Experiment.campaign_id == campaign_id)
        .order_by(Round.round_index, Experiment.cell_id, Experiment.created_at, Experiment.id)
    ).all()
    out = []
    for experiment, round_index, url, channel in rows:
        data = series.get(experiment.id)
        if data is None:
            cycles, last, life, peak, hours = 0, None, None, None, 0.0
        else:
            index = data["cycle_index"]
            cycles, last = int(index.size), int(index[-1])
            life = measured_end_of_life(index, data["discharge_capacity_ah"], threshold_ah)
            peak = nanmax(data["temperature_max_c"])
            hours = float(np.nansum(data["duration_s"])) / 3600.0
        out.append(
            ExperimentRow(
                id=experiment.id,
                candidate_id=experiment.candidate_id,
                round_index=round_index,
                cell_id=experiment.cell_id,
                cycler_url=url,
                channel=channel,
                status=experiment.status.value,
                end_reason=experiment.end_reason,
                created_at=experiment.created_at,
                queued_at=experiment.queued_at,
                started_at=experiment.started_at,
                ended_at=experiment.ended_at,
                cycles_stored=cycles,
                last_cycle=last,
                measured_life=life,
                peak_temperature_c=peak,
                channel_hours=hours,
                prediction=predictions.get(experiment.id),
            )
        )
    return out


def _candidates(
    session: Session,
    campaign_id: int,
    experiments: list[ExperimentRow],
    series: dict[str, dict[str, np.ndarray]],
    objectives: tuple[Objective, ...],
) -> list[CandidateRow]:
    rows = session.execute(
        select(Candidate, Round.round_index, Material.formula)
        .outerjoin(Round, Round.id == Candidate.round_id)
        .outerjoin(Material, Material.id == Candidate.material_id)
        .where(Candidate.campaign_id == campaign_id)
        .order_by(Round.round_index, Candidate.id)
    ).all()
    by_candidate: dict[int, list[ExperimentRow]] = {}
    for experiment in experiments:
        if experiment.candidate_id is not None:
            by_candidate.setdefault(experiment.candidate_id, []).append(experiment)
    labels = _material_labels(session, campaign_id)
    out = []
    for candidate, round_index, formula in rows:
        mine = by_candidate.get(candidate.id, [])
        life, source = observed_life(mine)
        metrics = candidate_metric_values(
            [o.metric for o in objectives],
            life,
            [series[e.id] for e in mine if e.id in series],
        )
        out.append(
            CandidateRow(
                id=candidate.id,
                round_index=round_index,
                parameters=dict(candidate.parameters or {}),
                material=formula,
                material_label=labels.get(candidate.material_id),
                acquisition_value=finite_or_none(candidate.acquisition_value),
                predicted_mean=finite_or_none(candidate.predicted_mean),
                predicted_std=finite_or_none(candidate.predicted_std),
                status=candidate.status.value,
                experiment_ids=tuple(e.id for e in mine),
                observed_life=life,
                observed_source=source,
                metrics=metrics,
            )
        )
    return out


def _spectra(
    session: Session, experiments: list[ExperimentRow], limit: int, preferred: set[str]
) -> tuple[list[SpectrumSet], int]:
    """Spectra of at most ``limit`` experiments: the ``preferred`` ones (the recommended
    candidate's cells) first, the others spread evenly over the campaign."""
    ids = [e.id for e in experiments]
    if not ids:
        return [], 0
    counts = dict(
        session.execute(
            select(EisSpectrum.experiment_id, func.count(EisSpectrum.id))
            .where(EisSpectrum.experiment_id.in_(ids))
            .group_by(EisSpectrum.experiment_id)
        ).all()
    )
    total = int(sum(counts.values()))
    order = {e.id: i for i, e in enumerate(experiments)}
    measured = sorted(counts, key=order.__getitem__)
    first = [i for i in measured if i in preferred][:limit]
    rest = [i for i in measured if i not in first]
    room = max(0, limit - len(first))
    if len(rest) > room:  # spread the others over the campaign (early and late rounds)
        rest = [rest[int(k)] for k in np.linspace(0, len(rest) - 1, room).round()] if room else []
    chosen = [*first, *rest]
    cells = {e.id: e.cell_id for e in experiments}
    sets = [SpectrumSet(i, cells.get(i), tuple(eis_spectra(session, i))) for i in chosen]
    return sets, total


def _events(
    session: Session, campaign_id: int, limit: int, cells: dict[str, str | None]
) -> tuple[list[EventRow], int, dict[str, int], dict[str, int]]:
    scope = Event.campaign_id == campaign_id
    counts = dict(
        session.execute(select(Event.kind, func.count()).where(scope).group_by(Event.kind)).all()
    )
    levels = {
        level.value if isinstance(level, EventLevel) else str(level): int(n)
        for level, n in session.execute(
            select(Event.level, func.count()).where(scope).group_by(Event.level)
        ).all()
    }
    rows = session.scalars(
        select(Event).where(scope).order_by(Event.id.desc()).limit(max(0, limit))
    ).all()
    events = [
        EventRow(
            id=e.id,
            created_at=e.created_at,
            level=e.level.value,
            kind=e.kind,
            message=e.message,
            experiment_id=e.experiment_id,
            cell_id=cells.get(e.experiment_id) if e.experiment_id else None,
        )
        for e in reversed(rows)
    ]
    return events, int(sum(counts.values())), {k: int(v) for k, v in counts.items()}, levels


def _material_labels(session: Session, campaign_id: int) -> dict[int, str]:
    """Material id -> the pool's label, from the campaign's ``materials_pool`` event
    (orchestrator/materials_run.py); empty for protocol campaigns."""
    event = session.scalar(
        select(Event)
        .where(Event.campaign_id == campaign_id, Event.kind == "materials_pool")
        .order_by(Event.id.desc())
        .limit(1)
    )
    payload = event.payload if event is not None and event.payload else {}
    ids, names = payload.get("material_ids") or [], payload.get("labels") or []
    return {int(i): str(name) for i, name in zip(ids, names, strict=False)}


def _recommendation(session: Session, campaign_id: int) -> Recommendation | None:
    event = session.scalar(
        select(Event)
        .where(Event.campaign_id == campaign_id, Event.kind == "recommendation")
        .order_by(Event.id.desc())
        .limit(1)
    )
    if event is None:
        return None
    payload = event.payload or {}
    objective = payload.get("objective")
    return Recommendation(
        candidate_id=payload.get("candidate_id"),
        parameters=payload.get("parameters"),
        objective=finite_or_none(float(objective)) if isinstance(objective, int | float) else None,
        message=event.message,
        level=event.level.value,
        created_at=event.created_at,
        label=payload.get("label"),
        formula=payload.get("formula"),
        metric=payload.get("metric"),
        rule=payload.get("rule"),
        confirmed=tuple(payload.get("confirmed") or ()),
    )


def gather_report(
    session: Session,
    campaign_name: str,
    *,
    database: str = "",
    event_limit: int = DEFAULT_EVENT_LIMIT,
    spectra_experiments: int = DEFAULT_SPECTRA_EXPERIMENTS,
) -> ReportData:
    """Read everything the report shows about ``campaign_name``.

    Unknown names raise the database's :class:`UnknownCampaignError`, which lists
    the known campaigns.
    """
    campaign = resolve_campaign(session, campaign_name)
    spec = dict(campaign.spec or {})
    threshold = end_of_life_threshold(spec)
    objectives = objectives_of(spec)
    rounds = [
        RoundRow(
            index=r.round_index,
            status=r.status.value,
            candidates=int(n),
            created_at=r.created_at,
            started_at=r.started_at,
            ended_at=r.ended_at,
            model_version_ids=tuple(r.model_version_ids or ()),
        )
        for r, n in session.execute(
            select(Round, func.count(Candidate.id))
            .outerjoin(Candidate, Candidate.round_id == Round.id)
            .where(Round.campaign_id == campaign.id)
            .group_by(Round.id)
            .order_by(Round.round_index)
        ).all()
    ]
    series = _capacity_traces(session, campaign.id)
    predictions = _latest_predictions(session, campaign.id)
    experiments = _experiments(session, campaign.id, series, predictions, threshold)
    candidates = _candidates(session, campaign.id, experiments, series, objectives)
    traces = {
        i: CapacityTrace(i, data["cycle_index"], data["discharge_capacity_ah"])
        for i, data in series.items()
    }
    recommendation = _recommendation(session, campaign.id)
    preferred = {
        e.id
        for e in experiments
        if recommendation is not None and e.candidate_id == recommendation.candidate_id
    }
    spectra, spectra_total = _spectra(session, experiments, spectra_experiments, preferred)
    cells = {e.id: e.cell_id for e in experiments}
    events, events_total, event_counts, event_levels = _events(
        session, campaign.id, event_limit, cells
    )
    nominal = spec.get("cell", {}).get("nominal_capacity_Ah")
    return ReportData(
        name=campaign.name,
        kind=campaign.kind.value,
        status=campaign.status.value,
        seed=int(campaign.seed),
        description=str(spec.get("description") or ""),
        spec=spec,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        generated_at=utcnow(),
        database=database,
        eol_threshold_ah=threshold,
        nominal_capacity_ah=float(nominal) if isinstance(nominal, int | float) else None,
        objectives=objectives,
        parameter_names=parameter_names_of(spec, [c.parameters for c in candidates]),
        rounds=tuple(rounds),
        candidates=tuple(candidates),
        experiments=tuple(experiments),
        traces=traces,
        spectra=tuple(spectra),
        spectra_total=spectra_total,
        events=tuple(events),
        events_total=events_total,
        event_counts=event_counts,
        event_levels=event_levels,
        recommendation=recommendation,
    )
