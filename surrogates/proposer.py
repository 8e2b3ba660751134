"""The one entry point for "what should the lab build next": :func:`propose`.

Given a search space (campaigns/spaces.py), the observations so far (inputs, objective
values with optional noise variances, constraint outcomes), the experiments still in
flight, a batch size ``q`` and :class:`ProposalOptions`, it returns a
:class:`Proposal`: the batch, each point's acquisition value, predicted mean/std of
the objective, the safety UCBs when safe mode was on, and a ``reason`` whenever
anything other than the requested acquisition produced (part of) the batch.

Decision path (docs/optimisation.md):

1. Validate. NaN/inf inputs or mismatched shapes raise :class:`ProposalInputError`;
   NaN objective values are dropped (counted in ``reason``).
2. Too few usable observations (< ``min_observations``) or a constant objective →
   space-filling fallback (scrambled Sobol for boxes, farthest-point subset for pools).
3. Otherwise fit one GP per outcome (surrogates/gp.py) unless a model is passed in.
4. Outcome constraints and nothing observed feasible → feasible-first
   (``qLogProbabilityOfFeasibility``), as Ax does; else the requested acquisition.
5. Safe mode (any constraint with ``safety=True``): candidates whose UCB
   ``μ + β σ`` of a safety model exceeds its limit are removed before optimising.
6. Optimise: discrete pools directly; boxes by sequential greedy (linear constraints
   in the reparametrised space, docs/decisions/0061); safe continuous search on a dense
   feasible Sobol set filtered by the safety rule.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from voltloop.campaigns.spaces import (
    ContinuousSpace,
    DiscreteSpace,
    MixedSpace,
    SearchSpace,
    SearchSpaceError,
)
from voltloop.surrogates.acquisition import (
    AcquisitionKind,
    OutcomeBound,
    build_acquisition,
    kriging_believer_pool,
    optimise_box,
    optimise_mixed,
    optimise_pool,
)
from voltloop.surrogates.gp import DTYPE, OutcomeSeries, as_tensor, fit_outcome_models
from voltloop.surrogates.safety import (
    DEFAULT_SAFETY_BETA,
    SafetyLimit,
    safe_mask,
    upper_confidence_bound,
)
from voltloop.surrogates.space_filling import farthest_point_subset, sobol_in_space


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
    """How a batch is built from a pool (docs/decisions/0061)."""

    SEQUENTIAL_GREEDY = "sequential_greedy"  # joint q-point values, pending via X_pending
    KRIGING_BELIEVER = "kriging_believer"  # condition on posterior means; single-point values


class ProposalOptions(BaseModel):
    """How to propose. Defaults suit a 224-protocol pool or a 3-D box."""

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


# --- coordinates -----------------------------------------------------------------------


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


# --- validation --------------------------------------------------------------------------


def _validate(
    space: SearchSpace,
    obs: Observations,
    pending: np.ndarray | None,
    options: ProposalOptions,
    q: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    notes: list[str] = []
    if q < 1:
        raise ProposalInputError(f"batch size q must be ≥ 1, got {q}")
    X = (
        np.asarray(obs.X, dtype=float).reshape(-1, space.d)
        if np.size(obs.X)
        else np.empty((0, space.d))
    )
    y = np.asarray(obs.y, dtype=float).reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise ProposalInputError(f"observations: {X.shape[0]} input rows but {y.shape[0]} outcomes")
    if not np.all(np.isfinite(X)):
        raise ProposalInputError("observations: inputs X contain NaN or infinite values")
    if np.any(np.isinf(y)):
        raise ProposalInputError("observations: objective values contain ±inf")
    if obs.y_var is not None and np.shape(obs.y_var) != y.shape:
        raise ProposalInputError(
            f"observations: y_var has shape {np.shape(obs.y_var)}, expected {y.shape}"
        )
    for c in options.constraints:
        if c.name not in obs.constraints:
            raise ProposalInputError(f"observations lack the constrained outcome {c.name!r}")
        if np.shape(obs.constraints[c.name]) != y.shape:
            raise ProposalInputError(f"constraint {c.name!r}: expected {y.shape[0]} values")
    if pending is not None and np.size(pending):
        P = np.asarray(pending, dtype=float).reshape(-1, space.d)
        if not np.all(np.isfinite(P)):
            raise ProposalInputError("pending candidates contain NaN or infinite values")
    else:
        P = np.empty((0, space.d))
    dropped = int(np.isnan(y).sum())
    if dropped:
        notes.append(f"{dropped} observation(s) with NaN objective left out of the objective model")
    return X, P, notes


# --- public API --------------------------------------------------------------------------


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


def fit_model(space: SearchSpace, obs: Observations, options: ProposalOptions | None = None):
    """Fit the objective and constraint GPs (``ModelListGP``, outputs in that order)."""
    options = options or ProposalOptions()
    X = _to_model(space, np.asarray(obs.X, dtype=float).reshape(-1, space.d))
    return fit_outcome_models(
        X, outcome_series(obs, options), model_bounds(space), max_iter=options.gp_max_iter
    )


def propose(
    space: SearchSpace,
    observations: Observations,
    pending: np.ndarray | None = None,
    q: int = 1,
    options: ProposalOptions | None = None,
    model: torch.nn.Module | None = None,
) -> Proposal:
    """Propose a batch of ``q`` candidates (see the module docstring for the decision path).

    Args:
        space: where to search.
        observations: what was measured (physical coordinates).
        pending: ``p × d`` candidates in flight (not re-proposed; the batch moves away).
        q: batch size (one per free channel).
        options: acquisition, constraints, safe mode, seeds.
        model: a fitted BoTorch model over model coordinates whose outputs are the
            objective then each constraint (skips fitting; e.g. the GNN ensemble).
    """
    options = options or ProposalOptions()
    t0 = time.perf_counter()
    X_obs, P, notes = _validate(space, observations, pending, options, q)
    y = np.asarray(observations.y, dtype=float).reshape(-1)
    finite = np.isfinite(y)
    safety = [
        SafetyLimit(c.name, i + 1, float(c.upper))
        for i, c in enumerate(options.constraints)
        if c.safety
    ]

    available, q_eff = _pool_availability(space, X_obs, P, options, q, notes)
    constant = finite.sum() >= 2 and np.ptp(y[finite]) == 0.0
    if model is None and (finite.sum() < options.min_observations or constant):
        why = (
            "the objective is constant over all observations"
            if constant
            else f"{int(finite.sum())} usable observation(s) < "
            f"min_observations={options.min_observations}"
        )
        return _fallback(
            space,
            X_obs,
            P,
            available,
            q,
            q_eff,
            options,
            observations,
            safety,
            notes + [f"space-filling batch: {why}"],
            t0,
        )

    if model is None:
        model = fit_model(space, observations, options)
    t_fit = time.perf_counter()

    Xm_obs = as_tensor(_to_model(space, X_obs))
    Pm = as_tensor(_to_model(space, P)) if len(P) else None
    bounds = [
        OutcomeBound(c.name, i + 1, c.upper, c.lower) for i, c in enumerate(options.constraints)
    ]
    kind = options.acquisition
    feasible_obs = _observed_feasible(observations, options) & finite
    if options.constraints and not feasible_obs.any():
        kind = AcquisitionKind.LOG_PROB_FEASIBLE
        notes.append(
            "no observation meets the outcome constraints yet: feasible-first "
            "(maximising probability of feasibility)"
        )
    sign = 1.0 if options.maximise else -1.0
    best_f = float((sign * y)[feasible_obs].max()) if feasible_obs.any() else None
    if kind == AcquisitionKind.LOG_EI and best_f is None:
        best_f = float((sign * y)[finite].max())
    acqf = build_acquisition(
        model,
        kind,
        X_baseline=Xm_obs[torch.as_tensor(finite)] if Xm_obs.shape[0] else Xm_obs,
        bounds=bounds,
        best_f=best_f,
        X_pending=Pm,
        mc_samples=options.mc_samples,
        seed=options.seed,
    )

    indices: list[int] | None = None
    acq_label = kind.value
    if isinstance(space, DiscreteSpace):
        choices_idx = np.flatnonzero(available)
        choices = as_tensor(space.candidates[choices_idx])
        if safety:
            choices, choices_idx = _filter_safe(model, choices, choices_idx, safety, options, notes)
        q_eff = min(q_eff, len(choices_idx))
        if options.batch_strategy == BatchStrategy.KRIGING_BELIEVER:
            base = AcquisitionKind.LOG_EI if kind == AcquisitionKind.LOG_NEI else kind
            acq_label = f"{base.value}+kriging_believer"
            picked, values = _kriging_believer(
                model, kind, Xm_obs, finite, bounds, best_f, Pm, choices, q_eff, options, sign, y
            )
        else:
            picked, values = optimise_pool(acqf, choices, q_eff, options.shortlist)
        indices = [int(choices_idx[i]) for i in picked]
        Xm = as_tensor(space.candidates[indices])
    elif options.continuous_optimiser == ContinuousOptimiser.SOBOL_SET or safety:
        Xm, values = _optimise_on_sobol_set(space, model, acqf, safety, options, q_eff, notes)
    elif isinstance(space, ContinuousSpace):
        Xm, values = _optimise_continuous(space, acqf, q_eff, options)
    else:
        Xm, values = optimise_mixed(
            acqf,
            as_tensor(model_bounds(space)),
            q_eff,
            space.combinations(),
            linear_constraints=_linear(space.continuous),
            num_restarts=max(2, options.num_restarts // 2),
            raw_samples=max(32, options.raw_samples // 2),
        )
    t_opt = time.perf_counter()
    return _assemble(
        space,
        model,
        Xm,
        values,
        indices,
        acq_label,
        options,
        safety,
        q,
        notes,
        fallback=False,
        timings={"fit": t_fit - t0, "acquisition": t_opt - t_fit, "total": t_opt - t0},
    )


# --- internals -------------------------------------------------------------------------------


def _linear(space: ContinuousSpace) -> list[tuple[tuple[int, ...], tuple[float, ...], float]]:
    return [(c.indices, c.coefficients, c.rhs) for c in space.linear_constraints]


def _pool_availability(
    space: SearchSpace,
    X_obs: np.ndarray,
    P: np.ndarray,
    options: ProposalOptions,
    q: int,
    notes: list[str],
) -> tuple[np.ndarray | None, int]:
    if not isinstance(space, DiscreteSpace):
        return None, q
    available = np.ones(space.size, dtype=bool)
    pending_idx = space.index_of(P)
    if (pending_idx < 0).any():
        raise ProposalInputError(
            f"{int((pending_idx < 0).sum())} pending candidate(s) are not in the pool"
        )
    available[pending_idx] = False
    if options.exclude_observed and len(X_obs):
        seen = space.index_of(X_obs)
        available[seen[seen >= 0]] = False
    n_free = int(available.sum())
    if n_free == 0:
        raise PoolExhaustedError(
            f"all {space.size} candidates of the pool are tested or in flight; "
            "nothing left to propose"
        )
    if n_free < q:
        notes.append(
            f"only {n_free} untested candidate(s) left in the pool: batch of {n_free} < q={q}"
        )
    return available, min(q, n_free)


def _observed_feasible(obs: Observations, options: ProposalOptions) -> np.ndarray:
    ok = np.ones(obs.n, dtype=bool)
    for c in options.constraints:
        v = np.asarray(obs.constraints[c.name], dtype=float)
        ok &= np.isfinite(v)
        if c.upper is not None:
            ok &= v <= c.upper
        if c.lower is not None:
            ok &= v >= c.lower
    return ok


def _filter_safe(
    model,
    choices: torch.Tensor,
    choices_idx: np.ndarray,
    safety: list[SafetyLimit],
    options: ProposalOptions,
    notes: list[str],
) -> tuple[torch.Tensor, np.ndarray]:
    mask = safe_mask(model, choices, safety, options.safety_beta)
    n_safe = int(mask.sum())
    if n_safe == 0:
        worst = {
            lim.name: float(
                upper_confidence_bound(model, choices, lim.output, options.safety_beta).min()
            )
            for lim in safety
        }
        raise NoSafeCandidateError(
            "safe mode: no candidate has every safety UCB (μ + β·σ, β="
            f"{options.safety_beta:g}) within its limit; lowest UCBs {worst} vs limits "
            f"{ {lim.name: lim.upper for lim in safety} }"
        )
    if n_safe < choices.shape[0]:
        notes.append(
            f"safe mode removed {choices.shape[0] - n_safe} candidate(s) whose safety UCB "
            f"(β={options.safety_beta:g}) exceeds a limit"
        )
    keep = mask.numpy()
    return choices[mask], choices_idx[keep]


def _kriging_believer(
    model, kind, Xm_obs, finite, bounds, best_f, Pm, choices, q, options, sign, y
):
    """Pool batch by the Kriging believer; qLogNEI becomes qLogEI on the posterior-mean
    incumbent (the best mean over observed feasible rows), which suits noisy data."""
    if kind == AcquisitionKind.LOG_NEI:
        kind = AcquisitionKind.LOG_EI
        with torch.no_grad():
            mean_obs = model.posterior(Xm_obs[torch.as_tensor(finite)]).mean[..., 0]
        best_f = float(mean_obs.max())

    def make(conditioned):
        return build_acquisition(
            conditioned,
            kind,
            X_baseline=Xm_obs,
            bounds=bounds,
            best_f=best_f,
            mc_samples=options.mc_samples,
            seed=options.seed,
        )

    picked, values, _ = kriging_believer_pool(model, make, choices, q, X_pending=Pm)
    return picked, values


def _optimise_continuous(space: ContinuousSpace, acqf, q: int, options: ProposalOptions):
    bounds = as_tensor(space.internal_bounds())
    if space.constraints and space.reparametrisation is None:
        raw = as_tensor(space.sample_feasible(options.raw_samples, seed=options.seed))
        slacks = [c.slack for c in space.constraints]
        return optimise_box(
            acqf,
            bounds,
            q,
            nonlinear_constraints=slacks,
            feasible_raw=raw,
            num_restarts=options.num_restarts,
        )
    return optimise_box(
        acqf,
        bounds,
        q,
        linear_constraints=_linear(space),
        num_restarts=options.num_restarts,
        raw_samples=options.raw_samples,
    )


def _optimise_on_sobol_set(space, model, acqf, safety, options, q, notes):
    """Score a dense feasible Sobol set (``candidate_samples`` points) like a pool.

    In safe mode the set is first filtered by the UCB rule, so every candidate that can
    enter the batch has been checked (docs/decisions/0062).
    """
    raw = sobol_in_space(space, options.candidate_samples, seed=options.seed)
    choices = as_tensor(_to_model(space, raw))
    idx = np.arange(len(raw))
    if safety:
        choices, idx = _filter_safe(model, choices, idx, safety, options, notes)
    if len(idx) < q:
        notes.append(f"only {len(idx)} candidate point(s) available: batch of {len(idx)} < q={q}")
    q = min(q, len(idx))
    picked, values = optimise_pool(acqf, choices, q, options.shortlist)
    return choices[picked], values


def _fallback(space, X_obs, P, available, q, q_eff, options, obs, safety, notes, t0) -> Proposal:
    model = None
    indices = None
    n_safe_obs = sum(
        np.isfinite(np.asarray(obs.constraints[s.name], dtype=float)).sum() for s in safety
    )
    if safety and n_safe_obs >= options.min_observations * len(safety):
        safe_options = options.model_copy(
            update={"constraints": [c for c in options.constraints if c.safety]}
        )
        series = outcome_series(obs, safe_options)[1:]
        model = fit_outcome_models(
            _to_model(space, X_obs),
            [OutcomeSeries("placeholder", np.zeros(len(X_obs)))] + series,
            model_bounds(space),
            max_iter=options.gp_max_iter,
        )
        safety = [SafetyLimit(s.name, i + 1, s.upper) for i, s in enumerate(safety)]
    if isinstance(space, DiscreteSpace):
        idx = np.flatnonzero(available)
        if model is not None:
            _, idx = _filter_safe(
                model, as_tensor(space.candidates[idx]), idx, safety, options, notes
            )
        taken = np.concatenate([X_obs, P]) if len(X_obs) + len(P) else None
        chosen = farthest_point_subset(
            space.candidates[idx],
            min(q_eff, len(idx)),
            space.bounds,
            avoid=taken,
            seed=options.seed,
        )
        indices = [int(idx[i]) for i in chosen]
        Xm = as_tensor(space.candidates[indices])
    else:
        raw = sobol_in_space(
            space, max(q, options.candidate_samples if model is not None else q), seed=options.seed
        )
        if model is not None:
            Xr = as_tensor(_to_model(space, raw))
            mask = safe_mask(model, Xr, safety, options.safety_beta).numpy()
            if not mask.any():
                raise NoSafeCandidateError(
                    "safe mode: no space-filling point passes the safety UCB rule"
                )
            raw = raw[mask]
            raw = raw[
                farthest_point_subset(
                    raw,
                    min(q, len(raw)),
                    space.bounds,
                    avoid=P if len(P) else None,
                    seed=options.seed,
                )
            ]
        Xm = as_tensor(_to_model(space, raw[:q]))
    return _assemble(
        space,
        model,
        Xm,
        None,
        indices,
        "space_filling",
        options,
        safety if model is not None else [],
        q,
        notes,
        fallback=True,
        timings={"total": time.perf_counter() - t0},
        objective_known=False,
    )


def _assemble(
    space,
    model,
    Xm: torch.Tensor,
    values,
    indices,
    acquisition: str,
    options,
    safety,
    q,
    notes,
    *,
    fallback: bool,
    timings,
    objective_known: bool = True,
) -> Proposal:
    X_phys = _to_physical(space, Xm.detach().numpy().astype(float))
    n = len(X_phys)
    mean: list[float | None] = [None] * n
    std: list[float | None] = [None] * n
    ucbs: dict[str, list[float]] = {}
    if model is not None and n:
        with torch.no_grad():
            post = model.posterior(Xm.to(DTYPE).unsqueeze(-2))
        if objective_known:
            sign = 1.0 if options.maximise else -1.0
            mean = (sign * post.mean[..., 0, 0]).tolist()
            std = post.variance[..., 0, 0].clamp_min(0).sqrt().tolist()
        for lim in safety:
            ucbs[lim.name] = upper_confidence_bound(
                model, Xm.to(DTYPE), lim.output, options.safety_beta
            ).tolist()
    params = (
        space.parameters(indices) if isinstance(space, DiscreteSpace) else space.parameters(X_phys)
    )
    labels = None
    if isinstance(space, DiscreteSpace) and space.labels and indices is not None:
        labels = [space.labels[i] for i in indices]
    return Proposal(
        candidates=X_phys.tolist(),
        parameters=params,
        indices=indices,
        labels=labels,
        acquisition=acquisition,
        acquisition_values=(values.tolist() if values is not None else [None] * n),
        mean=mean,
        std=std,
        safety_ucb=ucbs,
        safety_beta=options.safety_beta if safety else None,
        fallback=fallback,
        reason="; ".join(notes) if notes else None,
        q_requested=q,
        timings_s=timings,
    )


def proposal_summary(p: Proposal) -> Mapping[str, object]:
    """A short dict for logs: how many, which acquisition, why."""
    return {
        "n": len(p.candidates),
        "q": p.q_requested,
        "acquisition": p.acquisition,
        "fallback": p.fallback,
        "reason": p.reason,
    }


__all__ = [
    "NoSafeCandidateError",
    "Observations",
    "OutcomeConstraint",
    "PoolExhaustedError",
    "Proposal",
    "ProposalInputError",
    "ProposalOptions",
    "SearchSpaceError",
    "fit_model",
    "model_bounds",
    "propose",
]
