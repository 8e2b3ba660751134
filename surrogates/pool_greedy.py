"""Pool batch builders that draw the posterior once (docs/decisions/0067, 0069).

- :func:`greedy_pool_batch` — sequential greedy qLogNEI / qLogEI / qLogPF, every pick's
  value a reduction over one joint posterior draw of candidates, pending points and
  baseline (BoTorch's criterion as ``optimize_acqf_discrete`` evaluates it).
- :func:`believer_pool_batch` — the Kriging believer: conditioning a GP on its own
  posterior mean leaves the mean unchanged and downdates the covariance by a rank-one
  term, so the whole batch is q covariance downdates of one joint posterior plus a
  single-point qLogEI / qLogPF per pick with shared base samples.

Shapes: candidates ``n × d``; pending ``p × d``; baseline ``b × d``; samples
``s × N × m`` (``m`` model outputs); returned values shape ``q``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from botorch.acquisition.logei import TAU_MAX, TAU_RELU
from botorch.sampling import IIDNormalSampler, SobolQMCNormalSampler
from botorch.utils.objective import (
    compute_feasibility_indicator,
    compute_smoothed_feasibility_indicator,
)
from botorch.utils.safe_math import log_fatplus, logmeanexp
from botorch.utils.sampling import draw_sobol_normal_samples
from torch.quasirandom import SobolEngine

from voltloop.surrogates.acquisition import AcquisitionKind, OutcomeBound


def joint_samples(
    model: torch.nn.Module, X: torch.Tensor, mc_samples: int, seed: int
) -> torch.Tensor:
    """Samples of the joint posterior of all rows of ``X`` (``N × d``) → ``s × N × m``.

    Quasi-random (scrambled Sobol base samples) while ``N·m`` is within the Sobol
    engine's dimension limit, i.i.d. normal beyond it.
    """
    with torch.no_grad():
        posterior = model.posterior(X)
        dims = X.shape[0] * getattr(model, "num_outputs", 1)
        shape = torch.Size([mc_samples])
        if dims <= SobolEngine.MAXDIM:
            sampler = SobolQMCNormalSampler(sample_shape=shape, seed=seed)
        else:
            sampler = IIDNormalSampler(sample_shape=shape, seed=seed)
        samples = sampler(posterior)
    return samples.reshape(mc_samples, X.shape[0], -1)


def greedy_pool_batch(
    model: torch.nn.Module,
    kind: AcquisitionKind,
    choices: torch.Tensor,
    q: int,
    *,
    X_baseline: torch.Tensor | None = None,
    X_pending: torch.Tensor | None = None,
    bounds: Sequence[OutcomeBound] = (),
    best_f: float | None = None,
    objective_output: int = 0,
    mc_samples: int = 128,
    seed: int = 0,
) -> tuple[list[int], torch.Tensor]:
    """Sequential-greedy batch of ``q`` distinct rows of ``choices`` (``n × d``) from one
    joint posterior draw over the pool, the pending points and the baseline.

    The criterion is BoTorch's, pick by pick, as ``optimize_acqf_discrete`` evaluates it
    (docs/decisions/0067):

    - qLogNEI (incremental, as BoTorch's default): a candidate's value is
      ``log mean_s[fatplus(f_s(c) − best_s) · feas_s(c)]`` where ``best_s`` is the best
      feasible sample over the baseline, the pending points and the earlier picks;
    - qLogEI / qLogPF: the smoothed maximum (``fatmax``) over pending points, earlier
      picks and the candidate of each point's log-improvement over ``best_f`` plus its
      log-feasibility (log-feasibility alone for qLogPF), averaged over samples in log
      space (``logmeanexp``).

    BoTorch draws fresh joint samples of (baseline, pending, picks, candidate) for every
    candidate at every pick; here all of them are marginals of one draw of the joint
    posterior over every distinct point involved (common random numbers), so the cost
    is one ``N``-point posterior and sample draw plus ``q`` cheap tensor reductions,
    instead of ``q × n`` joint posteriors of growing size.

    Returns row indices into ``choices`` and each pick's value given the earlier ones
    (shape ``q``).
    """
    n = choices.shape[0]
    if q > n:
        raise ValueError(f"cannot pick {q} distinct candidates from {n}")
    d = choices.shape[-1]
    empty = choices.new_zeros((0, d))
    base = X_baseline if X_baseline is not None and kind == AcquisitionKind.LOG_NEI else empty
    pending = X_pending if X_pending is not None else empty
    rows = torch.cat([choices, pending.to(choices), base.to(choices)])
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    Z = joint_samples(model, unique, mc_samples, seed)[:, inverse]  # s × (n + p + b) × m
    constraints = [c for bound in bounds for c in bound.callables()]
    obj = Z[..., objective_output]
    if constraints:
        log_feas = compute_smoothed_feasibility_indicator(
            constraints, Z, eta=1e-3, log=True, fat=True
        )
        feasible = compute_feasibility_indicator(constraints, Z)
    else:
        log_feas = torch.zeros_like(obj)
        feasible = torch.ones_like(obj, dtype=torch.bool)
    cand = slice(0, n)
    p = pending.shape[0]
    available = torch.ones(n, dtype=torch.bool)
    picked: list[int] = []
    values: list[torch.Tensor] = []
    if kind == AcquisitionKind.LOG_NEI:
        known = slice(n, rows.shape[0])  # pending points and baseline
        best = (
            torch.where(feasible[:, known], obj[:, known], -torch.inf).amax(-1)
            if (rows.shape[0] > n)
            else torch.full(obj.shape[:1], -torch.inf, dtype=obj.dtype)
        )
        if torch.isinf(best).any():
            # as BoTorch: samples without a feasible known point compare against a
            # lower bound of the objective (posterior mean − 6 std over the points)
            mean, std = obj.mean(0), obj.std(0)
            best = best.clamp_min(float((mean - 6 * std).min()))
        gain = log_feas[:, cand]
        for _ in range(q):
            scores = logmeanexp(log_fatplus(obj[:, cand] - best[:, None], tau=TAU_RELU) + gain, 0)
            scores = scores.masked_fill(~available, -torch.inf)
            k = int(scores.argmax())
            picked.append(k)
            values.append(scores[k])
            available[k] = False
            best = torch.maximum(best, torch.where(feasible[:, k], obj[:, k], -torch.inf))
        return picked, torch.stack(values)
    if kind == AcquisitionKind.LOG_EI:
        if best_f is None:
            raise ValueError("qLogEI needs the incumbent value best_f")
        utility = log_fatplus(obj - best_f, tau=TAU_RELU) + log_feas
    elif constraints:
        utility = log_feas
    else:
        raise ValueError("feasible-first acquisition needs at least one outcome constraint")
    chosen = list(range(n, n + p))  # pending points are part of every batch
    if not torch.isfinite(utility).all():
        raise ValueError("non-finite acquisition utilities; check the model's posterior")
    for _ in range(q):
        scores = logmeanexp(_fatmax_with(utility[:, chosen], utility[:, cand]), 0)
        scores = scores.masked_fill(~available, -torch.inf)
        k = int(scores.argmax())
        picked.append(k)
        values.append(scores[k])
        available[k] = False
        chosen.append(k)
    return picked, torch.stack(values)


def _pareto(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """BoTorch's fat-tailed kernel of ``fatmax`` (``botorch.utils.safe_math``, ALPHA = 2)."""
    a = alpha / 2
    return ((a * 2 * a) / (a * 2 * a + 2 * a * x + x.square())).pow(a)


def _fatmax_with(fixed: torch.Tensor, part: torch.Tensor, tau: float = TAU_MAX) -> torch.Tensor:
    """``fatmax`` over ``fixed`` (``s × k``) plus each column of ``part`` (``s × c``) → ``s × c``.

    ``fatmax(x) = M + τ·log Σ_j pareto((M − x_j)/τ)`` with ``M = max x``. Where a
    candidate does not exceed ``M_A = max(fixed)`` the sum over ``fixed`` is shared
    (one pass over ``s × k``); only the (sample, candidate) pairs that exceed it need
    their own sum. Equal to ``fatmax(cat(fixed, part_c))`` (tested).
    """
    if fixed.shape[-1] == 0:
        return part.clone()  # fatmax of a single value is the value
    top = fixed.amax(-1, keepdim=True)  # s × 1
    shared = _pareto((top - fixed) / tau).sum(-1, keepdim=True)  # s × 1
    below = part <= top
    out = top + tau * torch.log(shared + _pareto((top - part).clamp_min(0) / tau))
    rows, cols = (~below).nonzero(as_tuple=True)
    if rows.numel():
        above = part[rows, cols]
        total = 1.0 + _pareto((above[:, None] - fixed[rows]) / tau).sum(-1)
        out[rows, cols] = above + tau * torch.log(total)
    return out


def _joint_mean_covariance(
    model: torch.nn.Module, X: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latent posterior mean ``N × m``, per-output covariance ``m × N × N`` at ``X`` and
    each output's variance scale ``m`` (its ``Standardize`` variance, else 1).

    Outputs of a ``ModelListGP`` (or a single-output model) are independent.
    """
    subs = list(model.models) if hasattr(model, "models") else [model]
    if not hasattr(model, "models") and getattr(model, "num_outputs", 1) != 1:
        raise ValueError("the believer batch needs independent outputs (ModelListGP)")
    means, covs, scales = [], [], []
    with torch.no_grad():
        for sub in subs:
            mvn = sub.posterior(X).distribution
            means.append(mvn.mean.reshape(-1))
            covs.append(mvn.covariance_matrix.reshape(X.shape[0], X.shape[0]))
            stdvs = getattr(getattr(sub, "outcome_transform", None), "stdvs", None)
            scales.append(float(stdvs.reshape(-1)[0]) ** 2 if stdvs is not None else 1.0)
    return torch.stack(means, -1), torch.stack(covs), torch.tensor(scales, dtype=X.dtype)


def _downdate(cov: torch.Tensor, rows: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Covariance ``m × N × N`` after observing the points ``rows`` with per-output
    noise variances ``noise`` (``m``)."""
    cross = cov[:, :, rows]  # m × N × k
    eye = torch.eye(len(rows), dtype=cov.dtype)
    inner = cov[:, rows][:, :, rows] + noise[:, None, None] * eye
    return cov - cross @ torch.linalg.solve(inner, cross.transpose(-1, -2))


def believer_pool_batch(
    model: torch.nn.Module,
    kind: AcquisitionKind,
    choices: torch.Tensor,
    q: int,
    *,
    best_f: float | None,
    X_pending: torch.Tensor | None = None,
    bounds: Sequence[OutcomeBound] = (),
    objective_output: int = 0,
    mc_samples: int = 128,
    seed: int = 0,
    fantasy_noise: float = 1e-2,
    believe: bool = True,
) -> tuple[list[int], torch.Tensor]:
    """Batch of ``q`` distinct rows of ``choices`` (``n × d``) by the Kriging believer.

    With ``believe=False`` nothing is conditioned: the batch is the ``q`` best
    candidates by their single-point value (``single_point_ranking``, decision 0069).

    Same criterion as :func:`voltloop.surrogates.acquisition.kriging_believer_pool` with
    BoTorch's single-point qLogEI (incumbent ``best_f``) or qLogPF: the model is
    conditioned on its posterior mean at every pending point and each pick with
    variance ``fantasy_noise`` in standardised outcome units (× each output's
    ``Standardize`` variance; what BoTorch's ``condition_on_observations`` does with a
    standardised GP). Conditioning on the mean leaves the
    mean unchanged, so only the joint covariance over candidates and pending points is
    downdated — O(q·n²) instead of q model conditionings. Every candidate uses the same
    ``mc_samples`` base samples, as BoTorch's sampler does for a ``q = 1`` batch.
    """
    n = choices.shape[0]
    if q > n:
        raise ValueError(f"cannot pick {q} distinct candidates from {n}")
    if kind == AcquisitionKind.LOG_NEI:
        raise ValueError("the believer batch scores qLogEI or qLogPF, not qLogNEI")
    if kind == AcquisitionKind.LOG_EI and best_f is None:
        raise ValueError("qLogEI needs the incumbent value best_f")
    constraints = [c for bound in bounds for c in bound.callables()]
    if kind == AcquisitionKind.LOG_PROB_FEASIBLE and not constraints:
        raise ValueError("feasible-first acquisition needs at least one outcome constraint")
    pending = X_pending if X_pending is not None else choices.new_zeros((0, choices.shape[-1]))
    mean, cov, scale = _joint_mean_covariance(model, torch.cat([choices, pending.to(choices)]))
    m = mean.shape[-1]
    noise = fantasy_noise * scale  # as BoTorch: the fantasy noise is in standardised units
    if pending.shape[0] and believe:
        cov = _downdate(cov, torch.arange(n, n + pending.shape[0]), noise)
    # the base samples BoTorch's SobolQMCNormalSampler(seed) draws for one point: s × m
    base = draw_sobol_normal_samples(d=m, n=mc_samples, dtype=mean.dtype, seed=seed)
    available = torch.ones(n, dtype=torch.bool)
    picked: list[int] = []
    values: list[torch.Tensor] = []
    for _ in range(q):
        std = torch.diagonal(cov[:, :n, :n], dim1=-2, dim2=-1).clamp_min(0).sqrt().T  # n × m
        Z = mean[None, :n, :] + std[None] * base[:, None, :]  # s × n × m
        score = (
            compute_smoothed_feasibility_indicator(constraints, Z, eta=1e-3, log=True, fat=True)
            if constraints
            else torch.zeros(Z.shape[:-1], dtype=Z.dtype)
        )
        if kind == AcquisitionKind.LOG_EI:
            score = score + log_fatplus(Z[..., objective_output] - best_f, tau=TAU_RELU)
        scores = logmeanexp(score, 0).masked_fill(~available, -torch.inf)
        k = int(scores.argmax())
        picked.append(k)
        values.append(scores[k])
        available[k] = False
        if believe:
            cov = _downdate(cov, torch.tensor([k]), noise)
    return picked, torch.stack(values)
