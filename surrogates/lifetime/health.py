"""Cell-health models on EIS features: failure-risk classifier and anomaly detector.

* :class:`FailureRiskClassifier` — RBF-kernel SVC on standardised EIS features
  (:mod:`.eis_features`), ``class_weight="balanced"`` because failing cells are
  rare, C and γ by stratified cross-validation on balanced accuracy. Its score is
  the signed distance to the decision boundary (> 0: failing side).
* :class:`AnomalyDetector` — a one-class SVM fitted on healthy cells only, ν small
  (default 0.05: at most ~5 % of healthy cells flagged), γ from the data's scale,
  γ0 = 1 / (n_features · var(X_standardised)) (scikit-learn's ``"scale"``), shrunk
  (×0.3, ×0.1) while held-out healthy cells raise more than 2ν false alarms. Its
  score is the one-class decision function (< 0: outside the healthy region).

:func:`assess` turns both scores into an explicit :class:`HealthAction` the
orchestrator can act on: ``STOP`` when the classifier puts the cell on the failing
side by more than ``stop_margin`` and its cross-validated balanced accuracy is at
least ``MIN_STOP_ACCURACY``, ``REVIEW`` when it is anomalous (or failing
within the margin), else ``CONTINUE``.
Both models serialise through skops (no pickle) via :mod:`.artifacts`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, OneClassSVM

from voltloop.surrogates.lifetime import artifacts
from voltloop.surrogates.lifetime.dataset import LifetimeDataError

C_GRID = (0.1, 1.0, 10.0, 100.0)
GAMMA_FACTORS = (0.1, 0.3, 1.0, 3.0)  # × the "scale" γ
GAMMA_SHRINK = (1.0, 0.3, 0.1)  # one-class γ candidates, × the "scale" γ


class HealthAction(enum.StrEnum):
    CONTINUE = "continue"
    REVIEW = "review"  # flag for a person to look at
    STOP = "stop"  # stop cycling the cell


@dataclass(frozen=True)
class HealthAssessment:
    cell_id: str
    failure_score: float  # SVC decision function; > 0 = failing side
    anomaly_score: float  # one-class decision function; < 0 = anomalous
    action: HealthAction


def _check_features(X: np.ndarray, names: Sequence[str], what: str) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, float))
    if X.shape[1] != len(names):
        raise LifetimeDataError(f"{what}: expected {len(names)} features, got {X.shape[1]}")
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise LifetimeDataError(f"{what}: feature {names[col]} is not finite for row {row}")
    return X


def _scale_gamma(X: np.ndarray) -> float:
    Z = StandardScaler().fit_transform(X)
    var = float(Z.var())
    return 1.0 / (X.shape[1] * var) if var > 0 else 1.0


class FailureRiskClassifier:
    """RBF SVC: EIS features (n, p) → failing (True) / healthy (False)."""

    def __init__(self, feature_names: Sequence[str], seed: int = 0) -> None:
        self.feature_names = list(feature_names)
        self.seed = seed
        self.pipeline: Pipeline | None = None
        self.cv_score: float | None = None

    def fit(self, X: np.ndarray, failing: np.ndarray) -> FailureRiskClassifier:
        X = _check_features(X, self.feature_names, "failure classifier")
        y = np.asarray(failing, bool)
        n_fail, n_ok = int(y.sum()), int((~y).sum())
        if min(n_fail, n_ok) < 2:
            raise LifetimeDataError(
                f"the failure classifier needs at least 2 failing and 2 healthy cells; "
                f"got {n_fail} failing and {n_ok} healthy"
            )
        gamma0 = _scale_gamma(X)
        pipe = Pipeline(
            [("scale", StandardScaler()), ("svc", SVC(kernel="rbf", class_weight="balanced"))]
        )
        folds = StratifiedKFold(n_splits=min(5, n_fail, n_ok), shuffle=True, random_state=self.seed)
        search = GridSearchCV(
            pipe,
            {"svc__C": list(C_GRID), "svc__gamma": [gamma0 * f for f in GAMMA_FACTORS]},
            cv=folds,
            scoring="balanced_accuracy",
        )
        search.fit(X, y)
        self.pipeline = search.best_estimator_
        self.cv_score = float(search.best_score_)
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Signed distance (n,) to the boundary; > 0 means the failing side."""
        if self.pipeline is None:
            raise LifetimeDataError("the failure classifier has not been fitted")
        return self.pipeline.decision_function(_check_features(X, self.feature_names, "score"))

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return (
            {"pipeline": artifacts.sklearn_to_array(self.pipeline)},
            {
                "feature_names": self.feature_names,
                "cv_balanced_accuracy": self.cv_score,
                "params": {
                    k: float(v)
                    for k, v in self.pipeline.named_steps["svc"].get_params().items()
                    if k in ("C", "gamma")
                },
            },
        )

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> FailureRiskClassifier:
        model = cls(meta["feature_names"])
        model.pipeline = artifacts.sklearn_from_array(arrays["pipeline"])
        model.cv_score = meta.get("cv_balanced_accuracy")
        return model


class AnomalyDetector:
    """One-class SVM on healthy cells' EIS features (n, p)."""

    def __init__(self, feature_names: Sequence[str], nu: float = 0.05) -> None:
        if not 0.0 < nu < 1.0:
            raise LifetimeDataError(f"nu {nu} must be in (0, 1)")
        self.feature_names = list(feature_names)
        self.nu = nu
        self.pipeline: Pipeline | None = None
        self.gamma: float | None = None
        #: subtracted from the SVM's decision function: the ν-quantile of out-of-fold
        #: scores of the healthy training cells, so a healthy new cell is flagged with
        #: probability ≈ ν (the SVM's own boundary, fit on a few dozen cells, flagged
        #: 17 % of healthy dry-run cells at ν = 0.05)
        self.offset = 0.0

    def fit(self, X_healthy: np.ndarray) -> AnomalyDetector:
        X = _check_features(X_healthy, self.feature_names, "anomaly detector")
        if X.shape[0] < 5:
            raise LifetimeDataError(
                f"the anomaly detector needs at least 5 healthy cells; got {X.shape[0]}"
            )
        self.gamma = self._choose_gamma(X)
        self.offset = self._calibrate(X, self.gamma)
        self.pipeline = self._pipeline(self.gamma).fit(X)
        return self

    def _calibrate(self, X: np.ndarray, gamma: float) -> float:
        """ν-quantile of 5-fold out-of-fold decision scores (split-conformal threshold)."""
        oof = np.empty(X.shape[0])
        for tr, te in KFold(n_splits=5, shuffle=True, random_state=1).split(X):
            oof[te] = self._pipeline(gamma).fit(X[tr]).decision_function(X[te])
        return float(np.quantile(oof, self.nu))

    def _pipeline(self, gamma: float) -> Pipeline:
        return Pipeline(
            [
                ("scale", StandardScaler()),
                ("ocsvm", OneClassSVM(kernel="rbf", nu=self.nu, gamma=gamma)),
            ]
        )

    def _choose_gamma(self, X: np.ndarray) -> float:
        """Largest γ in γ0·{1, 0.3, 0.1} whose 5-fold false-alarm rate on held-out
        healthy cells stays ≤ 2ν (the "scale" γ0 alone over-fits small sets)."""
        gamma0 = _scale_gamma(X)
        folds = KFold(n_splits=5, shuffle=True, random_state=0)
        for factor in GAMMA_SHRINK:
            alarms = [
                np.mean(self._pipeline(gamma0 * factor).fit(X[tr]).decision_function(X[te]) < 0)
                for tr, te in folds.split(X)
            ]
            if np.mean(alarms) <= 2 * self.nu:
                return gamma0 * factor
        return gamma0 * GAMMA_SHRINK[-1]

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated one-class decision function (n,); < 0 means anomalous (below
        all but a share ν of healthy held-out cells)."""
        if self.pipeline is None:
            raise LifetimeDataError("the anomaly detector has not been fitted")
        X = _check_features(X, self.feature_names, "score")
        return self.pipeline.decision_function(X) - self.offset

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return (
            {"pipeline": artifacts.sklearn_to_array(self.pipeline)},
            {
                "feature_names": self.feature_names,
                "nu": self.nu,
                "gamma": self.gamma,
                "offset": self.offset,
            },
        )

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> AnomalyDetector:
        model = cls(meta["feature_names"], nu=meta["nu"])
        model.pipeline = artifacts.sklearn_from_array(arrays["pipeline"])
        model.gamma = meta.get("gamma")
        model.offset = float(meta.get("offset", 0.0))  # versions before calibration: 0
        return model


#: A failure classifier stops cells only if its cross-validated balanced accuracy
#: reaches this; a weaker one (a few dozen cells, overlapping classes) only flags
#: cells for review: stopping a healthy cell loses it for good.
MIN_STOP_ACCURACY = 0.8


def assess(
    cell_ids: Sequence[str],
    X: np.ndarray,
    classifier: FailureRiskClassifier | None,
    detector: AnomalyDetector | None,
    stop_margin: float = 0.5,
) -> list[HealthAssessment]:
    """Scores and an action for each live cell (rows of X (n, p))."""
    n = len(cell_ids)
    fail = classifier.score(X) if classifier else np.full(n, -np.inf)
    anomaly = detector.score(X) if detector else np.full(n, np.inf)
    may_stop = (
        classifier is not None
        and classifier.cv_score is not None
        and classifier.cv_score >= MIN_STOP_ACCURACY
    )
    out = []
    for cid, f, a in zip(cell_ids, fail, anomaly, strict=True):
        if f > stop_margin and may_stop:
            action = HealthAction.STOP
        elif f > 0 or a < 0:
            action = HealthAction.REVIEW
        else:
            action = HealthAction.CONTINUE
        out.append(HealthAssessment(str(cid), float(f), float(a), action))
    return out
