"""The engine's proposer for protocol campaigns: BoTorch over the spec's search space.

Translates between the engine's observations (dicts of parameters, lifetimes with
their noise, peak temperatures) and ``voltloop.surrogates.proposer`` (arrays in the
space's coordinates), and turns the campaign's constraints into outcome constraints
— safety constraints are enforced by safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from voltloop.campaigns.base import Direction, Metric
from voltloop.campaigns.protocol_campaign import ProtocolCampaign
from voltloop.campaigns.spaces import space_from_spec
from voltloop.orchestrator.observations import PEAK_TEMPERATURE
from voltloop.orchestrator.ports import Observation, Proposal, ProposalBatch

#: Probability of meeting every limit a recommended protocol needs (decision 0068).
RECOMMEND_MIN_FEASIBLE = 0.9

#: Campaign constraint metrics → the observation outcome that measures them.
OUTCOME_OF_METRIC = {Metric.PEAK_TEMPERATURE: PEAK_TEMPERATURE}


class ProtocolProposer:
    """Implements ``orchestrator.ports.Proposer`` for protocol campaigns."""

    def __init__(self, spec: ProtocolCampaign):
        from voltloop.surrogates.proposer import OutcomeConstraint, ProposalOptions

        # GP fits on this 2-core class of machine run 10-50x slower with two torch
        # threads under load (docs/decisions/0066); the engine itself is single-threaded.
        torch.set_num_threads(1)

        self.spec = spec
        self.space = space_from_spec(spec.space)
        self.names = list(self.space.names)
        objective = spec.objectives[0]
        if objective.metric != Metric.CYCLE_LIFE:
            raise ValueError(
                f"protocol campaigns optimise cycle_life for now, not {objective.metric.value}"
            )
        constraints = []
        for constraint in spec.constraints:
            outcome = OUTCOME_OF_METRIC.get(constraint.metric)
            if outcome is None:
                raise ValueError(f"constraint on {constraint.metric.value} is not measured yet")
            constraints.append(
                OutcomeConstraint(
                    name=outcome,
                    upper=constraint.max,
                    lower=constraint.min,
                    safety=constraint.safe_mode and constraint.max is not None,
                )
            )
        self.options = ProposalOptions(
            maximise=objective.direction == Direction.MAXIMIZE,
            constraints=constraints,
            seed=spec.seed,
            exclude_observed=not spec.replicates,
        )

    def _matrix(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        return np.array([[row[n] for n in self.names] for row in rows], dtype=float).reshape(
            -1, len(self.names)
        )

    def propose(
        self,
        *,
        observations: Sequence[Observation],
        pending: Sequence[dict[str, float]],
        tested: Sequence[dict[str, float]],
        q: int,
        seed: int,
    ) -> ProposalBatch:
        from voltloop.surrogates.proposer import propose

        measured = self._measured(observations)
        # tested-but-unobserved candidates (failed cells) are not proposed again
        in_flight = [
            *pending,
            *(t for t in tested if t not in [o.parameters for o in observations]),
        ]
        options = self.options.model_copy(update={"seed": seed})
        result = propose(
            self.space, measured, self._matrix(in_flight) if in_flight else None, q, options
        )
        return self._batch(result)

    def _measured(self, observations: Sequence[Observation]):
        """The engine's observations as ``surrogates.proposer.Observations`` arrays."""
        from voltloop.surrogates.proposer import Observations

        X = self._matrix([o.parameters for o in observations])
        y = np.array([o.objective for o in observations], dtype=float)
        y_var = np.array(
            [np.nan if o.noise_std is None else o.noise_std**2 for o in observations], dtype=float
        )
        constraints = {
            c.name: np.array([o.outcomes.get(c.name, np.nan) for o in observations], dtype=float)
            for c in self.options.constraints
        }
        return Observations(
            X=X,
            y=y,
            y_var=None if np.all(np.isnan(y_var)) else np.nan_to_num(y_var, nan=np.nanmax(y_var)),
            constraints=constraints,
        )

    def _batch(self, result) -> ProposalBatch:
        proposals = [
            Proposal(
                parameters={n: float(v) for n, v in parameters.items() if n in self.names},
                acquisition_value=acq,
                predicted_mean=mean,
                predicted_std=std,
            )
            for parameters, acq, mean, std in zip(
                result.parameters,
                result.acquisition_values,
                result.mean,
                result.std,
                strict=True,
            )
        ]
        return ProposalBatch(proposals, reason=result.reason or result.acquisition)

    def confirmation_choice(self, observations: Sequence[Observation], k: int) -> list[Proposal]:
        """The ``k`` tested protocols a confirmation round retests: those
        :meth:`recommend` would rank first (best posterior mean among the protocols
        with probability ≥ ``RECOMMEND_MIN_FEASIBLE`` of meeting every limit). With too
        few observations for a model, the best observed ones."""
        from voltloop.surrogates.proposer import ProposalInputError, RecommendFrom, rank_designs

        try:
            ranked = rank_designs(
                self.space,
                self._measured(observations),
                self.options,
                k=k,
                among=RecommendFrom.TESTED,
                min_probability_feasible=RECOMMEND_MIN_FEASIBLE,
            )
        except ProposalInputError:
            best_first = sorted(
                (o for o in observations if np.isfinite(o.objective)),
                key=lambda o: o.objective,
                reverse=True,
            )
            chosen: dict[tuple, Proposal] = {}
            for o in best_first:
                key = tuple(o.parameters[n] for n in self.names)
                if key not in chosen and len(chosen) < k:
                    chosen[key] = Proposal(
                        parameters={n: float(o.parameters[n]) for n in self.names},
                        predicted_mean=o.objective,
                        predicted_std=o.noise_std,
                    )
            return list(chosen.values())
        return [
            Proposal(
                parameters={n: float(v) for n, v in r.parameters.items() if n in self.names},
                predicted_mean=r.mean,
                predicted_std=r.std,
            )
            for r in ranked
        ]

    def recommend(self, session: Any, campaign_id: int) -> dict[str, Any] | None:
        """The campaign's answer: the tested protocol with the best posterior-mean life
        among those the constraint models give ≥ ``RECOMMEND_MIN_FEASIBLE`` probability
        of meeting every limit (``surrogates.proposer.recommend``, decision 0068) — not
        the best single observation, which favours a lucky early prediction. With too
        few observations for a model, the best observed one. After a confirmation
        round, the confirmed protocol with the longest mean measured life."""
        from voltloop.orchestrator.observations import confirmed_recommendation, gather
        from voltloop.surrogates.proposer import ProposalInputError, RecommendFrom, recommend

        confirmed = confirmed_recommendation(self.spec, session, campaign_id)
        if confirmed is not None:
            return confirmed
        unconfirmed = {}
        if self.spec.confirmation is not None:
            unconfirmed = {
                "note": "no confirming cell has a result within the campaign's limits; "
                "recommended from early predictions"
            }
        eol_ah = self.spec.lifetime.end_of_life_capacity * self.spec.cell.nominal_capacity_Ah
        observations = gather(session, campaign_id, eol_ah).observations
        finite = [o for o in observations if np.isfinite(o.objective)]
        if not finite:
            return None
        best = max(finite, key=lambda o: o.objective)
        chosen: dict[str, Any] = {"rule": "best observed (too few observations for a model)"}
        try:
            rec = recommend(
                self.space,
                self._measured(observations),
                self.options,
                among=RecommendFrom.TESTED,
                min_probability_feasible=RECOMMEND_MIN_FEASIBLE,
            )
        except ProposalInputError:
            rec = None
        if rec is not None:
            target = np.array([rec.parameters[n] for n in self.names])
            best = min(
                finite,
                key=lambda o: float(np.abs(self._matrix([o.parameters])[0] - target).sum()),
            )
            chosen = {
                "rule": "best posterior mean among tested protocols with probability "
                f">= {RECOMMEND_MIN_FEASIBLE:g} of meeting every limit",
                "predicted_mean": rec.mean,
                "predicted_std": rec.std,
                "probability_feasible": rec.probability_feasible,
                "meets_limits": bool(rec.feasible),
            }
        return {
            "candidate_id": best.candidate_id,
            "parameters": best.parameters,
            "objective": best.objective,
            **chosen,
            **unconfirmed,
        }
