"""Multi-objective: Pareto front, the two scalarisations, and a qLogNEHVI batch."""

from __future__ import annotations

import numpy as np
import torch

from voltloop.campaigns.spaces import attia_protocol_pool
from voltloop.surrogates.acquisition import optimise_pool
from voltloop.surrogates.gp import OutcomeSeries, fit_outcome_models
from voltloop.surrogates.multiobjective import (
    build_nehvi,
    choose_epsilon_constraint,
    choose_weighted_sum,
    pareto_front,
)

from .conftest import life

# life (cycles) and charge speed (a second objective), both maximised
Y = np.array([[900, 1.0], [800, 2.0], [700, 3.0], [650, 1.5], [880, 0.9], [900, 1.0]])


def test_pareto_front_drops_dominated_and_duplicate_points() -> None:
    assert pareto_front(Y).tolist() == [0, 1, 2]
    feasible = np.array([False, True, True, True, True, True])
    assert pareto_front(Y, feasible).tolist() == [1, 2, 5]


def test_weighted_sum_and_epsilon_constraint() -> None:
    assert choose_weighted_sum(Y, [1.0, 0.0]) == 0
    assert choose_weighted_sum(Y, [0.0, 1.0]) == 2
    assert choose_weighted_sum(Y, [0.5, 0.5]) in (0, 1, 2)
    assert choose_epsilon_constraint(Y, primary=0, floors={1: 1.8}) == 1
    assert choose_epsilon_constraint(Y, primary=1, floors={0: 850}) == 0
    assert choose_epsilon_constraint(Y, primary=0, floors={1: 10.0}) is None


def test_nehvi_batch_over_the_pool() -> None:
    torch.set_num_threads(1)
    pool = attia_protocol_pool()
    rng = np.random.default_rng(0)
    idx = rng.choice(pool.size, 14, replace=False)
    X = pool.candidates[idx]
    speed = X.mean(axis=1)  # faster early steps: a second objective in conflict with life
    model = fit_outcome_models(
        X, [OutcomeSeries("life", life(X)), OutcomeSeries("speed", speed)], pool.bounds, max_iter=20
    )
    acqf = build_nehvi(model, torch.as_tensor(X), ref_point=[600.0, 3.0], mc_samples=16)
    picked, values = optimise_pool(acqf, torch.as_tensor(pool.candidates), q=3)
    assert len(set(picked)) == 3 and torch.isfinite(values).all()
