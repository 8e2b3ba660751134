"""The proposer: batches, pending points, safe mode, feasible-first and every fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voltloop.campaigns.spaces import attia_continuous_space, attia_protocol_pool
from voltloop.surrogates.gp import fit_outcome_gp
from voltloop.surrogates.proposer import (
    NoSafeCandidateError,
    Observations,
    OutcomeConstraint,
    PoolExhaustedError,
    ProposalInputError,
    fit_model,
    propose,
)
from voltloop.surrogates.safety import upper_confidence_bound

from .conftest import life, peak_temperature


def _pool_observations(n: int = 16, seed: int = 0) -> tuple[Observations, np.ndarray]:
    pool = attia_protocol_pool()
    rng = np.random.default_rng(seed)
    idx = rng.choice(pool.size, n, replace=False)
    X = pool.candidates[idx]
    obs = Observations(
        X=X,
        y=life(X) + rng.normal(0, 5, n),
        constraints={"peak_temperature_C": peak_temperature(X) + rng.normal(0, 0.2, n)},
    )
    return obs, idx


def test_pool_batch_has_no_duplicates_and_skips_tested(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, tested = _pool_observations()
    p = propose(pool, obs, q=12, options=fast_options)
    assert len(p.indices) == 12 and len(set(p.indices)) == 12
    assert not set(p.indices) & set(tested.tolist())
    assert p.acquisition == "qLogNEI" and not p.fallback
    assert all(s is not None and s > 0 for s in p.std)
    assert p.labels[0] == pool.labels[p.indices[0]]


def test_pending_points_are_not_reproposed_and_the_batch_moves_away(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations()
    first = propose(pool, obs, q=1, options=fast_options)
    pending = np.array(first.candidates)
    again = propose(pool, obs, pending=pending, q=6, options=fast_options)
    assert first.indices[0] not in again.indices
    # the first pick moves away from the in-flight cell: it is not its nearest neighbour
    d_pending = np.linalg.norm(pool.candidates - pending[0], axis=1)
    nearest = set(np.argsort(d_pending)[1:3].tolist())
    assert again.indices[0] not in nearest


def test_pending_points_are_honoured_in_continuous_spaces(fast_options) -> None:
    space = attia_continuous_space()
    X = space.sample_feasible(14, seed=2)
    obs = Observations(X=X, y=life(X))
    first = propose(space, obs, q=1, options=fast_options)
    again = propose(space, obs, pending=np.array(first.candidates), q=4, options=fast_options)
    dist = np.linalg.norm(np.array(again.candidates) - np.array(first.candidates[0]), axis=1)
    assert dist.min() > 1e-6
    assert space.feasible(np.array(again.candidates)).all()


def test_safe_mode_never_picks_a_candidate_whose_ucb_exceeds_the_limit(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations(n=20)
    limit = 46.0
    options = fast_options.model_copy(
        update={
            "constraints": [OutcomeConstraint(name="peak_temperature_C", upper=limit, safety=True)]
        }
    )
    model = fit_model(pool, obs, options)
    X_all = torch.as_tensor(pool.candidates)
    ucb_all = upper_confidence_bound(model, X_all, 1, options.safety_beta)
    assert (ucb_all > limit).any(), "the test needs unsafe candidates in the pool"
    p = propose(pool, obs, q=16, options=options, model=model)
    assert p.safety_beta == options.safety_beta
    assert max(p.safety_ucb["peak_temperature_C"]) <= limit
    ucb_picked = ucb_all[p.indices]
    assert (ucb_picked <= limit).all()
    assert "safe mode removed" in p.reason


def test_safe_mode_in_a_continuous_space(fast_options) -> None:
    space = attia_continuous_space()
    X = space.sample_feasible(20, seed=4)
    obs = Observations(X=X, y=life(X), constraints={"T": peak_temperature(X)})
    options = fast_options.model_copy(
        update={"constraints": [OutcomeConstraint(name="T", upper=47.0, safety=True)]}
    )
    p = propose(space, obs, q=5, options=options)
    assert max(p.safety_ucb["T"]) <= 47.0
    assert (peak_temperature(np.array(p.candidates)) <= 47.5).all()


def test_no_safe_candidate_is_a_clear_error(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations()
    options = fast_options.model_copy(
        update={
            "constraints": [OutcomeConstraint(name="peak_temperature_C", upper=20.0, safety=True)]
        }
    )
    with pytest.raises(NoSafeCandidateError, match="β=3"):
        propose(pool, obs, q=4, options=options)


def test_feasible_first_while_nothing_feasible_is_known(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations()
    # a limit below every observation: no candidate observed feasible
    limit = float(obs.constraints["peak_temperature_C"].min()) - 0.5
    options = fast_options.model_copy(
        update={"constraints": [OutcomeConstraint(name="peak_temperature_C", upper=limit)]}
    )
    p = propose(pool, obs, q=4, options=options)
    assert p.acquisition == "qLogPF"
    assert "feasible-first" in p.reason
    # it heads for the cool end of the space
    assert (
        peak_temperature(np.array(p.candidates)).mean() < peak_temperature(pool.candidates).mean()
    )


def test_empty_observations_give_a_space_filling_batch(fast_options) -> None:
    pool = attia_protocol_pool()
    p = propose(pool, Observations.empty(3), q=8, options=fast_options)
    assert p.fallback and p.acquisition == "space_filling"
    assert "space-filling" in p.reason and len(set(p.indices)) == 8
    space = attia_continuous_space()
    pc = propose(space, Observations.empty(3), q=8, options=fast_options)
    assert pc.fallback and space.feasible(np.array(pc.candidates)).all()


def test_constant_observations_fall_back_with_a_reason(fast_options) -> None:
    pool = attia_protocol_pool()
    X = pool.candidates[:6]
    p = propose(pool, Observations(X=X, y=np.full(6, 800.0)), q=4, options=fast_options)
    assert p.fallback and "constant" in p.reason
    assert not set(p.indices) & set(range(6))


def test_nan_outcomes_are_dropped_and_nan_inputs_rejected(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations()
    obs.y[[0, 3]] = np.nan
    p = propose(pool, obs, q=3, options=fast_options)
    assert "2 observation(s) with NaN objective" in p.reason and not p.fallback
    obs.X[1, 0] = np.nan
    with pytest.raises(ProposalInputError, match="NaN"):
        propose(pool, obs, q=3, options=fast_options)


def test_a_pool_smaller_than_q(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, tested = _pool_observations()
    pending = np.delete(pool.candidates, tested, axis=0)[:-5]
    p = propose(pool, obs, pending=pending, q=48, options=fast_options)
    assert len(p.indices) == 5 and "only 5 untested" in p.reason
    everything = np.delete(pool.candidates, tested, axis=0)
    with pytest.raises(PoolExhaustedError):
        propose(pool, obs, pending=everything, q=2, options=fast_options)


def test_bad_shapes_and_unknown_pending_are_rejected(fast_options) -> None:
    pool = attia_protocol_pool()
    with pytest.raises(ProposalInputError, match="rows"):
        propose(pool, Observations(X=pool.candidates[:3], y=np.ones(2)), q=1)
    obs, _ = _pool_observations()
    with pytest.raises(ProposalInputError, match="not in the pool"):
        propose(pool, obs, pending=np.array([[3.3, 3.3, 3.3]]), q=1, options=fast_options)
    with pytest.raises(ProposalInputError, match="constrained outcome"):
        propose(
            pool,
            obs,
            q=1,
            options=fast_options.model_copy(
                update={"constraints": [OutcomeConstraint(name="pressure", upper=1.0)]}
            ),
        )
    with pytest.raises(ProposalInputError, match="q must be"):
        propose(pool, obs, q=0)


def test_an_early_prediction_weighs_less_than_a_measured_life() -> None:
    X = np.linspace(0, 1, 9)[:, None]
    y = np.zeros(9)
    y[4] = 1.0  # one surprising value at x = 0.5
    bounds = np.array([[0.0], [1.0]])
    x_mid = torch.tensor([[0.5]], dtype=torch.float64)
    measured = fit_outcome_gp(X, y, bounds, np.full(9, 1e-4), max_iter=30)
    early = np.full(9, 1e-4)
    early[4] = 4.0  # the surprising value is an early prediction with std 2
    guessed = fit_outcome_gp(X, y, bounds, early, max_iter=30)
    with torch.no_grad():
        m_measured = measured.posterior(x_mid).mean.item()
        m_guessed = guessed.posterior(x_mid).mean.item()
    assert m_measured > 0.8
    assert m_guessed < 0.5 * m_measured


def test_minimising_reports_means_in_the_original_sign(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, _ = _pool_observations()
    obs.y = -obs.y  # "degradation rate": lower is better
    options = fast_options.model_copy(update={"maximise": False})
    p = propose(pool, obs, q=2, options=options)
    assert all(m < 0 for m in p.mean)


def test_mixed_space_batches_are_feasible(fast_options) -> None:
    from voltloop.campaigns.spaces import MixedSpace
    from voltloop.surrogates.space_filling import sobol_in_space

    space = MixedSpace(attia_continuous_space(), {"chamber_C": (25.0, 30.0, 35.0)})
    X = sobol_in_space(space, 12, seed=2)
    y = life(X[:, :3]) - (X[:, 3] - 30.0) ** 2
    p = propose(space, Observations(X=X, y=y), q=4, options=fast_options)
    assert len(p.candidates) == 4 and space.feasible(np.array(p.candidates)).all()
    assert {params["chamber_C"] for params in p.parameters} <= {25.0, 30.0, 35.0}
    assert all("CC4" in params for params in p.parameters)


def test_kriging_believer_batches_honour_pending_and_safety(fast_options) -> None:
    pool = attia_protocol_pool()
    obs, tested = _pool_observations(n=20)
    options = fast_options.model_copy(
        update={
            "batch_strategy": "kriging_believer",
            "constraints": [OutcomeConstraint(name="peak_temperature_C", upper=46.0, safety=True)],
            "safety_beta": 2.0,  # leaves more than q safe candidates in this small case
        }
    )
    first = propose(pool, obs, q=1, options=options)
    p = propose(pool, obs, pending=np.array(first.candidates), q=10, options=options)
    assert p.acquisition == "qLogEI+kriging_believer"
    assert len(set(p.indices)) == 10 and first.indices[0] not in p.indices
    assert not set(p.indices) & set(tested.tolist())
    assert max(p.safety_ucb["peak_temperature_C"]) <= 46.0
