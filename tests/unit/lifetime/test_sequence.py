"""Sequence forecasters: masking, monotone fade, accumulator, causality, lifetimes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voltloop.surrogates.lifetime import artifacts, synthetic
from voltloop.surrogates.lifetime import sequence as sq
from voltloop.surrogates.lifetime.dataset import LifetimeDataError

SMALL = {"hidden": 8, "stride": 10, "max_cycle": 1100, "epochs": 25, "tbptt": 50}


@pytest.fixture(scope="module")
def cells() -> list:
    return synthetic.make_cells(12, seed=3, low=300, high=900, curve_cycles=(), eis_every=0)


def test_padded_steps_do_not_change_the_loss() -> None:
    config = sq.SequenceConfig(**SMALL)
    torch.manual_seed(0)
    pred = torch.rand(3, 12, requires_grad=True)
    target = torch.rand(3, 12)
    prev = torch.rand(3, 12) + 0.5
    lengths = torch.tensor([12, 7, 3])
    mask = sq.step_mask(lengths, 12)
    loss_a = sq.sequence_loss(pred, target, prev, mask, config)
    (grad_a,) = torch.autograd.grad(loss_a, pred)
    garbage_target, garbage_pred = target.clone(), pred.detach().clone()
    garbage_target[mask == 0] = 1e6
    garbage_pred[mask == 0] = -1e6
    garbage_pred.requires_grad_(True)
    loss_b = sq.sequence_loss(garbage_pred, garbage_target, prev, mask, config)
    (grad_b,) = torch.autograd.grad(loss_b, garbage_pred)
    assert float(loss_a.detach()) == pytest.approx(float(loss_b.detach()), rel=1e-6)
    assert torch.all(grad_b[mask == 0] == 0)
    assert torch.allclose(grad_a[mask == 1], grad_b[mask == 1])


def test_penalty_is_scale_invariant_and_punishes_rises() -> None:
    prev = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    rising = sq.monotone_penalty(torch.tensor([[1.01, 1.02]]), prev, mask, 2000.0)
    falling = sq.monotone_penalty(torch.tensor([[0.99, 0.98]]), prev, mask, 2000.0)
    scaled = sq.monotone_penalty(torch.tensor([[1.01, 1.02]]) * 7, prev * 7, mask, 2000.0)
    assert float(rising) > 100 * float(falling)
    assert float(scaled) == pytest.approx(float(rising), rel=1e-5)


def test_trained_forecast_never_rises(cells: list) -> None:
    config = sq.SequenceConfig(**SMALL, monotone_weight=1.0, seed=1)
    model = sq.SequenceLifetimeModel(config).fit(cells[:9])
    forecast = model.forecast(cells[9:])
    assert forecast.shape == (3, config.horizon_steps)
    assert np.all(np.diff(forecast, axis=1) <= 1e-6)
    teacher_forced = model.loss_history[: config.epochs // 2]  # before scheduled sampling
    assert teacher_forced[-1] < teacher_forced[0]


def test_hybrid_damage_is_non_decreasing_by_construction() -> None:
    config = sq.SequenceConfig(**SMALL, hybrid=True)
    torch.manual_seed(5)
    model = sq.HybridForecaster(config, n_static=2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0).add_(torch.randn_like(p))  # arbitrary (untrained) weights
    early = torch.rand(4, config.encoder_steps) * 0.2 + 0.9
    damage = model.damage(early, torch.randn(4, 2), 50)
    assert torch.all(damage >= 0)
    assert torch.all(torch.diff(damage, dim=1) >= 0)


def test_decoder_is_causal() -> None:
    config = sq.SequenceConfig(**SMALL)
    model = sq.CapacityForecaster(config, n_static=0)
    early = torch.full((1, config.encoder_steps), 0.98)
    ctx, state = model.encode(early, torch.zeros(1, 0))
    prev = torch.linspace(0.98, 0.9, 20)[None]
    a, _, _ = model.decode(prev, ctx, state, early[:, -1])
    prev2 = prev.clone()
    prev2[0, 10:] = 0.5
    b, _, _ = model.decode(prev2, ctx, state, early[:, -1])
    assert torch.equal(a[0, :10], b[0, :10])
    assert not torch.equal(a[0, 10:], b[0, 10:])


def test_bidirectional_lstm_variant_trains(cells: list) -> None:
    config = sq.SequenceConfig(**{**SMALL, "epochs": 3}, cell="lstm", bidirectional=True)
    model = sq.SequenceLifetimeModel(config).fit(cells[:4])
    life, censored = model.predict(cells[4:6])
    assert life.shape == censored.shape == (2,)


def test_crossing_cycle_interpolates_between_blocks() -> None:
    config = sq.SequenceConfig(**SMALL)
    forecast = np.array([0.9, 0.85, 0.81, 0.79, 0.7])
    cycle, censored = sq.crossing_cycle(forecast, config)
    centre_2 = config.early_cycle + 2 * config.stride + (config.stride + 1) / 2
    assert not censored
    assert cycle == pytest.approx(centre_2 + 0.5 * config.stride)
    assert sq.crossing_cycle(np.full(5, 0.95), config) == (config.max_cycle, True)


def test_hybrid_predicts_planted_lives_and_round_trips(cells: list) -> None:
    config = sq.SequenceConfig(**{**SMALL, "epochs": 40}, hybrid=True)
    lives = np.array([c.end_of_life_cycle for c in cells], float)
    static = np.log10(lives)[:, None] + np.random.default_rng(0).normal(0, 0.01, (12, 1))
    model = sq.SequenceLifetimeModel(config).fit(cells[:9], static[:9])
    predicted, _ = model.predict(cells[9:], static[9:])
    assert np.mean(np.abs(predicted - lives[9:]) / lives[9:]) < 0.25
    again = sq.SequenceLifetimeModel.from_arrays(
        *artifacts.unpack(artifacts.pack(*model.to_arrays()))
    )
    assert np.allclose(again.forecast(cells[9:], static[9:]), model.forecast(cells[9:], static[9:]))


def test_bad_input_is_named(cells: list) -> None:
    config = sq.SequenceConfig(**SMALL)
    with pytest.raises(LifetimeDataError, match="needs 100 cycles"):
        sq.SequenceLifetimeModel(config).fit([cells[0].truncated(60), cells[1]])
    with pytest.raises(LifetimeDataError, match="multiple of stride"):
        sq.SequenceConfig(early_cycle=95, stride=10)
    with pytest.raises(LifetimeDataError, match="NaN"):
        model = sq.SequenceLifetimeModel(config)
        model.static_mean, model.static_scale = np.zeros(1), np.ones(1)
        model._static(np.array([[np.nan]]), 1)
