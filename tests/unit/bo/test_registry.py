"""Model registry: tensor-only artifacts, versions, training-set hashes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from voltloop.campaigns.spaces import attia_protocol_pool
from voltloop.surrogates.gp import hyperparameters
from voltloop.surrogates.proposer import Observations, fit_model
from voltloop.surrogates.registry import (
    ModelRegistry,
    RegistryError,
    decode_state,
    encode_state,
    training_set_hash,
)

from .conftest import life


def test_a_fitted_gp_registers_and_loads_back_into_a_fresh_model() -> None:
    pool = attia_protocol_pool()
    X = pool.candidates[:12]
    obs = Observations(X=X, y=life(X))
    from voltloop.surrogates.proposer import ProposalOptions

    model = fit_model(pool, obs, ProposalOptions(gp_max_iter=20))
    registry = ModelRegistry()
    record = registry.register(
        kind="protocol_gp",
        name="attia-gp",
        state=model.state_dict(),
        training_hash=training_set_hash(X, obs.y),
        hyperparameters=hyperparameters(model),
        metrics={"n": 12},
    )
    assert record.version == 1 and record.id == 1
    assert (
        registry.register(kind="protocol_gp", name="attia-gp", state={}, training_hash="x").version
        == 2
    )
    state = registry.load_state("attia-gp", version=1)
    fresh = fit_model(pool, obs, ProposalOptions(gp_max_iter=1))
    fresh.load_state_dict(state)
    Xq = torch.as_tensor(pool.candidates[20:25]).unsqueeze(-2)
    with torch.no_grad():
        assert torch.allclose(model.posterior(Xq).mean, fresh.posterior(Xq).mean, atol=1e-6)
    assert "output0.lengthscale" in record.hyperparameters


def test_only_tensors_are_stored_and_pickles_are_refused_on_load() -> None:
    with pytest.raises(RegistryError, match="tensors only"):
        encode_state({"w": torch.ones(2), "note": "not a tensor"})  # type: ignore[dict-item]
    buffer = io.BytesIO()
    torch.save({"payload": object()}, buffer)  # a pickled object, as an attacker would
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        decode_state(buffer.getvalue())
    assert torch.equal(decode_state(encode_state({"w": torch.arange(3)}))["w"], torch.arange(3))


def test_training_set_hash_tracks_the_data() -> None:
    X = np.arange(6.0).reshape(3, 2)
    y = np.array([1.0, 2.0, 3.0])
    h = training_set_hash(X, y)
    assert h == training_set_hash(X.copy(), y.copy())
    y2 = y.copy()
    y2[0] = 1.5
    assert h != training_set_hash(X, y2)
    assert h != training_set_hash(X.astype(np.float32), y)


def test_unknown_versions_raise() -> None:
    with pytest.raises(RegistryError, match="no model"):
        ModelRegistry().load_state("missing")
