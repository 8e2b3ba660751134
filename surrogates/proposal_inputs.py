"""What goes into and comes out of a proposal: options, observations, the Proposal
itself, typed input errors, and the map between a search space's physical coordinates
and the unit cube the models work in (split from proposer.py, which re-exports it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field, model_validator

from voltloop.campaigns.spaces import (
    ContinuousSpace,
    MixedSpace,
    SearchSpace,
)
from voltloop.surrogates.acquisition import (
    AcquisitionKind,
)
from voltloop.surrogates.gp import OutcomeSeries
from voltloop.surrogates.safety import (
    DEFAULT_SAFETY_BETA,
)


class ProposalInputError(ValueError):
    """Observations, pending points or options that cannot produce a proposal."""

    exit_code = 2


class PoolExhaustedError(ProposalInputError):
    """Every candidate of a discrete pool is already tested or in flight."""


class NoSafeCandidateError(RuntimeError):
    """Safe mode found no candidate whose safety UCB is within every limit."""

    exit_code = 1


class OutcomeConstraint(BaseModel):
    """A constraint on a measured outcome; ``safety=True`` makes it a hard limit (safe mode)."""

    name: str
    upper: float | None = None
    lower: float | None = None
    safety: bool = False

    @model_validator(mode="after")
    def _check(self) -> OutcomeConstraint:
        if self.upper is None and self.lower is None:
            raise ValueError(f"constraint {self.name!r} needs an upper or a lower limit")
        if self.safety and (self.upper is None or self.lower is not None):
            raise ValueError(f"safety constraint {self.name!r} takes an upper limit only")
        return self


class ContinuousOptimiser(enum.StrEnum):
    """How a continuous or mixed space is searched (docs/decisions/0061)."""

    SOBOL_SET = "sobol_set"  # score a dense feasible Sobol set directly (default)
    GRADIENT = "gradient"  # optimize_acqf sequential greedy (L-BFGS-B / SLSQP)


class BatchStrategy(enum.StrEnum):
    """How a batch is built from a pool or a scored Sobol set (docs/decisions/0061, 0067)."""

    # sequential greedy, every value from one joint posterior draw over pool, pending
    # points and baseline (default; pool_greedy.greedy_pool_batch)
    SEQUENTIAL_GREEDY = "sequential_greedy"
    # the same criterion evaluated by BoTorch's optimize_acqf_discrete (fresh joint
    # samples per candidate and pick; the default before decision 0067)
    SEQUENTIAL_GREEDY_BOTORCH = "sequential_greedy_botorch"
    KRIGING_BELIEVER = "kriging_believer"  # condition on posterior means; single-point values
    # the q best candidates by single-point qLogEI on the posterior-mean incumbent, nothing
    # conditioned: replicates near the top (decision 0069)
    SINGLE_POINT_RANKING = "single_point_ranking"


class RecommendFrom(enum.StrEnum):
    """Where :func:`voltloop.surrogates.proposer.recommend` looks for the best design."""

    TESTED = "tested"  # only inputs that were built and observed (the field's practice)
    POOL = "pool"  # every candidate of a discrete pool (tested ones included)


class ProposalOptions(BaseModel):
    """How to propose. Defaults suit a 224-protocol pool or a 3-D box.

    ``shortlist``: candidate sets larger than this are first ranked point by point before
    BoTorch's sequential greedy (``sequential_greedy_botorch``) builds the batch;
    ``joint_pool_limit`` is the same bound for the default joint-sample greedy, whose
    cost grows with the size of one joint posterior draw rather than with ``q × n``.
    """

    acquisition: AcquisitionKind = AcquisitionKind.LOG_NEI
    maximise: bool = True
    constraints: list[OutcomeConstraint] = Field(default_factory=list)
    safety_beta: float = Field(DEFAULT_SAFETY_BETA, ge=0.0)
    exclude_observed: bool = True
    min_observations: int = Field(3, ge=1)
    mc_samples: int = Field(128, ge=8)
    num_restarts: int = Field(8, ge=1)
    raw_samples: int = Field(256, ge=16)
    continuous_optimiser: ContinuousOptimiser = ContinuousOptimiser.SOBOL_SET
    candidate_samples: int = Field(1024, ge=64)
    shortlist: int | None = Field(256, ge=1)
    joint_pool_limit: int = Field(1024, ge=1)
    batch_strategy: BatchStrategy = BatchStrategy.SEQUENTIAL_GREEDY
    gp_max_iter: int = Field(200, ge=1)
    seed: int = 0


@dataclass
class Observations:
    """What the lab has measured, in the space's physical coordinates.

    Attributes:
        X: ``n × d`` inputs.
        y: ``n`` objective values (NaN = not measured yet).
        y_var: ``n`` observation variances (an early prediction's std²), or None.
        constraints: outcome name → ``n`` values (NaN = unknown).
        constraint_vars: outcome name → ``n`` variances (optional).
    """

    X: np.ndarray
    y: np.ndarray
    y_var: np.ndarray | None = None
    constraints: dict[str, np.ndarray] = field(default_factory=dict)
    constraint_vars: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, d: int) -> Observations:
        return cls(X=np.empty((0, d)), y=np.empty(0))

    @property
    def n(self) -> int:
        return len(np.atleast_1d(self.y))


class Proposal(BaseModel):
    """A batch to build, with what the model expects of each point (JSON-ready)."""

    candidates: list[list[float]]
    parameters: list[dict[str, float]]
    indices: list[int] | None = None
    labels: list[str] | None = None
    acquisition: str
    acquisition_values: list[float | None]
    mean: list[float | None]
    std: list[float | None]
    safety_ucb: dict[str, list[float]] = Field(default_factory=dict)
    safety_beta: float | None = None
    fallback: bool = False
    reason: str | None = None
    q_requested: int
    timings_s: dict[str, float] = Field(default_factory=dict)


class Recommendation(BaseModel):
    """The design a campaign recommends, with what the models believe about it (JSON-ready).

    ``probability_feasible`` is the product over outcome constraints of the posterior
    probability that the constrained outcome's mean is within its limits (None when
    there are no constraints); ``feasible`` is whether it reached the threshold asked for.
    """

    candidate: list[float]
    parameters: dict[str, float]
    index: int | None = None
    label: str | None = None
    mean: float
    std: float
    probability_feasible: float | None = None
    feasible: bool = True
    among: RecommendFrom
    considered: int
    reason: str | None = None


def _to_model(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """Physical → model coordinates (reparametrised continuous columns)."""
    continuous = space.continuous if isinstance(space, MixedSpace) else space
    if isinstance(continuous, ContinuousSpace) and continuous.reparametrisation is not None:
        X = X.copy()
        k = continuous.d
        X[:, :k] = continuous.reparametrisation.to_internal(X[:, :k])
    return X


def _to_physical(space: SearchSpace, U: np.ndarray) -> np.ndarray:
    continuous = space.continuous if isinstance(space, MixedSpace) else space
    if isinstance(continuous, ContinuousSpace) and continuous.reparametrisation is not None:
        U = U.copy()
        k = continuous.d
        U[:, :k] = continuous.reparametrisation.to_physical(U[:, :k])
    return U


def model_bounds(space: SearchSpace) -> np.ndarray:
    """Bounds (``2 × d``) in the coordinates the surrogate is fit on."""
    if isinstance(space, ContinuousSpace):
        return space.internal_bounds()
    if isinstance(space, MixedSpace):
        return np.concatenate(
            [space.continuous.internal_bounds(), space.bounds[:, space.continuous.d :]], axis=1
        )
    return space.bounds


def outcome_series(obs: Observations, options: ProposalOptions) -> list[OutcomeSeries]:
    """Objective (sign-flipped when minimising) then each constraint outcome."""
    sign = 1.0 if options.maximise else -1.0
    series = [OutcomeSeries("objective", sign * np.asarray(obs.y, dtype=float), obs.y_var)]
    for c in options.constraints:
        series.append(
            OutcomeSeries(
                c.name,
                np.asarray(obs.constraints[c.name], dtype=float),
                obs.constraint_vars.get(c.name),
            )
        )
    return series
