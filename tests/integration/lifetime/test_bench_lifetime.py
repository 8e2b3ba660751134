"""``voltloop bench lifetime --quick``: figures have the promised shape and are sane."""

from __future__ import annotations

import math

import pytest

from voltloop.benchmarks import lifetime
from voltloop.drivers.sim.history import HistoryConfig


def test_quick_run_shape_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOLTLOOP_CACHE", str(tmp_path))
    figures = lifetime.run(quick=True)
    assert figures["n_cells_generated"] == lifetime.QUICK["n_cells"]
    assert figures["lives"]["n_reached_eol"] == lifetime.QUICK["n_cells"]
    assert 100 < figures["lives"]["min"] <= figures["lives"]["median"] <= figures["lives"]["max"]
    block = figures["early_100"]
    for model in ("elastic_net", "elastic_net_variance", "gru", "hybrid"):
        assert 0.0 <= block[model]["mape"] < 1.0, model
        assert len(block[model]["mape_per_seed"]) == lifetime.QUICK["seeds"]
    net = block["elastic_net"]
    assert 0.0 <= net["coverage_90"] <= 1.0
    per_seed = net["coverage_90_per_seed"]
    assert net["coverage_90_pooled"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert figures["targets"]["coverage_90"] == net["coverage_90_pooled"]
    analytic = net["analytic_mspe_log10"]  # None when n − p − 1 ≤ 0 on some seed
    assert analytic is None or (math.isfinite(analytic) and analytic > 0)
    assert block["best_model"] in block and block["best_mape"] == block[block["best_model"]]["mape"]
    assert set(figures["targets"]) >= {"best_mape_100", "coverage_90", "best_mape_met"}
    # a second run reads the cells back from the npz cache
    config = HistoryConfig(n_cells=lifetime.QUICK["n_cells"], seed=0, max_cycles=3000)
    cells, info = lifetime.dataset(config)
    assert info["cached"] and len(cells) == lifetime.QUICK["n_cells"]
    assert list(tmp_path.glob("lifetime-history-*.npz"))
