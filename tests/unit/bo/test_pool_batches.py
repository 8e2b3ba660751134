"""Joint-sample sequential greedy (pool_greedy.greedy_pool_batch) and recommend()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voltloop.campaigns.spaces import attia_continuous_space, attia_protocol_pool
from voltloop.surrogates.acquisition import AcquisitionKind, OutcomeBound, build_acquisition
from voltloop.surrogates.gp import as_tensor
from voltloop.surrogates.pool_greedy import greedy_pool_batch
from voltloop.surrogates.proposer import (
    Observations,
    OutcomeConstraint,
    ProposalInputError,
    ProposalOptions,
    fit_model,
    propose,
    recommend,
)

from .conftest import life, peak_temperature

LIMIT = 45.5
BOUNDS = [OutcomeBound("peak_temperature_C", 1, upper=LIMIT)]


def _data(n: int = 24, seed: int = 0):
    pool = attia_protocol_pool()
    rng = np.random.default_rng(seed)
    idx = rng.choice(pool.size, n, replace=False)
    X = pool.candidates[idx]
    obs = Observations(
        X=X,
        y=life(X) + rng.normal(0, 10, n),
        y_var=np.full(n, 100.0),
        constraints={"peak_temperature_C": peak_temperature(X) + rng.normal(0, 0.2, n)},
    )
    options = ProposalOptions(
        constraints=[OutcomeConstraint(name="peak_temperature_C", upper=LIMIT)], gp_max_iter=30
    )
    return pool, obs, idx, fit_model(pool, obs, options), options


@pytest.mark.parametrize("kind", [AcquisitionKind.LOG_NEI, AcquisitionKind.LOG_EI])
def test_pending_points_count_as_earlier_picks_at_every_step(kind) -> None:
    pool, obs, _, model, _ = _data()
    choices = as_tensor(pool.candidates)
    X = as_tensor(obs.X)
    best_f = float(obs.y[obs.constraints["peak_temperature_C"] <= LIMIT].max())
    common = {"X_baseline": X, "bounds": BOUNDS, "best_f": best_f, "mc_samples": 64}
    batch, _ = greedy_pool_batch(model, kind, choices, 6, **common)
    assert len(set(batch)) == 6
    rest = [i for i in range(pool.size) if i not in batch[:2]]
    later, _ = greedy_pool_batch(
        model, kind, choices[rest], 4, X_pending=choices[batch[:2]], **common
    )
    # with the first two picks in flight, the next four are the same as before
    assert [rest[i] for i in later] == batch[2:]


def test_first_pick_value_matches_botorch_qlognei() -> None:
    pool, obs, _, model, _ = _data()
    choices = as_tensor(pool.candidates)
    X = as_tensor(obs.X)
    picked, values = greedy_pool_batch(
        model, AcquisitionKind.LOG_NEI, choices, 3, X_baseline=X, bounds=BOUNDS, mc_samples=512
    )
    acqf = build_acquisition(
        model, AcquisitionKind.LOG_NEI, X_baseline=X, bounds=BOUNDS, mc_samples=512
    )
    with torch.no_grad():
        reference = acqf(choices.unsqueeze(-2))
    assert abs(float(values[0]) - float(reference[picked[0]])) < 0.25
    # the pick is among BoTorch's best few (the two estimates differ by MC noise only)
    assert picked[0] in reference.topk(3).indices.tolist()
    assert values[1] <= values[0] + 0.25  # later picks improve less


def test_feasible_first_batch_heads_for_the_cool_end() -> None:
    pool, obs, _, model, _ = _data()
    picked, _ = greedy_pool_batch(
        model, AcquisitionKind.LOG_PROB_FEASIBLE, as_tensor(pool.candidates), 5, bounds=BOUNDS
    )
    cool = peak_temperature(pool.candidates[picked]).mean()
    assert cool < peak_temperature(pool.candidates).mean()


def test_default_and_botorch_strategies_give_similar_batches() -> None:
    pool, obs, tested, _, options = _data(n=30)
    mine = propose(pool, obs, q=8, options=options)
    theirs = propose(
        pool,
        obs,
        q=8,
        options=options.model_copy(update={"batch_strategy": "sequential_greedy_botorch"}),
    )
    assert mine.acquisition == theirs.acquisition == "qLogNEI"
    assert not set(mine.indices) & set(tested.tolist())
    assert len(set(mine.indices) & set(theirs.indices)) >= 3
    assert (
        abs(np.mean(life(np.array(mine.candidates))) - np.mean(life(np.array(theirs.candidates))))
        < 60
    )


def test_recommend_uses_the_model_not_the_luckiest_cell() -> None:
    pool, obs, idx, _, options = _data(n=40)
    worst = int(np.argmin(life(obs.X)))
    obs.y[worst] = obs.y.max() + 300.0  # one wildly optimistic early prediction
    rec = recommend(pool, obs, options)
    assert rec.index != idx[worst] and rec.index in idx.tolist()
    assert rec.feasible and rec.probability_feasible >= 0.5
    assert peak_temperature(np.array([rec.candidate]))[0] <= LIMIT + 0.5
    anywhere = recommend(pool, obs, options, among="pool", min_probability_feasible=0.9)
    assert anywhere.considered == pool.size and anywhere.probability_feasible >= 0.9


def test_recommend_without_a_feasible_design_says_so() -> None:
    pool, obs, _, _, options = _data()
    strict = options.model_copy(
        update={"constraints": [OutcomeConstraint(name="peak_temperature_C", upper=20.0)]}
    )
    rec = recommend(pool, obs, strict)
    assert not rec.feasible and "no design reaches" in rec.reason


def test_recommend_rejects_bad_requests() -> None:
    pool, obs, _, _, options = _data()
    few = Observations(
        X=obs.X[:2],
        y=obs.y[:2],
        constraints={"peak_temperature_C": obs.constraints["peak_temperature_C"][:2]},
    )
    with pytest.raises(ProposalInputError, match="usable observation"):
        recommend(pool, few, options)
    with pytest.raises(ProposalInputError, match="discrete"):
        recommend(attia_continuous_space(), obs, options, among="pool")


@pytest.mark.parametrize("k", [0, 1, 7])
def test_incremental_fatmax_equals_botorch_fatmax(k) -> None:
    from botorch.utils.safe_math import fatmax

    from voltloop.surrogates.pool_greedy import _fatmax_with

    gen = torch.Generator().manual_seed(k)
    fixed = 0.05 * torch.randn(32, k, generator=gen, dtype=torch.float64)
    part = 0.05 * torch.randn(32, 20, generator=gen, dtype=torch.float64)
    joint = torch.cat([fixed[:, None, :].expand(-1, 20, -1), part[..., None]], dim=-1)
    reference = fatmax(joint, dim=-1, tau=1e-2)
    assert torch.allclose(_fatmax_with(fixed, part), reference, atol=1e-12)


def test_fast_believer_matches_conditioning_a_single_output_gp() -> None:
    from voltloop.surrogates.acquisition import kriging_believer_pool
    from voltloop.surrogates.gp import fit_outcome_gp
    from voltloop.surrogates.pool_greedy import believer_pool_batch

    pool, obs, _, _, _ = _data(n=30)
    gp = fit_outcome_gp(obs.X, obs.y, pool.bounds, obs.y_var, max_iter=30)
    choices = as_tensor(pool.candidates)
    pending = choices[:2]
    best_f = float(obs.y.max())

    def make(model):
        return build_acquisition(
            model, AcquisitionKind.LOG_EI, X_baseline=as_tensor(obs.X), best_f=best_f
        )

    slow, slow_values, _ = kriging_believer_pool(gp, make, choices, 6, X_pending=pending)
    fast, fast_values = believer_pool_batch(
        gp, AcquisitionKind.LOG_EI, choices, 6, best_f=best_f, X_pending=pending
    )
    assert fast == slow
    assert torch.allclose(fast_values, slow_values, atol=1e-6)
    ranked, _ = believer_pool_batch(
        gp, AcquisitionKind.LOG_EI, choices, 6, best_f=best_f, believe=False
    )
    assert ranked[0] == fast[0] and len(set(ranked)) == 6
