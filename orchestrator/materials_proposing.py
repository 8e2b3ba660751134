"""The engine's proposer for materials campaigns: a crystal-graph surrogate over the pool.

- The pool (campaigns/materials_pool.py) is stored once per campaign: one ``material``
  row per structure (shared by hash across campaigns) and a ``materials_pool`` event
  listing the campaign's material ids in pool order, so a resumed campaign reads its
  pool from the database — the stored spec does not keep the TOML file's directory
  (orchestrator/materials_run.py stores and reads it).
- Each round the proposer retrains on every observation: a CGCNN deep ensemble
  (surrogates/materials/gnn.py) learns the first objective from the crystal graphs,
  and one GP per modelled outcome on the ensemble's pooled embeddings
  (surrogates/materials/embedding_gp.py) gives mean and std for every pool member. One
  BoTorch model over the pool index (:class:`PoolOutcomesModel`) feeds
  ``surrogates.proposer.propose`` — the same acquisition code as protocols. Each
  round's ensemble is stored as a ``model_version`` row when a registry is given.
- Goals (docs/decisions/0006): the first objective is optimised; a further objective
  with a ``threshold`` becomes an outcome constraint at that threshold (ε-constraint);
  measured constraints (peak temperature, retention, ...) are outcome constraints —
  safety constraints (upper limits with ``safe_mode``) go through safe mode. The
  ``thermal_risk`` score is known before testing (a rule on the structure), so its
  limits remove materials from the proposable pool.
- Until enough materials are measured to train the ensemble the batch is space-filling
  over the pool (``propose``'s own fallback).

Proposals carry ``parameters = {"material_id": id}`` and ``material_id``; the engine
stores the candidate with its material row and the loader gets the structure from it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from sqlalchemy.orm import Session

from voltloop.campaigns.base import Direction, Metric
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.db.models import Candidate
from voltloop.orchestrator.materials_run import (  # noqa: F401 - re-exported
    POOL_EVENT,
    PoolMember,
    register_pool,
    stored_pool,
)
from voltloop.orchestrator.observations import (
    CampaignKnowledge,
    OutcomeLimit,
    gather_materials,
    meets_limits,
    outcome_limits,
)
from voltloop.orchestrator.ports import Observation, Proposal, ProposalBatch

MATERIAL_ID = "material_id"
#: The ensemble needs two training and two calibration graphs.
MIN_OBSERVATIONS = 4


class MaterialsPoolError(ValueError):
    """A pool that cannot be proposed from (empty, or every material excluded)."""

    exit_code = 2


@dataclass(frozen=True)
class SurrogateSettings:
    """GNN ensemble size and training length (defaults: decision 0064's, sized for CPU)."""

    members: int = 4
    epochs: int = 30
    hidden: int = 32
    gp_max_iter: int = 100


# --- goals ---------------------------------------------------------------------------------


def thermal_risk_excluded(spec: MaterialsCampaign, pool: Sequence[PoolMember]) -> dict[int, str]:
    """Pool positions removed by ``thermal_risk`` constraints → why.

    The score is the oxygen-release rule documented in drivers/sim/materials_mapping.py
    (oxides Ni 0.9, Co 0.8, Mn 0.5, Fe 0.3; phosphates 0.1): a property of the
    structure known before any test, so a limit filters the pool exactly.
    """
    limits = [c for c in spec.constraints if c.metric == Metric.THERMAL_RISK]
    if not limits:
        return {}
    from voltloop.drivers.sim.materials_mapping import MaterialError, material_properties

    excluded: dict[int, str] = {}
    for i, member in enumerate(pool):
        try:
            risk = material_properties(member.structure).thermal_risk
        except MaterialError as exc:
            excluded[i] = f"no thermal-risk score ({exc})"
            continue
        for c in limits:
            if (c.max is not None and risk > c.max) or (c.min is not None and risk < c.min):
                excluded[i] = f"thermal_risk {risk:.2f} outside [{c.min}, {c.max}]"
    return excluded


def _outcome(observations: Sequence[Observation], metric: str) -> np.ndarray:
    return np.array([o.outcomes.get(metric, np.nan) for o in observations], dtype=float)


def _modelable(values: np.ndarray) -> bool:
    """At least three finite values, not all equal."""
    ok = np.isfinite(values)
    return bool(ok.sum() >= 3 and np.ptp(values[ok]) > 0.0)


def _better(direction: Direction, a: float, b: float) -> bool:
    return a > b if direction == Direction.MAXIMIZE else a < b


# --- the surrogate as a BoTorch model ---------------------------------------------------


class PoolOutcomesModel(Model):
    """A BoTorch ``Model`` over a pool addressed by index with ``k`` independent outputs.

    ``mean`` and ``std`` are ``n × k`` (pool member × outcome). The posterior at ``X``
    (``batch × q × 1`` or ``N × 1`` pool indices) is Gaussian, independent across points
    and outputs — the multi-output form of ``surrogates.materials.gnn.PoolPosteriorModel``
    as one ``GPyTorchPosterior``, so BoTorch's samplers draw joint samples of it.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("pool_mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("pool_var", torch.as_tensor(std, dtype=torch.float64) ** 2)

    @property
    def num_outputs(self) -> int:
        return int(self.pool_mean.shape[-1])

    def posterior(
        self, X, output_indices=None, observation_noise=False, posterior_transform=None, **_
    ) -> GPyTorchPosterior:
        idx = X[..., 0].round().long().clamp(0, self.pool_mean.shape[0] - 1)
        mean, var = self.pool_mean[idx], self.pool_var[idx].clamp_min(1e-12)
        if output_indices is not None:
            mean, var = mean[..., list(output_indices)], var[..., list(output_indices)]
        mvns = [
            MultivariateNormal(mean[..., k], torch.diag_embed(var[..., k]))
            for k in range(mean.shape[-1])
        ]
        if len(mvns) == 1:
            posterior = GPyTorchPosterior(mvns[0])
        else:
            posterior = GPyTorchPosterior(MultitaskMultivariateNormal.from_independent_mvns(mvns))
        return posterior_transform(posterior) if posterior_transform is not None else posterior


# --- the proposer ------------------------------------------------------------------------


class MaterialsProposer:
    """Implements ``orchestrator.ports.Proposer`` for materials campaigns.

    Beyond the port it reads the campaign's observations (:meth:`gather`) and picks the
    recommendation (:meth:`recommend`); the engine's rounds use both when present.
    ``cathode_mass_g`` (per cell) turns discharge energy into specific energy;
    ``warm_up`` builds the crystal graphs in a background thread right away; with a
    ``registry`` each round's ensemble is stored as a ``model_version`` of ``campaign_id``.
    """

    def __init__(
        self,
        spec: MaterialsCampaign,
        pool: Sequence[PoolMember],
        *,
        cathode_mass_g: float | None,
        settings: SurrogateSettings | None = None,
        warm_up: bool = False,
        registry: Any = None,
        campaign_id: int | None = None,
    ):
        from voltloop.campaigns.spaces import index_space
        from voltloop.surrogates.proposer import OutcomeConstraint, ProposalOptions

        # One thread: GP and GNN fits on a shared 2-core machine (docs/decisions/0066).
        torch.set_num_threads(1)
        if not pool:
            raise MaterialsPoolError(f"campaign {spec.name!r}: the materials pool is empty")
        objective = spec.objectives[0]
        goals = [o.metric for o in spec.objectives] + [c.metric for c in spec.constraints]
        if Metric.SPECIFIC_ENERGY in goals and not cathode_mass_g:
            raise MaterialsPoolError(
                "specific_energy (Wh per kg of cathode) needs the cells' cathode mass"
            )
        self.spec = spec
        self.pool = list(pool)
        self.cathode_mass_g = cathode_mass_g
        self.settings = settings or SurrogateSettings()
        self.objective = objective
        self.excluded = thermal_risk_excluded(spec, self.pool)
        self.eligible = [i for i in range(len(self.pool)) if i not in self.excluded]
        if not self.eligible:
            reasons = "; ".join(f"{self.pool[i].label}: {why}" for i, why in self.excluded.items())
            raise MaterialsPoolError(
                f"campaign {spec.name!r}: every material of the pool is excluded by the "
                f"thermal_risk constraint ({reasons})"
            )
        self.position = {m.material_id: i for i, m in enumerate(self.pool)}
        self.space = index_space(len(self.eligible), [self.pool[i].label for i in self.eligible])
        self.limits = outcome_limits(spec)
        self.options = ProposalOptions(
            maximise=objective.direction == Direction.MAXIMIZE,
            constraints=[
                OutcomeConstraint(
                    name=lim.metric, upper=lim.upper, lower=lim.lower, safety=lim.safety
                )
                for lim in self.limits
            ],
            min_observations=MIN_OBSERVATIONS,
            gp_max_iter=self.settings.gp_max_iter,
            seed=spec.seed,
        )
        self._graphs: list[Any] | None = None
        self.registry = registry  # surrogates.registry.ModelRegistry, or None
        self.campaign_id = campaign_id
        self.last_ensemble: Any = None
        self._graphs_lock = threading.Lock()
        if warm_up:  # build the crystal graphs (and import torch-geometric, ~8 s) while
            # the first round's cells cycle, not when the second round is proposed
            threading.Thread(target=self.graphs, name="crystal-graphs", daemon=True).start()

    # --- what the campaign measured ----------------------------------------------------
    def gather(self, session: Session, campaign_id: int) -> CampaignKnowledge:
        spec = self.spec
        return gather_materials(
            session,
            campaign_id,
            self.objective.metric.value,
            test_cycle=spec.lifetime.stop_cycle - 1,
            nominal_ah=spec.cell.nominal_capacity_Ah,
            cathode_mass_g=self.cathode_mass_g,
            eol_threshold_ah=spec.lifetime.end_of_life_capacity * spec.cell.nominal_capacity_Ah,
        )

    def recommend(self, session: Session, campaign_id: int) -> dict[str, Any] | None:
        """The best tested material meeting every limit (else the best tested at all)."""
        knowledge = self.gather(session, campaign_id)
        finite = [o for o in knowledge.observations if math.isfinite(o.objective)]
        if not finite:
            return None
        feasible = [o for o in finite if meets_limits(self.limits, o.outcomes)]
        best = None
        for o in feasible or finite:
            if best is None or _better(self.objective.direction, o.objective, best.objective):
                best = o
        assert best is not None
        member = self.pool[self.position[best.material_id]]
        candidate = session.get(Candidate, best.candidate_id)
        return {
            "candidate_id": best.candidate_id,
            "material_id": best.material_id,
            "label": member.label,
            "formula": member.formula,
            "parameters": best.parameters,
            "metric": self.objective.metric.value,
            "objective": best.objective,
            "outcomes": best.outcomes,
            "meets_limits": bool(feasible),
            "predicted_mean": candidate.predicted_mean if candidate else None,
            "predicted_std": candidate.predicted_std if candidate else None,
        }

    # --- proposing --------------------------------------------------------------------
    def _space_index(self, parameters: dict[str, float]) -> int | None:
        position = self.position.get(int(parameters[MATERIAL_ID]))
        if position is None or position in self.excluded:
            return None
        return self.eligible.index(position)

    def graphs(self) -> list[Any]:
        """Crystal graphs of the eligible pool members (built once)."""
        with self._graphs_lock:
            return self._build_graphs()

    def _build_graphs(self) -> list[Any]:
        if self._graphs is None:
            from pymatgen.core import Structure

            from voltloop.surrogates.materials.graphs import GraphFeaturiser

            featurise = GraphFeaturiser()
            self._graphs = [
                featurise(Structure.from_dict(self.pool[i].structure)) for i in self.eligible
            ]
        return self._graphs

    def fit_pool_model(
        self,
        rows: list[int],
        observations: Sequence[Observation],
        limits: Sequence[OutcomeLimit],
        seed: int,
    ):
        """Ensemble on the objective, then one embedding GP per outcome.

        ``rows`` are the observations' pool indices. Returns a ``ModelList`` over pool
        indices: the objective (in maximisation sign), then each of ``limits``.
        """
        # The graphs first: this waits for the warm-up thread, whose import of
        # torch-geometric must finish before this thread imports torch_geometric.nn
        # (concurrent imports of its circular modules fail with a partial module).
        graphs = self.graphs()
        from voltloop.surrogates.materials.embedding_gp import embedding_gp_predict
        from voltloop.surrogates.materials.gnn import GnnSettings, GraphEnsemble

        sign = 1.0 if self.options.maximise else -1.0
        y = sign * np.array([o.objective for o in observations])
        fit = np.isfinite(y)
        settings = GnnSettings(
            hidden=self.settings.hidden,
            members=self.settings.members,
            epochs=self.settings.epochs,
            seed=seed,
        )
        train_graphs = [graphs[r] for r, f in zip(rows, fit, strict=True) if f]
        ensemble = GraphEnsemble(settings).fit(train_graphs, y[fit])
        self.last_ensemble = ensemble
        _, _, embeddings = ensemble.predict_with_embeddings(graphs)
        means, stds = [], []
        for values in [y, *(_outcome(observations, lim.metric) for lim in limits)]:
            ok = np.isfinite(values)
            mean, std = embedding_gp_predict(
                embeddings[rows][ok], values[ok], embeddings, max_iter=self.settings.gp_max_iter
            )
            means.append(mean)
            stds.append(std)
        return PoolOutcomesModel(np.stack(means, axis=-1), np.stack(stds, axis=-1))

    def propose(
        self,
        *,
        observations: Sequence[Observation],
        pending: Sequence[dict[str, float]],
        tested: Sequence[dict[str, float]],
        q: int,
        seed: int,
    ) -> ProposalBatch:
        from voltloop.surrogates.proposer import Observations, PoolExhaustedError, propose

        usable = [(self._space_index(o.parameters), o) for o in observations]
        usable = [(r, o) for r, o in usable if r is not None]
        rows = [r for r, _ in usable]
        obs = [o for _, o in usable]
        observed = {r for r in rows}
        # failed cells (tested, never observed) are not proposed again
        busy = [self._space_index(p) for p in [*pending, *tested]]
        busy = sorted({r for r in busy if r is not None and r not in observed})
        finite = sum(math.isfinite(o.objective) for o in obs)
        model, notes, limits, versions = None, [], [], []
        if finite >= MIN_OBSERVATIONS:
            limits = [lim for lim in self.limits if _modelable(_outcome(obs, lim.metric))]
            if len(limits) < len(self.limits):
                left_out = sorted({lim.metric for lim in self.limits} - {m.metric for m in limits})
                notes.append(f"too few distinct values yet to model {', '.join(left_out)}")
            model = self.fit_pool_model(rows, obs, limits, seed)
            versions = self._register(rows, obs)
        options = self.options.model_copy(
            update={
                "seed": seed,
                "constraints": [
                    c for c in self.options.constraints if c.name in {m.metric for m in limits}
                ],
            }
        )
        constraints = {c.name: _outcome(obs, c.name) for c in options.constraints}
        measured = Observations(
            X=np.array(rows, dtype=float).reshape(-1, 1),
            y=np.array([o.objective for o in obs], dtype=float),
            constraints=constraints,
        )
        in_flight = np.array(busy, dtype=float).reshape(-1, 1) if busy else None
        try:
            result = propose(self.space, measured, in_flight, q, options, model=model)
        except PoolExhaustedError as exc:
            return ProposalBatch([], reason=f"pool exhausted: {exc}")
        if self.excluded:
            notes.append(f"{len(self.excluded)} material(s) excluded by thermal_risk")
        proposals = []
        for index, acq, mean, std in zip(
            result.indices or [], result.acquisition_values, result.mean, result.std, strict=True
        ):
            member = self.pool[self.eligible[index]]
            proposals.append(
                Proposal(
                    parameters={MATERIAL_ID: float(member.material_id)},
                    acquisition_value=acq,
                    predicted_mean=mean,
                    predicted_std=std,
                    material_id=member.material_id,
                )
            )
        reason = "; ".join(filter(None, [result.reason or result.acquisition, *notes]))
        return ProposalBatch(proposals, reason=reason, model_version_ids=versions)

    def _register(self, rows: list[int], observations: Sequence[Observation]) -> list[int]:
        """Store the round's ensemble as a ``model_version`` row (tensor-only artifact)."""
        if self.registry is None or self.last_ensemble is None:
            return []
        from voltloop.surrogates.registry import training_set_hash

        ensemble = self.last_ensemble
        y = np.array([o.objective for o in observations], dtype=float)
        record = self.registry.register(
            kind="materials_gnn",
            name=f"{self.spec.name}/materials_gnn",
            state=ensemble.state_dict(),
            training_hash=training_set_hash(np.array(rows, dtype=float), y),
            hyperparameters=dataclasses.asdict(ensemble.settings),
            metrics={
                "observations": len(rows),
                "train_s": ensemble.train_seconds,
                "std_scale": ensemble.std_scale,
                "objective": self.objective.metric.value,
            },
            campaign_id=self.campaign_id,
        )
        return [int(record.id)] if record.id is not None else []

    def label_of(self, parameters: dict[str, float]) -> str:
        """The pool label of a candidate (for protocol names and summaries)."""
        return self.pool[self.position[int(parameters[MATERIAL_ID])]].label
