"""`voltloop bench propose` in its quick form: the figures exist and are sane."""

from __future__ import annotations

import math

from voltloop.benchmarks import propose


def test_quick_benchmark_figures() -> None:
    figures = propose.run(quick=True)
    protocol = figures["protocol"]
    pool = protocol["pool"]
    assert pool["distinct"] == pool["q"] and pool["median_s"] > 0
    for strategy in propose.STRATEGIES:
        entry = protocol[f"pool_{strategy}"]
        quality = entry["quality_median"]
        assert entry["distinct"] == entry["q"]
        assert 0.0 <= quality["share_within_limit"] <= 1.0
        assert quality["best_true_feasible_life"] <= protocol["pool_best_feasible_life"]
        assert 0.0 <= entry["overlap_with_botorch"] <= 1.0
    assert protocol["pool_sequential_greedy_botorch"]["overlap_with_botorch"] == 1.0
    assert protocol["continuous"]["all_cc4_feasible"] is True
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
    for name in propose.RECOMMENDERS:
        for search in propose.SEARCHES:
            summary = eff[name][search]
            assert len(summary["regrets"]) == eff["seeds"]
            assert all(r >= 0 for r in summary["regrets"])
            assert summary["infeasible_recommendations"] <= eff["seeds"]
    assert eff["safe_mode_unsafe_proposals_after_first_round"] == 0
