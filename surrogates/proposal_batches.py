"""How a batch is built once a model exists (or cannot): pool availability, the
safe-mode filter, feasibility bookkeeping, continuous and Sobol-set optimisers, the
space-filling fallback and assembling the Proposal.
Used by :func:`voltloop.surrogates.proposer.propose`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from voltloop.campaigns.spaces import (
    ContinuousSpace,
    DiscreteSpace,
    SearchSpace,
)
from voltloop.surrogates.acquisition import (
    AcquisitionKind,
    OutcomeBound,
    build_acquisition,
    kriging_believer_pool,
    optimise_box,
    optimise_pool,
)
from voltloop.surrogates.gp import DTYPE, OutcomeSeries, as_tensor, fit_outcome_models
from voltloop.surrogates.pool_greedy import believer_pool_batch, greedy_pool_batch
from voltloop.surrogates.proposal_inputs import (
    BatchStrategy,
    NoSafeCandidateError,
    Observations,
    PoolExhaustedError,
    Proposal,
    ProposalInputError,
    ProposalOptions,
    _to_model,
    _to_physical,
    model_bounds,
    outcome_series,
)
from voltloop.surrogates.safety import (
    SafetyLimit,
    safe_mask,
    upper_confidence_bound,
)
from voltloop.surrogates.space_filling import farthest_point_subset, sobol_in_space


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


@dataclass
class AcquisitionSetting:
    """Everything a batch builder needs besides the candidates (model coordinates).

    ``X_baseline``: ``n × d`` observed inputs with a finite objective; ``X_pending``:
    ``p × d`` in-flight inputs or None; ``best_f``: best feasible observed objective
    (maximised sign) or None; ``kind``: the acquisition after the feasible-first rule.
    """

    model: torch.nn.Module
    kind: AcquisitionKind
    X_baseline: torch.Tensor
    X_pending: torch.Tensor | None
    bounds: list[OutcomeBound]
    best_f: float | None
    options: ProposalOptions
    _acqf: object = None

    def acquisition(self):
        """The BoTorch acquisition function (built once, on first use)."""
        if self._acqf is None:
            self._acqf = build_acquisition(
                self.model,
                self.kind,
                X_baseline=self.X_baseline,
                bounds=self.bounds,
                best_f=self.best_f,
                X_pending=self.X_pending,
                mc_samples=self.options.mc_samples,
                seed=self.options.seed,
            )
        return self._acqf


def _batch_from_choices(
    setting: AcquisitionSetting, choices: torch.Tensor, q: int
) -> tuple[list[int], torch.Tensor, str]:
    """Pick ``q`` distinct rows of ``choices`` (``n × d``) with the options' batch strategy.

    Returns row indices, per-pick values (shape ``q``) and the acquisition label.
    """
    options = setting.options
    strategy = options.batch_strategy
    kind = setting.kind
    if strategy in (BatchStrategy.KRIGING_BELIEVER, BatchStrategy.SINGLE_POINT_RANKING):
        base = AcquisitionKind.LOG_EI if kind == AcquisitionKind.LOG_NEI else kind
        believe = strategy == BatchStrategy.KRIGING_BELIEVER
        picked, values = _kriging_believer(setting, choices, q, believe)
        return picked, values, f"{base.value}+{BatchStrategy(strategy).value}"
    if strategy == BatchStrategy.SEQUENTIAL_GREEDY_BOTORCH:
        picked, values = optimise_pool(setting.acquisition(), choices, q, options.shortlist)
        return picked, values, kind.value
    rows = torch.arange(choices.shape[0])
    if choices.shape[0] > max(options.joint_pool_limit, q):
        acqf = setting.acquisition()
        with torch.no_grad():
            single = torch.cat([acqf(part.unsqueeze(-2)) for part in choices.split(1024)])
        rows = single.topk(max(options.joint_pool_limit, q)).indices
    picked, values = greedy_pool_batch(
        setting.model,
        kind,
        choices[rows],
        q,
        X_baseline=setting.X_baseline,
        X_pending=setting.X_pending,
        bounds=setting.bounds,
        best_f=setting.best_f,
        mc_samples=options.mc_samples,
        seed=options.seed,
    )
    return [int(rows[i]) for i in picked], values, kind.value


def _kriging_believer(
    setting: AcquisitionSetting, choices: torch.Tensor, q: int, believe: bool = True
):
    """Pool batch by the Kriging believer; qLogNEI becomes qLogEI on the posterior-mean
    incumbent (the best mean over observed rows), which suits noisy data."""
    kind, best_f, options = setting.kind, setting.best_f, setting.options
    if kind == AcquisitionKind.LOG_NEI:
        kind = AcquisitionKind.LOG_EI
        with torch.no_grad():
            mean_obs = setting.model.posterior(setting.X_baseline).mean[..., 0]
        best_f = float(mean_obs.max())

    model = setting.model
    if hasattr(model, "models") or getattr(model, "num_outputs", 1) == 1:
        return believer_pool_batch(
            model,
            kind,
            choices,
            q,
            best_f=best_f,
            X_pending=setting.X_pending,
            bounds=setting.bounds,
            mc_samples=options.mc_samples,
            seed=options.seed,
            believe=believe,
        )

    def make(conditioned):  # other models: condition the model itself at every pick
        return build_acquisition(
            conditioned,
            kind,
            X_baseline=setting.X_baseline,
            bounds=setting.bounds,
            best_f=best_f,
            mc_samples=options.mc_samples,
            seed=options.seed,
        )

    picked, values, _ = kriging_believer_pool(
        setting.model, make, choices, q, X_pending=setting.X_pending
    )
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


def _optimise_on_sobol_set(space, setting: AcquisitionSetting, safety, q, notes):
    """Score a dense feasible Sobol set (``candidate_samples`` points) like a pool.

    In safe mode the set is first filtered by the UCB rule, so every candidate that can
    enter the batch has been checked (docs/decisions/0062).
    """
    options = setting.options
    raw = sobol_in_space(space, options.candidate_samples, seed=options.seed)
    choices = as_tensor(_to_model(space, raw))
    idx = np.arange(len(raw))
    if safety:
        choices, idx = _filter_safe(setting.model, choices, idx, safety, options, notes)
    if len(idx) < q:
        notes.append(f"only {len(idx)} candidate point(s) available: batch of {len(idx)} < q={q}")
    q = min(q, len(idx))
    picked, values, label = _batch_from_choices(setting, choices, q)
    return choices[picked], values, label


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
