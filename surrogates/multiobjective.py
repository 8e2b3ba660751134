"""Several objectives at once: qLogNEHVI batches, the Pareto front, and choosing one design.

- :func:`build_nehvi` — ``qLogNoisyExpectedHypervolumeImprovement`` over a model whose
  first ``k`` outputs are objectives (all maximised; negate minimised ones), with a
  reference point, outcome constraints and pending points.
- :func:`pareto_front` — indices of the non-dominated rows of ``Y`` (``n × k``).
- :func:`choose_weighted_sum` — the front point maximising ``Σ w_i · ŷ_i`` where ``ŷ`` is
  min-max normalised over the front (so weights compare like with like).
- :func:`choose_epsilon_constraint` — the front point maximising one objective subject
  to floors ``ε_j`` on the others; ``None`` if no point meets them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.pareto import is_non_dominated

from voltloop.surrogates.acquisition import OutcomeBound


def build_nehvi(
    model: torch.nn.Module,
    X_baseline: torch.Tensor,
    ref_point: Sequence[float],
    *,
    objective_outputs: Sequence[int] | None = None,
    bounds: Sequence[OutcomeBound] = (),
    X_pending: torch.Tensor | None = None,
    mc_samples: int = 64,
    seed: int = 0,
) -> qLogNoisyExpectedHypervolumeImprovement:
    """qLogNEHVI over ``objective_outputs`` (default: the first ``len(ref_point)`` outputs)."""
    outputs = list(objective_outputs or range(len(ref_point)))
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=list(map(float, ref_point)),
        X_baseline=X_baseline,
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed),
        objective=IdentityMCMultiOutputObjective(outcomes=outputs),
        constraints=[c for b in bounds for c in b.callables()] or None,
        X_pending=X_pending if X_pending is not None and len(X_pending) else None,
        prune_baseline=True,
        cache_root=False,
    )


def pareto_front(Y: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
    """Indices of non-dominated rows of ``Y`` (``n × k``, maximised), among ``feasible``."""
    Y = np.asarray(Y, dtype=float)
    rows = np.arange(len(Y)) if feasible is None else np.flatnonzero(feasible)
    rows = rows[np.all(np.isfinite(Y[rows]), axis=1)]
    if len(rows) == 0:
        return rows
    mask = is_non_dominated(torch.as_tensor(Y[rows]), deduplicate=True).numpy()
    return rows[mask]


def _normalised(front: np.ndarray) -> np.ndarray:
    lo, hi = front.min(axis=0), front.max(axis=0)
    return (front - lo) / np.where(hi > lo, hi - lo, 1.0)


def choose_weighted_sum(
    Y: np.ndarray, weights: Sequence[float], feasible: np.ndarray | None = None
) -> int:
    """Row of ``Y`` (``n × k``) on the front with the largest weighted normalised sum."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (np.shape(Y)[1],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"need {np.shape(Y)[1]} non-negative weights, not all zero; got {weights}")
    front = pareto_front(Y, feasible)
    if len(front) == 0:
        raise ValueError("no finite (feasible) design to choose from")
    scores = _normalised(np.asarray(Y, dtype=float)[front]) @ (w / w.sum())
    return int(front[int(np.argmax(scores))])


def choose_epsilon_constraint(
    Y: np.ndarray,
    primary: int,
    floors: dict[int, float],
    feasible: np.ndarray | None = None,
) -> int | None:
    """Front row maximising objective ``primary`` with ``Y[:, j] ≥ floors[j]``; else None."""
    Y = np.asarray(Y, dtype=float)
    front = pareto_front(Y, feasible)
    ok = (
        front[np.all([Y[front, j] >= eps for j, eps in floors.items()], axis=0)]
        if floors
        else front
    )
    if len(ok) == 0:
        return None
    return int(ok[int(np.argmax(Y[ok, primary]))])
