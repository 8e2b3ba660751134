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

import time
from collections.abc import Mapping

import numpy as np
import torch

from voltloop.campaigns.spaces import (
    ContinuousSpace,
    DiscreteSpace,
    SearchSpace,
    SearchSpaceError,
)
from voltloop.surrogates.acquisition import (
    AcquisitionKind,
    OutcomeBound,
    optimise_mixed,
)
from voltloop.surrogates.gp import as_tensor, fit_outcome_models
from voltloop.surrogates.proposal_batches import (
    AcquisitionSetting,
    _assemble,
    _batch_from_choices,
    _fallback,
    _filter_safe,
    _linear,
    _observed_feasible,
    _optimise_continuous,
    _optimise_on_sobol_set,
    _pool_availability,
)
from voltloop.surrogates.proposal_inputs import (
    BatchStrategy,
    ContinuousOptimiser,
    NoSafeCandidateError,
    Observations,
    OutcomeConstraint,
    PoolExhaustedError,
    Proposal,
    ProposalInputError,
    ProposalOptions,
    Recommendation,
    RecommendFrom,
    _to_model,
    model_bounds,
    outcome_series,
)
from voltloop.surrogates.safety import (
    SafetyLimit,
)


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
    setting = AcquisitionSetting(
        model=model,
        kind=kind,
        X_baseline=Xm_obs[torch.as_tensor(finite)] if Xm_obs.shape[0] else Xm_obs,
        X_pending=Pm,
        bounds=bounds,
        best_f=best_f,
        options=options,
    )

    indices: list[int] | None = None
    acq_label = kind.value
    if isinstance(space, DiscreteSpace):
        choices_idx = np.flatnonzero(available)
        choices = as_tensor(space.candidates[choices_idx])
        if safety:
            choices, choices_idx = _filter_safe(model, choices, choices_idx, safety, options, notes)
        q_eff = min(q_eff, len(choices_idx))
        picked, values, acq_label = _batch_from_choices(setting, choices, q_eff)
        indices = [int(choices_idx[i]) for i in picked]
        Xm = as_tensor(space.candidates[indices])
    elif options.continuous_optimiser == ContinuousOptimiser.SOBOL_SET or safety:
        Xm, values, acq_label = _optimise_on_sobol_set(space, setting, safety, q_eff, notes)
    elif isinstance(space, ContinuousSpace):
        Xm, values = _optimise_continuous(space, setting.acquisition(), q_eff, options)
    else:
        Xm, values = optimise_mixed(
            setting.acquisition(),
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


def proposal_summary(p: Proposal) -> Mapping[str, object]:
    """A short dict for logs: how many, which acquisition, why."""
    return {
        "n": len(p.candidates),
        "q": p.q_requested,
        "acquisition": p.acquisition,
        "fallback": p.fallback,
        "reason": p.reason,
    }


def _posterior_table(
    space: SearchSpace,
    observations: Observations,
    options: ProposalOptions,
    among: RecommendFrom,
    model: torch.nn.Module | None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Designs considered (``among``), their posterior means and stds per outcome
    (objective first) and their probability of meeting every outcome constraint."""
    X_obs, _, _ = _validate(space, observations, None, options, 1)
    y = np.asarray(observations.y, dtype=float).reshape(-1)
    finite = np.isfinite(y)
    if model is None and finite.sum() < options.min_observations:
        raise ProposalInputError(
            f"cannot recommend from {int(finite.sum())} usable observation(s) "
            f"(min_observations={options.min_observations})"
        )
    if among == RecommendFrom.POOL:
        if not isinstance(space, DiscreteSpace):
            raise ProposalInputError("recommending from the pool needs a discrete space")
        X = space.candidates
    else:
        X = np.unique(X_obs[finite], axis=0)
    if model is None:
        model = fit_model(space, observations, options)
    Xm = as_tensor(_to_model(space, X))
    with torch.no_grad():
        posterior = model.posterior(Xm.unsqueeze(-2))
        mean = posterior.mean[..., 0, :]
        std = posterior.variance[..., 0, :].clamp_min(1e-18).sqrt()
    prob = torch.ones(len(X), dtype=mean.dtype)
    for i, c in enumerate(options.constraints, start=1):
        normal = torch.distributions.Normal(mean[:, i], std[:, i])
        upper = normal.cdf(torch.tensor(c.upper)) if c.upper is not None else 1.0
        lower = normal.cdf(torch.tensor(c.lower)) if c.lower is not None else 0.0
        prob = prob * (upper - lower)
    return X, mean, std, prob


def _recommendation(
    space: SearchSpace,
    X: np.ndarray,
    i: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    prob: torch.Tensor,
    ok: torch.Tensor,
    options: ProposalOptions,
    among: RecommendFrom,
    reason: str | None,
) -> Recommendation:
    sign = 1.0 if options.maximise else -1.0
    index = None
    label = None
    if isinstance(space, DiscreteSpace):
        index = int(space.index_of(X[i : i + 1])[0])
        index = index if index >= 0 else None
        if index is not None and space.labels:
            label = space.labels[index]
    if not isinstance(space, DiscreteSpace):
        params = space.parameters(X[i : i + 1])[0]
    elif index is not None:
        params = space.parameters([index])[0]
    else:  # an observed input outside the pool
        params = dict(zip(space.names, map(float, X[i]), strict=True))
    return Recommendation(
        candidate=X[i].tolist(),
        parameters=params,
        index=index,
        label=label,
        mean=float(sign * mean[i, 0]),
        std=float(std[i, 0]),
        probability_feasible=float(prob[i]) if options.constraints else None,
        feasible=bool(ok[i]),
        among=among,
        considered=len(X),
        reason=reason,
    )


def recommend(
    space: SearchSpace,
    observations: Observations,
    options: ProposalOptions | None = None,
    *,
    among: RecommendFrom = RecommendFrom.TESTED,
    min_probability_feasible: float = 0.5,
    model: torch.nn.Module | None = None,
) -> Recommendation:
    """The design to recommend: the best posterior mean of the objective among the
    designs whose constraint models give probability ≥ ``min_probability_feasible`` of
    meeting every outcome constraint (0.5: the posterior mean within the limits).

    The posterior mean, not the best single observation, so one lucky early prediction
    does not win (docs/decisions/0068). ``among=TESTED`` considers the observed inputs,
    ``POOL`` every candidate of a discrete pool. If no design reaches the threshold the
    one most likely to be feasible is returned with ``feasible=False`` and a reason.
    Raises :class:`ProposalInputError` with fewer than ``min_observations`` usable values.
    """
    options = options or ProposalOptions()
    X, mean, std, prob = _posterior_table(space, observations, options, among, model)
    ok = prob >= min_probability_feasible
    reason = None
    if ok.any():
        best = int(torch.where(ok, mean[:, 0], -torch.inf).argmax())
    else:
        best = int(prob.argmax())
        reason = (
            f"no design reaches probability {min_probability_feasible:g} of meeting the "
            f"constraints; the most likely one has {float(prob[best]):.3g}"
        )
    return _recommendation(space, X, best, mean, std, prob, ok, options, among, reason)


def rank_designs(
    space: SearchSpace,
    observations: Observations,
    options: ProposalOptions | None = None,
    *,
    k: int,
    among: RecommendFrom = RecommendFrom.TESTED,
    min_probability_feasible: float = 0.5,
    model: torch.nn.Module | None = None,
) -> list[Recommendation]:
    """The ``k`` designs :func:`recommend` would rank first: best posterior mean first,
    among those with probability ≥ ``min_probability_feasible`` of meeting every
    constraint (fewer than ``k`` if fewer qualify). What a confirmation round retests."""
    options = options or ProposalOptions()
    X, mean, std, prob = _posterior_table(space, observations, options, among, model)
    ok = prob >= min_probability_feasible
    order = torch.argsort(torch.where(ok, mean[:, 0], -torch.inf), descending=True)
    chosen = [int(i) for i in order if bool(ok[int(i)])][:k]
    return [_recommendation(space, X, i, mean, std, prob, ok, options, among, None) for i in chosen]


__all__ = [
    "BatchStrategy",
    "ContinuousOptimiser",
    "NoSafeCandidateError",
    "Observations",
    "OutcomeConstraint",
    "PoolExhaustedError",
    "Proposal",
    "ProposalInputError",
    "ProposalOptions",
    "Recommendation",
    "RecommendFrom",
    "SearchSpaceError",
    "fit_model",
    "model_bounds",
    "outcome_series",
    "propose",
    "proposal_summary",
    "rank_designs",
    "recommend",
]
