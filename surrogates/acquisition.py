"""Batch acquisition: build a constrained log-EI family acquisition and optimise it.

- :func:`build_acquisition` — ``qLogNoisyExpectedImprovement`` (default; right for
  noisy early-life predictions), ``qLogExpectedImprovement`` (best feasible
  observation as incumbent) or ``qLogProbabilityOfFeasibility`` (feasible-first, used
  while no observation satisfies the outcome constraints, as Ax does). Outcome
  constraints become BoTorch constraint callables ``c(Z) ≤ 0`` on posterior samples;
  in-flight experiments are passed as ``X_pending``.
- :func:`optimise_pool` — a discrete pool scored directly with sequential greedy
  ``optimize_acqf_discrete`` (no duplicates in a batch; already tested and pending
  candidates removed).
- :func:`optimise_box` — a continuous box with linear inequality constraints
  (``optimize_acqf``, sequential greedy) or nonlinear ones (own sequential-greedy loop
  with SLSQP started from feasible raw samples; docs/decisions/0061 says when).
- :func:`optimise_mixed` — continuous inputs plus discrete ones, one optimisation per
  discrete combination (``optimize_acqf_mixed``).

Shapes: candidate sets are ``n × d``; acquisition inputs ``b × q × d``; returned
batches ``q × d`` with acquisition values of shape ``q`` (the value of each point given
the ones chosen before it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition import (
    AcquisitionFunction,
    qLogExpectedImprovement,
    qLogNoisyExpectedImprovement,
)
from botorch.acquisition.logei import qLogProbabilityOfFeasibility
from botorch.acquisition.objective import GenericMCObjective
from botorch.optim import optimize_acqf, optimize_acqf_discrete, optimize_acqf_mixed
from botorch.sampling import SobolQMCNormalSampler

from voltloop.surrogates.gp import DTYPE


class AcquisitionKind(enum.StrEnum):
    LOG_NEI = "qLogNEI"
    LOG_EI = "qLogEI"
    LOG_PROB_FEASIBLE = "qLogPF"


@dataclass(frozen=True)
class OutcomeBound:
    """Outcome ``output`` must satisfy ``lower ≤ value ≤ upper`` (either may be None)."""

    name: str
    output: int
    upper: float | None = None
    lower: float | None = None

    def callables(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """BoTorch constraint callables: feasible where the returned value is ``≤ 0``."""
        out: list[Callable[[torch.Tensor], torch.Tensor]] = []
        i = self.output
        if self.upper is not None:
            upper = float(self.upper)
            out.append(lambda Z, i=i, upper=upper: Z[..., i] - upper)
        if self.lower is not None:
            lower = float(self.lower)
            out.append(lambda Z, i=i, lower=lower: lower - Z[..., i])
        return out


def _objective(output: int) -> GenericMCObjective:
    return GenericMCObjective(lambda Z, X=None: Z[..., output])


def build_acquisition(
    model: torch.nn.Module,
    kind: AcquisitionKind,
    *,
    X_baseline: torch.Tensor,
    objective_output: int = 0,
    bounds: Sequence[OutcomeBound] = (),
    best_f: float | None = None,
    X_pending: torch.Tensor | None = None,
    mc_samples: int = 128,
    seed: int = 0,
) -> AcquisitionFunction:
    """A constrained batch acquisition function over ``model``'s outputs.

    Args:
        X_baseline: observed inputs, ``n × d`` (qLogNEI's baseline; the incumbent of
            qLogEI is ``best_f``, required for it).
        bounds: outcome constraints (the objective is maximised).
        X_pending: ``p × d`` in-flight candidates, or None.
    """
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    constraints = [c for bound in bounds for c in bound.callables()]
    pending = X_pending if X_pending is not None and X_pending.shape[0] > 0 else None
    if kind == AcquisitionKind.LOG_PROB_FEASIBLE:
        if not constraints:
            raise ValueError("feasible-first acquisition needs at least one outcome constraint")
        return qLogProbabilityOfFeasibility(
            model=model, constraints=constraints, sampler=sampler, X_pending=pending
        )
    if kind == AcquisitionKind.LOG_EI:
        if best_f is None:
            raise ValueError("qLogEI needs the incumbent value best_f")
        return qLogExpectedImprovement(
            model=model,
            best_f=best_f,
            sampler=sampler,
            objective=_objective(objective_output),
            constraints=constraints or None,
            X_pending=pending,
        )
    return qLogNoisyExpectedImprovement(
        model=model,
        X_baseline=X_baseline,
        sampler=sampler,
        objective=_objective(objective_output),
        constraints=constraints or None,
        X_pending=pending,
        prune_baseline=True,
        cache_root=False,
    )


def optimise_pool(
    acqf: AcquisitionFunction,
    choices: torch.Tensor,
    q: int,
    shortlist: int | None = None,
) -> tuple[list[int], torch.Tensor]:
    """Pick ``q`` distinct rows of ``choices`` (``n × d``, ``n ≥ q``) by sequential greedy.

    With ``shortlist`` set and ``n > shortlist``, every row is first scored once on its
    own (``q = 1``, cheap) and the batch is built from the best ``shortlist`` rows with
    the pending-aware joint values; the joint evaluation costs grow with the number of
    points already chosen, so this bounds a large pool's cost (docs/decisions/0061).

    Returns the row indices (into ``choices``) and the acquisition value of each pick
    given the earlier ones (shape ``q``). Callers remove tested/pending/unsafe rows first.
    """
    n = choices.shape[0]
    if q > n:
        raise ValueError(f"cannot pick {q} distinct candidates from {n}")
    rows = torch.arange(n)
    if shortlist is not None and n > max(shortlist, q):
        with torch.no_grad():
            single = torch.cat([acqf(part.unsqueeze(-2)) for part in choices.split(1024)])
        rows = single.topk(max(shortlist, q)).indices
    sub = choices[rows]
    picked, values = optimize_acqf_discrete(acqf, q=q, choices=sub, unique=True)
    dist = torch.cdist(picked, sub)
    indices = rows[dist.argmin(dim=1)].tolist()
    return indices, values.reshape(-1)


def _torch_linear(
    constraints: Sequence[tuple[Sequence[int], Sequence[float], float]],
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    return [
        (torch.tensor(list(idx), dtype=torch.long), torch.tensor(list(coef), dtype=DTYPE), rhs)
        for idx, coef, rhs in constraints
    ]


def optimise_box(
    acqf: AcquisitionFunction,
    bounds: torch.Tensor,
    q: int,
    *,
    linear_constraints: Sequence[tuple[Sequence[int], Sequence[float], float]] = (),
    nonlinear_constraints: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
    feasible_raw: torch.Tensor | None = None,
    num_restarts: int = 8,
    raw_samples: int = 256,
    maxiter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential-greedy batch of ``q`` points in the box ``bounds`` (``2 × d``).

    With only linear constraints BoTorch's ``optimize_acqf(sequential=True)`` does the
    work. With nonlinear constraints (``slack(x) ≥ 0`` on ``... × d``) each of the ``q``
    steps starts SLSQP from the ``num_restarts`` best rows of ``feasible_raw`` (``m × d``,
    all satisfying the constraints) and the chosen point becomes pending for the next.
    Returns ``q × d`` candidates and their acquisition values (``q``).
    """
    options = {"maxiter": maxiter, "batch_limit": num_restarts}
    linear = _torch_linear(linear_constraints) or None
    if not nonlinear_constraints:
        X, values = optimize_acqf(
            acqf,
            bounds=bounds,
            q=q,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            inequality_constraints=linear,
            sequential=True,
            options=options,
        )
        return X.detach(), values.detach().reshape(-1)
    if feasible_raw is None or feasible_raw.shape[0] == 0:
        raise ValueError("nonlinear constraints need feasible raw samples to start from")
    base_pending = acqf.X_pending
    chosen: list[torch.Tensor] = []
    values_out: list[torch.Tensor] = []
    nonlinear = [(fn, True) for fn in nonlinear_constraints]
    for _ in range(q):
        with torch.no_grad():
            raw_values = torch.cat([acqf(part.unsqueeze(-2)) for part in feasible_raw.split(512)])
        top = raw_values.topk(min(num_restarts, raw_values.numel())).indices
        X, value = optimize_acqf(
            acqf,
            bounds=bounds,
            q=1,
            num_restarts=len(top),
            batch_initial_conditions=feasible_raw[top].unsqueeze(-2),
            inequality_constraints=linear,
            nonlinear_inequality_constraints=nonlinear,
            options={"maxiter": maxiter, "batch_limit": 1},
        )
        chosen.append(X.detach())
        values_out.append(value.detach().reshape(-1))
        pending = torch.cat(chosen, dim=0)
        if base_pending is not None:
            pending = torch.cat([base_pending, pending], dim=0)
        acqf.set_X_pending(pending)
    acqf.set_X_pending(base_pending)
    return torch.cat(chosen, dim=0), torch.cat(values_out)


def optimise_mixed(
    acqf: AcquisitionFunction,
    bounds: torch.Tensor,
    q: int,
    fixed_features_list: list[dict[int, float]],
    *,
    linear_constraints: Sequence[tuple[Sequence[int], Sequence[float], float]] = (),
    num_restarts: int = 4,
    raw_samples: int = 128,
    maxiter: int = 60,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential-greedy batch over a mixed space: one optimisation per discrete combination.

    ``fixed_features_list`` holds every discrete combination as ``{column: value}``.
    Returns ``q × d`` candidates and their acquisition values (``q``).
    """
    X, values = optimize_acqf_mixed(
        acqf,
        bounds=bounds,
        q=q,
        num_restarts=num_restarts,
        raw_samples=raw_samples,
        fixed_features_list=fixed_features_list,
        inequality_constraints=_torch_linear(linear_constraints) or None,
        options={"maxiter": maxiter, "batch_limit": num_restarts},
    )
    return X.detach(), values.detach().reshape(-1)


def kriging_believer_pool(
    model: torch.nn.Module,
    make_acquisition: Callable[[torch.nn.Module], AcquisitionFunction],
    choices: torch.Tensor,
    q: int,
    *,
    X_pending: torch.Tensor | None = None,
    fantasy_noise: float = 1e-2,
) -> tuple[list[int], torch.Tensor, torch.nn.Module]:
    """Batch of ``q`` distinct rows of ``choices`` (``n × d``) by the Kriging believer.

    Each pick is scored with a single-point acquisition on a model conditioned on the
    posterior mean at every earlier pick and every pending point (Ginsbourger et al.
    2010), so uncertainty collapses around chosen and in-flight points and the batch
    moves away from them. Cost per pick is one ``n``-point evaluation instead of the
    joint ``(k+1)``-point evaluation of sequential greedy (docs/decisions/0061).

    ``make_acquisition(model)`` builds the acquisition for a (conditioned) model;
    ``fantasy_noise`` is the variance given to fantasised values, in the model's
    (standardised) outcome units.
    Returns indices, per-pick acquisition values (``q``) and the final conditioned model.
    """
    n = choices.shape[0]
    if q > n:
        raise ValueError(f"cannot pick {q} distinct candidates from {n}")
    outputs = getattr(model, "num_outputs", 1)

    def condition(current: torch.nn.Module, X: torch.Tensor) -> torch.nn.Module:
        with torch.no_grad():
            Y = current.posterior(X).mean
        inputs = [X] * outputs if hasattr(current, "models") else X
        return current.condition_on_observations(inputs, Y, noise=torch.full_like(Y, fantasy_noise))

    current = model
    if X_pending is not None and X_pending.shape[0] > 0:
        current = condition(current, X_pending)
    available = torch.ones(n, dtype=torch.bool)
    picked: list[int] = []
    values: list[torch.Tensor] = []
    for _ in range(q):
        acqf = make_acquisition(current)
        with torch.no_grad():
            scores = torch.cat([acqf(part.unsqueeze(-2)) for part in choices.split(1024)])
        scores = scores.masked_fill(~available, -torch.inf)
        best = int(scores.argmax())
        picked.append(best)
        values.append(scores[best])
        available[best] = False
        current = condition(current, choices[best : best + 1])
    return picked, torch.stack(values), current
