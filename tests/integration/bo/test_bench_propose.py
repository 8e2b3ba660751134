"""`voltloop bench propose` in its quick form: the figures exist and are sane."""

from __future__ import annotations

import math

from voltloop.benchmarks import propose


def test_quick_benchmark_figures() -> None:
    figures = propose.run(quick=True)
    pool = figures["protocol"]["pool"]
    assert pool["distinct"] == pool["q"] and pool["median_s"] > 0
    assert figures["protocol"]["continuous"]["all_cc4_feasible"] is True
    mat = figures["materials"]
    assert (
        mat["featurise_ms_per_structure"] > 0
        and mat["cached_ms_per_structure"] < mat["featurise_ms_per_structure"]
    )
    for key in ("ensemble_coverage90", "embedding_gp_coverage90"):
        assert 0.0 <= mat[key] <= 1.0
    assert math.isfinite(mat["ensemble_rmse"]) and mat["ensemble_rmse"] < 5 * mat["label_std"]
    eff = figures["sample_efficiency"]
    assert len(eff["regrets_bo"]) == eff["seeds"] == len(eff["regrets_random"])
    assert all(r >= 0 for r in eff["regrets_bo"] + eff["regrets_random"])
    assert eff["safe_mode_unsafe_proposals_after_first_round"] == 0
