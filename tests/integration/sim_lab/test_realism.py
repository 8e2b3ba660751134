"""Realism targets of the simulator on a spread sample of the Attia protocol space.

16 protocols x 2 cells each, run to 80 % capacity with records of the first 100
cycles (the full 224-protocol figures are in docs/simulator.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.sim.realism import RealismReport, evaluate, spread_sample


@pytest.fixture(scope="module")
def report() -> RealismReport:
    return evaluate(spread_sample(16), seeds=2, max_cycles=3000)


def test_lifetimes_span_hundreds_to_about_two_thousand(report: RealismReport) -> None:
    s = report.summary()
    assert s["not_reached"] == 0
    assert 300 <= s["life_min"] <= 900
    assert 1200 <= s["life_max"] <= 2500
    assert s["life_max"] >= 2.0 * s["life_min"]


def test_optimum_is_not_lowest_current(report: RealismReport) -> None:
    pr = np.array(report.protocols)
    mean = report.mean_lives
    best = int(np.argmax(mean))
    # neither the lowest peak current (uniform 4.8C) nor the most front-loaded
    # (lowest CC4) protocol is the best
    assert best != int(np.argmin(pr.max(axis=1)))
    assert best != int(np.argmin(pr[:, 3]))
    assert mean[best] > 1.05 * mean[int(np.argmin(pr[:, 3]))]
    # CC2 and CC3 of the optimum are interior to their ranges
    assert 3.6 < pr[best, 1] < 7.0 and 3.6 < pr[best, 2] < 5.6


def test_replicates_differ_by_a_few_percent(report: RealismReport) -> None:
    s = report.summary()
    assert 0.01 <= s["replicate_cv_median"] <= 0.10
    assert s["replicate_cv_max"] <= 0.25


def test_delta_q_variance_predicts_life(report: RealismReport) -> None:
    s = report.summary()
    assert s["pearson_r_protocol_means"] <= -0.8
    assert s["pearson_r_logvar_loglife"] <= -0.7


def test_capacity_curves_have_a_knee(report: RealismReport) -> None:
    knees = 0
    for caps_of_protocol, lives in zip(report.capacities, report.lives, strict=True):
        caps, life = caps_of_protocol[0], int(lives[0])
        early = (caps[20] - caps[life // 2]) / (life // 2 - 20)
        late = (caps[int(0.85 * life)] - caps[life]) / (life - int(0.85 * life))
        knees += late > 3 * early
    assert knees >= 0.8 * len(report.capacities)
