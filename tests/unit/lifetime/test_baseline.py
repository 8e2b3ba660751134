"""Elastic net + CV+ intervals on data with a planted answer."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.surrogates.lifetime import artifacts
from voltloop.surrogates.lifetime.baseline import ElasticNetLifetimeModel
from voltloop.surrogates.lifetime.dataset import LifetimeDataError


def _planted(n: int, seed: int, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """log10 life = 2.8 − 0.25·x0 + 0.1·x1 (x2, x3 irrelevant) + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, 4)) * [1.0, 2.0, 1.0, 3.0] + [-5.0, 0.0, 1.0, 10.0]
    y = 2.8 - 0.25 * (X[:, 0] + 5.0) + 0.1 * X[:, 1] + rng.normal(0.0, noise, n)
    return X, 10.0**y


NAMES = ["log_var_dq", "x1", "x2", "x3"]


def test_recovers_a_planted_linear_relation() -> None:
    X, lives = _planted(200, 0, noise=0.005)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    m = model._model
    slopes = m.coef / m.scale  # back to original feature units
    assert slopes[0] == pytest.approx(-0.25, abs=0.01)
    assert slopes[1] == pytest.approx(0.10, abs=0.01)
    assert np.all(np.abs(slopes[2:]) < 0.01)
    Xt, lt = _planted(100, 1, noise=0.005)
    est = model.predict(Xt)
    assert np.median(np.abs(est.life - lt) / lt) < 0.02


def test_cv_plus_coverage_is_near_nominal() -> None:
    X, lives = _planted(150, 2, noise=0.05)
    model = ElasticNetLifetimeModel(conformal_folds=10).fit(X, lives, NAMES)
    Xt, lt = _planted(3000, 3, noise=0.05)
    est = model.predict(Xt, coverage=0.9)
    covered = np.mean((lt >= est.lower) & (lt <= est.upper))
    assert 0.85 <= covered <= 0.96
    assert np.all(est.lower < est.life) and np.all(est.life < est.upper)
    assert np.all(est.std > 0)


def test_analytic_mspe_matches_measured_error() -> None:
    X, lives = _planted(120, 4, noise=0.05)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    Xt, lt = _planted(4000, 5, noise=0.05)
    measured = np.mean((model.predict_log10(Xt) - np.log10(lt)) ** 2)
    analytic = model.training_stats["analytic_mspe_log10"]
    assert analytic == pytest.approx(0.05**2, rel=0.35)
    assert measured == pytest.approx(analytic, rel=0.35)


def test_constant_columns_are_dropped_and_named() -> None:
    X, lives = _planted(40, 6)
    X[:, 3] = 7.0  # a protocol parameter when all cells ran one protocol
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    assert model.dropped_features == {"x3": "constant over the training cells"}
    assert model.predict(X[:3]).life.shape == (3,)


def test_all_constant_features_are_an_error() -> None:
    lives = np.linspace(500, 900, 10)
    with pytest.raises(LifetimeDataError, match="constant"):
        ElasticNetLifetimeModel().fit(np.ones((10, 2)), lives, ["a", "b"])


def test_bad_inputs_are_named() -> None:
    X, lives = _planted(20, 7)
    X[3, 1] = np.nan
    with pytest.raises(LifetimeDataError, match="x1"):
        ElasticNetLifetimeModel().fit(X, lives, NAMES)
    with pytest.raises(LifetimeDataError, match="at least"):
        ElasticNetLifetimeModel().fit(X[:3], lives[:3], NAMES)
    X, lives = _planted(20, 7)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    bad = X[:2].copy()
    bad[0, 0] = np.inf
    with pytest.raises(LifetimeDataError, match="log_var_dq"):
        model.predict(bad)


def test_round_trip_through_a_safe_artifact() -> None:
    X, lives = _planted(30, 8)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    blob = artifacts.pack(*model.to_arrays())
    arrays, meta = artifacts.unpack(blob)
    again = ElasticNetLifetimeModel.from_arrays(arrays, meta)
    a, b = model.predict(X), again.predict(X)
    assert np.allclose(a.life, b.life) and np.allclose(a.upper, b.upper)


def test_a_feature_far_outside_the_training_range_is_flagged_and_bounded() -> None:
    X, lives = _planted(120, 4, noise=0.02)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    inside = X[:3].copy()
    far = inside.copy()
    far[:, 0] = X[:, 0].max() + 40.0  # x0 lowers log life by 0.25 per unit: 10 decades
    est_in, est_far = model.predict(inside), model.predict(far)
    assert not est_in.extrapolated.any() and est_in.extrapolation == ["", "", ""]
    assert est_far.extrapolated.all()
    assert all(note.startswith("log_var_dq ") for note in est_far.extrapolation)
    # the point prediction stays within what the training range allows ...
    clipped = np.clip(far, X.min(axis=0), X.max(axis=0))
    np.testing.assert_allclose(est_far.life, model.predict(clipped).life, rtol=1e-9)
    assert est_far.life.min() > 0.5 * lives.min()
    # ... and the interval also holds the unclipped extrapolation's
    raw = 10.0 ** model.predict_log10(far)
    assert np.all(est_far.lower <= raw) and np.all(est_far.upper >= est_far.life)
    assert np.all(est_far.std > model.predict(clipped).std)


def test_extrapolation_check_survives_the_artifact_round_trip() -> None:
    X, lives = _planted(60, 5)
    model = ElasticNetLifetimeModel().fit(X, lives, NAMES)
    arrays, meta = model.to_arrays()
    loaded = ElasticNetLifetimeModel.from_arrays(arrays, meta)
    far = X[:1].copy()
    far[0, 1] = X[:, 1].min() - 30.0
    assert loaded.predict(far).extrapolated[0] and model.predict(far).extrapolated[0]
