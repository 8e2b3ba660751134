"""The engine's proposer for protocol campaigns: BoTorch over the spec's search space.

Translates between the engine's observations (dicts of parameters, lifetimes with
their noise, peak temperatures) and ``voltloop.surrogates.proposer`` (arrays in the
space's coordinates), and turns the campaign's constraints into outcome constraints
— safety constraints are enforced by safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voltloop.campaigns.base import Direction, Metric
from voltloop.campaigns.protocol_campaign import ProtocolCampaign, SpacePreset
from voltloop.campaigns.spaces import (
    SearchSpace,
    attia_protocol_pool,
    continuous_space,
    discrete_space,
)
from voltloop.orchestrator.observations import PEAK_TEMPERATURE
from voltloop.orchestrator.ports import Observation, Proposal, ProposalBatch

#: Campaign constraint metrics → the observation outcome that measures them.
OUTCOME_OF_METRIC = {Metric.PEAK_TEMPERATURE: PEAK_TEMPERATURE}


def search_space(spec: ProtocolCampaign) -> SearchSpace:
    """The space the proposer searches, from the campaign's ``[space]`` table."""
    space = spec.space
    if space.preset == SpacePreset.ATTIA_2020:
        return attia_protocol_pool()
    names = [p.name for p in space.parameters]
    if all(p.values is not None for p in space.parameters):

        def feasible(X: np.ndarray) -> np.ndarray:
            ok = []
            for row in X:
                try:
                    space.resolve(dict(zip(names, row, strict=True)))
                    ok.append(True)
                except ValueError:
                    ok.append(False)
            return np.asarray(ok, dtype=bool)

        return discrete_space({p.name: p.values for p in space.parameters}, feasible)
    if any(p.values is not None for p in space.parameters):
        raise ValueError("mixed discrete/continuous protocol spaces are not supported yet")
    return continuous_space({p.name: tuple(p.bounds) for p in space.parameters})


class ProtocolProposer:
    """Implements ``orchestrator.ports.Proposer`` for protocol campaigns."""

    def __init__(self, spec: ProtocolCampaign):
        from voltloop.surrogates.proposer import OutcomeConstraint, ProposalOptions

        self.spec = spec
        self.space = search_space(spec)
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
        from voltloop.surrogates.proposer import Observations, propose

        X = self._matrix([o.parameters for o in observations])
        y = np.array([o.objective for o in observations], dtype=float)
        y_var = np.array(
            [np.nan if o.noise_std is None else o.noise_std**2 for o in observations], dtype=float
        )
        constraints = {
            c.name: np.array([o.outcomes.get(c.name, np.nan) for o in observations], dtype=float)
            for c in self.options.constraints
        }
        measured = Observations(
            X=X,
            y=y,
            y_var=None if np.all(np.isnan(y_var)) else np.nan_to_num(y_var, nan=np.nanmax(y_var)),
            constraints=constraints,
        )
        # tested-but-unobserved candidates (failed cells) are not proposed again
        in_flight = [
            *pending,
            *(t for t in tested if t not in [o.parameters for o in observations]),
        ]
        options = self.options.model_copy(update={"seed": seed})
        result = propose(
            self.space, measured, self._matrix(in_flight) if in_flight else None, q, options
        )
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
