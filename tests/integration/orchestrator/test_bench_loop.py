"""`voltloop bench loop --quick`: the figures exist, add up and describe the run."""

from __future__ import annotations

import math

from voltloop.benchmarks import loop


def test_quick_loop_benchmark_figures(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOLTLOOP_CACHE", str(tmp_path / "cache"))
    figures = loop.run(quick=True)
    assert figures["campaign"] == "attia-ci"
    assert figures["experiments"] == {"completed": figures["rounds"] * figures["batch_size"]}
    assert figures["cycles_stored"] == 30 * figures["rounds"] * figures["batch_size"]
    assert figures["wall_s"] > 0 and figures["history_s"] > 0
    rec = figures["recommendation"]
    assert rec["parameters"] is not None and rec["truth_over"].startswith("24 protocols")
    assert 100 < rec["true_life"] <= rec["best_true_life"] < 4000
    assert math.isclose(rec["ratio_to_best"], rec["true_life"] / rec["best_true_life"])
    lab = figures["lab_time"]
    assert 0.1 < lab["median_hours_per_cycle"] < 5
    assert lab["exhaustive_hours"] > lab["channel_hours"] > 0
    assert math.isclose(lab["saving"], lab["exhaustive_hours"] / lab["channel_hours"])
    assert figures["targets"]["prefect_overhead_met"] is None  # side by side in full runs only
    # the truth table is cached for the next run
    assert list((tmp_path / "cache").glob("truth-*.npy"))
