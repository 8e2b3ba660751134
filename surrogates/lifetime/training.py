"""Retraining API over the database: ``fit(campaign)`` and ``predict(experiment, cycles)``.

The orchestrator calls, inside its own transaction (``db.engine.write_session``):

* :func:`pretrain` once, with a generated historical dataset (drivers/sim/history.py
  emits plain dicts), so the first round already has a predictor;
* :func:`fit` every round: training cells are the campaign's experiments that
  reached end of life (plus, optionally, the historical cells). Too few of them is
  not an error: the report says so and the latest stored version stays in use;
* :func:`predict` for each cell stopped at its early-prediction cycle; the result
  goes into ``prediction`` with the model version that made it.

Model versions are ``model_version`` rows of kind :data:`LIFETIME_KIND` (elastic
net) or :data:`HEALTH_KIND` (SVMs); the artifact is a safe ``.npz``
(:mod:`.artifacts`), written as the shared registry's ``ModelRecord`` through a
``ModelStore`` on the caller's session (:class:`SessionModelStore`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltloop.campaigns.checkpoints import aging_discharge, checkpoint_steps
from voltloop.db.enums import ExperimentStatus
from voltloop.db.ingest import store_prediction
from voltloop.db.models import Campaign, Candidate, Experiment, ModelVersion
from voltloop.db.readback import cycle_series, cycle_summaries, eis_spectra
from voltloop.surrogates.lifetime import artifacts
from voltloop.surrogates.lifetime.baseline import MIN_CELLS, ElasticNetLifetimeModel
from voltloop.surrogates.lifetime.dataset import (
    CellHistory,
    DischargeCurve,
    ImpedanceSpectrum,
    LifetimeDataError,
    MissingDataError,
    cycle_lives,
)
from voltloop.surrogates.lifetime.features import (
    FEATURE_SETS,
    FeatureConfig,
    available_features,
    feature_matrix,
)
from voltloop.surrogates.registry import ModelRecord

LIFETIME_KIND = "lifetime"
HEALTH_KIND = "cell_health"
ARTIFACT_FORMAT = "npz"  # voltloop-lifetime-artifact/1: arrays + JSON, no pickle


class UnknownModelError(LookupError):
    exit_code = 2


# --- database → CellHistory ---------------------------------------------------------------


def _nominal_capacity(experiment: Experiment, campaign: Campaign | None) -> float:
    protocol = experiment.protocol or {}
    for sample in (protocol.get("sample"), (protocol.get("protocol") or {}).get("sample")):
        if isinstance(sample, dict) and sample.get("capacity_mAh"):
            return float(sample["capacity_mAh"]) / 1000.0
    cell = ((campaign.spec if campaign else None) or {}).get("cell") or {}
    if cell.get("nominal_capacity_Ah"):
        return float(cell["nominal_capacity_Ah"])
    raise MissingDataError(
        f"experiment {experiment.id}: no nominal capacity (protocol sample.capacity_mAh or "
        "campaign cell.nominal_capacity_Ah)"
    )


def cell_from_db(
    session: Session,
    experiment_id: str,
    curve_cycles: Sequence[int] = (),
    up_to_cycle: int | None = None,
) -> CellHistory:
    """One experiment as a :class:`CellHistory`, raw discharge series of ``curve_cycles``
    (the aging discharge only: records of the protocol's checkpoint steps are left out).

    The per-cycle temperature integral is temperature_mean × cycle duration (the
    summary row keeps no integral). Missing optional columns are NaN.
    """
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise UnknownModelError(f"no experiment {experiment_id!r}")
    campaign = session.get(Campaign, experiment.campaign_id)
    rows = cycle_summaries(session, experiment_id)
    keep = np.ones(rows["cycle_index"].size, bool)
    if up_to_cycle is not None:
        keep = rows["cycle_index"] <= up_to_cycle
    rows = {k: v[keep] for k, v in rows.items()}
    duration = rows["t_end_s"] - rows["t_start_s"]
    summary = {
        "discharge_capacity_Ah": rows["discharge_capacity_ah"],
        "charge_capacity_Ah": rows["charge_capacity_ah"],
        "charge_time_s": rows["charge_time_s"],
        "temperature_max_C": rows["temperature_max_c"],
        "temperature_min_C": rows["temperature_min_c"],
        "temperature_mean_C": rows["temperature_mean_c"],
        "temperature_integral_Cs": rows["temperature_mean_c"] * duration,
        "internal_resistance_ohm": rows["internal_resistance_ohm"],
    }
    compiled = (experiment.protocol or {}).get("protocol") or {}
    checkpoint = checkpoint_steps(compiled) if "method" in compiled else None
    curves = {}
    stored = set(rows["cycle_index"].tolist())
    for c in curve_cycles:
        if c not in stored:
            continue  # features report the missing cycle by name
        try:
            series = cycle_series(session, experiment_id, c)
        except LookupError:
            continue
        except ValueError:  # InvalidRecordError: the cycle kept no raw series
            continue
        q = series.get("discharge_Ah")
        if q is None:  # integrate the current if the cycler gave no counter
            t, i = series["t_s"], np.clip(-series["current_A"].astype(float), 0, None)
            q = np.concatenate([[0.0], np.cumsum(np.diff(t) * (i[1:] + i[:-1]) / 2)]) / 3600
        steps = series.get("step", np.zeros(q.size, np.int64))
        voltage, capacity = aging_discharge(
            series["voltage_V"], series["current_A"], q, steps, checkpoint
        )
        curves[int(c)] = DischargeCurve(voltage, capacity)
    spectra = [
        ImpedanceSpectrum(
            cycle=s.cycle_index,
            frequency_Hz=s.frequency_hz,
            impedance_ohm=s.impedance_ohm,
            linkk_residual=s.linkk_residual,
            circuit=dict(s.circuit_parameters or {}),
        )
        for s in eis_spectra(session, experiment_id)
        if up_to_cycle is None or s.cycle_index <= up_to_cycle
    ]
    candidate = session.get(Candidate, experiment.candidate_id) if experiment.candidate_id else None
    params = {
        k: float(v)
        for k, v in ((candidate.parameters if candidate else {}) or {}).items()
        if isinstance(v, int | float)
    }
    cell = CellHistory(
        cell_id=experiment.cell_id or experiment.id,
        nominal_capacity_Ah=_nominal_capacity(experiment, campaign),
        cycle_index=rows["cycle_index"],
        summary=summary,
        discharge_curves=curves,
        spectra=spectra,
        protocol=params,
    )
    if up_to_cycle is None:
        cell.end_of_life_cycle = cell.observed_end_of_life()
    return cell


def resolve_campaign(session: Session, campaign: str | int) -> Campaign:
    row = (
        session.get(Campaign, campaign)
        if isinstance(campaign, int)
        else session.scalars(select(Campaign).where(Campaign.name == campaign)).first()
    )
    if row is None:
        raise UnknownModelError(f"no campaign {campaign!r}")
    return row


def training_cells(
    session: Session, campaign: Campaign, config: FeatureConfig
) -> list[CellHistory]:
    """Cells of the campaign's experiments whose stored cycles reach end of life
    (whatever their status: a running cell past 80 % is a valid label)."""
    ids = session.scalars(
        select(Experiment.id)
        .where(
            Experiment.campaign_id == campaign.id,
            Experiment.status.not_in([ExperimentStatus.PROPOSED, ExperimentStatus.QUEUED]),
        )
        .order_by(Experiment.id)
    ).all()
    cells = []
    for experiment_id in ids:
        cell = cell_from_db(session, experiment_id, (config.reference_cycle, config.early_cycle))
        if cell.end_of_life_cycle is not None:
            cells.append(cell)
    return cells


# --- the predictor ---------------------------------------------------------------------------


@dataclass
class EarlyLifePredictor:
    """Elastic net on Severson features at ``config.early_cycle`` (+ what it was fit on)."""

    config: FeatureConfig
    model: ElasticNetLifetimeModel
    feature_names: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    model_version_id: int | None = None

    @classmethod
    def fit(
        cls,
        cells: Sequence[CellHistory],
        config: FeatureConfig | None = None,
        feature_set: str = "full",
        seed: int = 0,
    ) -> EarlyLifePredictor:
        config = config or FeatureConfig()
        if len(cells) < MIN_CELLS:
            raise LifetimeDataError(
                f"need at least {MIN_CELLS} cells that reached end of life; got {len(cells)}"
            )
        names, dropped = available_features(cells, FEATURE_SETS[feature_set], config)
        if not names:
            raise LifetimeDataError(f"no feature of set {feature_set!r} is available: {dropped}")
        X = feature_matrix(cells, names, config)
        model = ElasticNetLifetimeModel(seed=seed).fit(X, cycle_lives(list(cells)), names)
        if len({json.dumps(c.protocol, sort_keys=True) for c in cells}) == 1:
            dropped["(note)"] = "all training cells ran one protocol; protocol effects unknown"
        return cls(config, model, names, dropped)

    def predict_cells(self, cells: Sequence[CellHistory], coverage: float = 0.9):
        return self.model.predict(feature_matrix(cells, self.feature_names, self.config), coverage)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.model.to_arrays()
        meta.update(
            feature_config=self.config.model_dump(),
            input_features=self.feature_names,
            dropped=self.dropped,
        )
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> EarlyLifePredictor:
        return cls(
            FeatureConfig(**meta["feature_config"]),
            ElasticNetLifetimeModel.from_arrays(arrays, meta),
            list(meta["input_features"]),
            dict(meta.get("dropped", {})),
        )


# --- storage: the only code that touches model_version ------------------------------------------


def training_set_hash(cells: Sequence[CellHistory]) -> str:
    digest = hashlib.sha256()
    for cell in sorted(cells, key=lambda c: c.cell_id):
        digest.update(f"{cell.cell_id}:{cell.n_cycles}:{cell.end_of_life_cycle};".encode())
    return digest.hexdigest()


class SessionModelStore:
    """The shared registry's ``ModelStore`` protocol (surrogates/registry.py) over the
    caller's session: rows are flushed, never committed, so a model version and the
    predictions made with it land in the orchestrator's one transaction (the
    registry's ``SqlModelStore`` commits its own session, which would deadlock
    inside an open SQLite write transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def next_version(self, name: str) -> int:
        current = self.session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
        )
        return int(current or 0) + 1

    def put(self, record: ModelRecord) -> int:
        row = ModelVersion(
            campaign_id=record.campaign_id,
            kind=record.kind,
            name=record.name,
            version=record.version,
            training_set_hash=record.training_set_hash,
            hyperparameters=_plain(record.hyperparameters),
            metrics=_plain(record.metrics),
            artifact_format=record.artifact_format,
            artifact=record.artifact,
        )
        self.session.add(row)
        self.session.flush()
        return int(row.id)


def store_model_version(
    session: Session,
    *,
    kind: str,
    name: str,
    campaign_id: int | None,
    blob: bytes,
    training_hash: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
) -> int:
    """Store a new version of ``name`` (next version number) as a registry
    ``ModelRecord`` with an ``npz`` artifact; returns the row id."""
    store = SessionModelStore(session)
    record = ModelRecord(
        kind=kind,
        name=name,
        training_set_hash=training_hash,
        hyperparameters=hyperparameters,
        metrics=metrics,
        artifact=blob,
        artifact_format=ARTIFACT_FORMAT,
        campaign_id=campaign_id,
        version=store.next_version(name),
    )
    return store.put(record)


def load_model_version(session: Session, model_version_id: int) -> EarlyLifePredictor:
    row = session.get(ModelVersion, model_version_id)
    if row is None or row.kind != LIFETIME_KIND:
        raise UnknownModelError(f"no lifetime model version {model_version_id}")
    if row.artifact_format != ARTIFACT_FORMAT or row.artifact is None:
        raise UnknownModelError(
            f"model version {model_version_id} has no {ARTIFACT_FORMAT} artifact"
        )
    predictor = EarlyLifePredictor.from_arrays(*artifacts.unpack(row.artifact))
    predictor.model_version_id = int(row.id)
    return predictor


def latest_version_id(
    session: Session, campaign_id: int | None, early_cycle: int | None = None
) -> int:
    """Newest lifetime version of the campaign, else the newest campaign-less (pretrained)."""
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.campaign_id, ModelVersion.hyperparameters)
        .where(ModelVersion.kind == LIFETIME_KIND)
        .order_by(ModelVersion.id.desc())
    ).all()
    for scope in (campaign_id, None):
        for rid, cid, hyper in rows:
            if cid == scope and (early_cycle is None or hyper.get("early_cycle") == early_cycle):
                return int(rid)
    raise UnknownModelError(
        "no lifetime model version yet: pretrain on a historical dataset or fit the campaign"
    )


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=float))


# --- the API the orchestrator calls ----------------------------------------------------------


@dataclass
class FitReport:
    model_version_id: int | None  # the version now in use (new or kept)
    trained: bool
    n_cells: int
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)


def _store_predictor(
    session: Session,
    predictor: EarlyLifePredictor,
    cells,
    name: str,
    campaign_id: int | None,
    source: str,
) -> int:
    stats = predictor.model.training_stats
    return store_model_version(
        session,
        kind=LIFETIME_KIND,
        name=name,
        campaign_id=campaign_id,
        blob=artifacts.pack(*predictor.to_arrays()),
        training_hash=training_set_hash(cells),
        hyperparameters={
            "model": "elastic_net",
            "early_cycle": predictor.config.early_cycle,
            "features": predictor.feature_names,
            "dropped": predictor.dropped,
            "source": source,
            **predictor.model.hyperparameters,
        },
        metrics=stats,
    )


def pretrain(
    session: Session,
    history: Sequence[dict[str, Any]],
    early_cycle: int = 100,
    campaign: str | int | None = None,
) -> int:
    """Fit on a generated historical dataset (plain dicts); returns the model version id."""
    cells = [CellHistory.from_dict(c) for c in history]
    cells = [c for c in cells if (c.end_of_life_cycle or c.observed_end_of_life()) is not None]
    predictor = EarlyLifePredictor.fit(cells, FeatureConfig(early_cycle=early_cycle))
    campaign_id = resolve_campaign(session, campaign).id if campaign is not None else None
    return _store_predictor(
        session,
        predictor,
        cells,
        f"lifetime-pretrained@{early_cycle}",
        campaign_id,
        "simulated history",
    )


def fit(
    session: Session,
    campaign: str | int,
    early_cycle: int | None = None,
    history: Sequence[dict[str, Any]] | None = None,
) -> FitReport:
    """Retrain the campaign's predictor on its cells that reached end of life."""
    row = resolve_campaign(session, campaign)
    n = early_cycle or int(
        ((row.spec or {}).get("lifetime") or {}).get("early_prediction_cycle", 100)
    )
    config = FeatureConfig(early_cycle=n)
    cells = training_cells(session, row, config)
    if history:
        cells += [CellHistory.from_dict(c) for c in history]
    if len(cells) < MIN_CELLS:
        try:
            kept = latest_version_id(session, row.id, n)
        except UnknownModelError:
            kept = None
        return FitReport(
            kept,
            False,
            len(cells),
            f"{len(cells)} cells reached end of life (need {MIN_CELLS}); "
            f"keeping model version {kept}",
        )
    predictor = EarlyLifePredictor.fit(cells, config)
    version = _store_predictor(
        session,
        predictor,
        cells,
        f"{row.name}/lifetime@{n}",
        row.id,
        "campaign" + (" + history" if history else ""),
    )
    return FitReport(
        version, True, len(cells), f"trained on {len(cells)} cells", predictor.model.training_stats
    )


@dataclass(frozen=True)
class StoredPrediction:
    experiment_id: str
    model_version_id: int
    cycles_seen: int
    life: float
    std: float
    lower: float
    upper: float
    extrapolated: bool = False  # a feature lay outside the training range
    note: str = ""  # which feature, how far


def predict(
    session: Session,
    experiment_id: str,
    cycles_seen: int,
    model_version_id: int | None = None,
    coverage: float = 0.9,
) -> StoredPrediction:
    """Predict one experiment's life from its first ``cycles_seen`` cycles and store it."""
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise UnknownModelError(f"no experiment {experiment_id!r}")
    version = model_version_id or latest_version_id(session, experiment.campaign_id)
    predictor = load_model_version(session, version)
    need = predictor.config.early_cycle
    if cycles_seen < need:
        raise MissingDataError(
            f"model version {version} predicts from {need} cycles; experiment "
            f"{experiment_id} has seen {cycles_seen}"
        )
    cell = cell_from_db(
        session, experiment_id, (predictor.config.reference_cycle, need), up_to_cycle=cycles_seen
    )
    estimate = predictor.predict_cells([cell], coverage)
    life, std = float(estimate.life[0]), float(estimate.std[0])
    store_prediction(
        session, experiment_id, version, cycles_seen, life, std if np.isfinite(std) else None
    )
    return StoredPrediction(
        experiment_id,
        version,
        cycles_seen,
        life,
        std,
        float(estimate.lower[0]),
        float(estimate.upper[0]),
        bool(estimate.extrapolated is not None and estimate.extrapolated[0]),
        estimate.extrapolation[0] if estimate.extrapolation else "",
    )
