"""Health SVMs on planted classes; EIS features on a spectrum with known elements."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.surrogates.lifetime import artifacts, synthetic
from voltloop.surrogates.lifetime.dataset import (
    ImpedanceSpectrum,
    LifetimeDataError,
    MissingDataError,
)
from voltloop.surrogates.lifetime.eis_features import (
    EIS_FEATURES,
    EisFeatureError,
    eis_feature_matrix,
    spectrum_features,
)
from voltloop.surrogates.lifetime.health import (
    AnomalyDetector,
    FailureRiskClassifier,
    HealthAction,
    assess,
)

NAMES = ["eis_r0", "eis_r_arc", "eis_warburg"]


def _planted(n_ok: int, n_fail: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Healthy cells around (15, 10, 2) mΩ; failing cells with a grown arc."""
    rng = np.random.default_rng(seed)
    ok = rng.normal([15.0, 10.0, 2.0], [0.5, 0.8, 0.2], (n_ok, 3))
    bad = rng.normal([16.0, 16.0, 2.4], [0.5, 0.8, 0.2], (n_fail, 3))
    return np.vstack([ok, bad]) * 1e-3, np.r_[np.zeros(n_ok, bool), np.ones(n_fail, bool)]


def test_spectrum_features_recover_planted_elements() -> None:
    f = np.logspace(4, -2, 61)
    z = synthetic.impedance(f, r0=0.015, r1=0.010, sigma=0.002)
    feats = spectrum_features(ImpedanceSpectrum(100, f[::-1], z[::-1]), EIS_FEATURES)
    assert feats["eis_r0"] == pytest.approx(0.015, rel=0.01)
    assert feats["eis_r_arc"] == pytest.approx(0.010, rel=0.1)
    assert feats["eis_warburg"] == pytest.approx(0.002, rel=0.02)
    assert 0 < feats["eis_linkk_residual"] < 0.05


def test_corrupt_spectrum_has_a_larger_linkk_residual() -> None:
    f = np.logspace(4, -2, 61)
    z = synthetic.impedance(f, 0.015, 0.010, 0.002)
    drifted = z * (1 + 0.3 * np.linspace(0, 1, z.size))  # cell drifting during the sweep
    clean = spectrum_features(ImpedanceSpectrum(1, f, z), ["eis_linkk_residual"])
    bad = spectrum_features(ImpedanceSpectrum(1, f, drifted), ["eis_linkk_residual"])
    assert bad["eis_linkk_residual"] > 2 * clean["eis_linkk_residual"]


def test_missing_or_nan_spectra_are_errors() -> None:
    cell = synthetic.make_cell(400.0, 1, eis_every=0)
    with pytest.raises(MissingDataError, match="no impedance spectrum"):
        eis_feature_matrix([cell])
    f = np.logspace(4, -2, 20)
    z = np.full(20, np.nan + 0j)
    with pytest.raises(EisFeatureError, match="finite points"):
        spectrum_features(ImpedanceSpectrum(5, f, z))


def test_classifier_separates_planted_classes() -> None:
    X, y = _planted(60, 12, seed=0)
    model = FailureRiskClassifier(NAMES).fit(X, y)
    Xt, yt = _planted(200, 40, seed=1)
    predicted = model.score(Xt) > 0
    recall = predicted[yt].mean()
    specificity = (~predicted[~yt]).mean()
    assert recall > 0.9 and specificity > 0.9
    again = FailureRiskClassifier.from_arrays(*artifacts.unpack(artifacts.pack(*model.to_arrays())))
    assert np.allclose(again.score(Xt), model.score(Xt))


def test_classifier_needs_both_classes() -> None:
    X, y = _planted(20, 0, seed=2)
    with pytest.raises(LifetimeDataError, match="2 failing"):
        FailureRiskClassifier(NAMES).fit(X, y)


def test_one_class_svm_flags_planted_anomalies() -> None:
    X, _ = _planted(100, 0, seed=3)
    detector = AnomalyDetector(NAMES, nu=0.05).fit(X)
    healthy, _ = _planted(300, 0, seed=4)
    assert (detector.score(healthy) < 0).mean() < 0.15
    odd = np.array([[15.0, 25.0, 2.0], [30.0, 10.0, 2.0], [15.0, 10.0, 5.0]]) * 1e-3
    assert np.all(detector.score(odd) < 0)


def test_one_class_false_alarms_on_new_healthy_cells_are_about_nu() -> None:
    """The threshold is the ν-quantile of held-out healthy scores: on fresh cells of
    the same population about ν are flagged (the bare SVM boundary flags ~2ν)."""
    names = ["a", "b", "c", "d"]
    rates = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        detector = AnomalyDetector(names, nu=0.05).fit(rng.normal(size=(144, 4)))
        rates.append(np.mean(detector.score(rng.normal(size=(4000, 4))) < 0))
    assert 0.02 <= np.mean(rates) <= 0.07, rates


def test_assess_turns_scores_into_actions() -> None:
    X, y = _planted(60, 12, seed=5)
    clf = FailureRiskClassifier(NAMES).fit(X, y)
    det = AnomalyDetector(NAMES).fit(X[~y])
    cells = np.array([[15.0, 10.0, 2.0], [16.0, 18.0, 2.5], [40.0, 10.0, 2.0]]) * 1e-3
    actions = [a.action for a in assess(["ok", "failing", "odd"], cells, clf, det)]
    assert actions[0] is HealthAction.CONTINUE
    assert actions[1] is HealthAction.STOP
    assert actions[2] in (HealthAction.REVIEW, HealthAction.STOP)
    with pytest.raises(LifetimeDataError, match="not finite"):
        det.score(np.array([[np.nan, 1.0, 1.0]]))


def test_a_classifier_that_cross_validates_poorly_flags_but_never_stops() -> None:
    X, y = _planted(60, 12, seed=5)
    clf = FailureRiskClassifier(NAMES).fit(X, y)
    failing = np.array([[16.0, 18.0, 2.5]]) * 1e-3
    assert clf.cv_score >= 0.8
    assert assess(["c"], failing, clf, None)[0].action is HealthAction.STOP
    clf.cv_score = 0.7  # e.g. a dozen campaign cells with overlapping classes
    verdict = assess(["c"], failing, clf, None)[0]
    assert verdict.failure_score > 0.5 and verdict.action is HealthAction.REVIEW


def test_single_class_falls_back_to_the_anomaly_detector_with_a_note() -> None:
    from voltloop.surrogates.lifetime.health_training import CellHealthModels

    cells = synthetic.make_cells(6, seed=9, low=600, high=900, curve_cycles=(), eis_every=50)
    models = CellHealthModels.fit(cells, np.zeros(6, bool), up_to_cycle=100)
    assert models.classifier is None and "not trained" in models.notes["classifier"]
    again = CellHealthModels.from_blob(models.to_blob())
    verdicts = again.assess([c.truncated(100) for c in cells])
    assert len(verdicts) == 6 and all(v.failure_score == -np.inf for v in verdicts)
