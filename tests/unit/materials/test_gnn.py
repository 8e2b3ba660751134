"""GNN ensemble: training runs, calibration scale, BoTorch face, tensor-only state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voltloop.campaigns.spaces import index_space
from voltloop.surrogates.materials.gnn import (
    GnnSettings,
    GraphEnsemble,
    PoolPosteriorModel,
    interval_coverage,
)
from voltloop.surrogates.materials.graphs import GraphFeaturiser
from voltloop.surrogates.materials.pools import layered_limo2, ordered_substitutions
from voltloop.surrogates.proposer import Observations, ProposalOptions, propose
from voltloop.surrogates.registry import decode_state, encode_state


@pytest.fixture(scope="module")
def layered_graphs():
    torch.set_num_threads(1)
    structures = ordered_substitutions(layered_limo2(), "Co", ["Ni", "Mn"])
    graphs = GraphFeaturiser().many(structures)
    # a label the network can see: Ni count minus Mn count per cell
    y = np.array(
        [
            sum(s.species_string == "Ni" for s in st) - sum(s.species_string == "Mn" for s in st)
            for st in structures
        ],
        dtype=float,
    )
    return graphs, y


def test_ensemble_trains_and_round_trips_through_a_tensor_only_state(layered_graphs) -> None:
    graphs, y = layered_graphs
    settings = GnnSettings(hidden=16, layers=1, members=2, epochs=8, batch_size=8)
    ensemble = GraphEnsemble(settings).fit(graphs, y)
    mean, std = ensemble.predict(graphs)
    assert mean.shape == std.shape == (27,)
    assert (std > 0).all() and ensemble.std_scale > 0
    assert np.corrcoef(mean, y)[0, 1] > 0.3  # it learned something
    blob = encode_state(ensemble.state_dict())
    restored = GraphEnsemble(settings).load_state_dict(decode_state(blob))
    mean2, std2 = restored.predict(graphs)
    assert np.allclose(mean, mean2, atol=1e-5) and np.allclose(std, std2, atol=1e-5)
    assert ensemble.embed(graphs).shape == (27, 16)
    one_mean, one_std, one_emb = ensemble.predict_with_embeddings(graphs)
    assert np.allclose(one_mean, mean, atol=1e-5) and np.allclose(one_std, std, atol=1e-5)
    assert np.allclose(one_emb, ensemble.embed(graphs), atol=1e-5)


def test_pool_model_is_a_botorch_model_the_proposer_can_rank() -> None:
    mean = np.array([0.0, 1.0, 5.0, 2.0, 4.0, 3.0])
    std = np.full(6, 0.1)
    model = PoolPosteriorModel(mean, std)
    post = model.posterior(torch.tensor([[[2.0], [4.0]]], dtype=torch.float64))
    assert post.mean.shape == (1, 2, 1)
    assert torch.allclose(post.mean.squeeze(), torch.tensor([5.0, 4.0], dtype=torch.float64))
    space = index_space(6)
    obs = Observations(X=np.array([[0.0], [1.0]]), y=np.array([0.0, 1.0]))
    p = propose(space, obs, q=2, options=ProposalOptions(acquisition="qLogEI"), model=model)
    assert sorted(p.indices) == [2, 4]
    assert p.mean[0] == pytest.approx(5.0)


def test_interval_coverage() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=20000)
    assert interval_coverage(y, np.zeros_like(y), np.ones_like(y)) == pytest.approx(0.9, abs=0.01)
    assert interval_coverage(y, np.zeros_like(y), 0.1 * np.ones_like(y)) < 0.2


def test_too_few_or_bad_targets_are_rejected(layered_graphs) -> None:
    graphs, y = layered_graphs
    with pytest.raises(ValueError, match="≥ 4"):
        GraphEnsemble().fit(graphs[:2], y[:2])
    bad = y.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        GraphEnsemble().fit(graphs, bad)
