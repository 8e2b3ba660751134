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


def test_side_by_side_timings_are_medians_of_each_mode() -> None:
    runs = {True: [(60.0, 70.0), (64.0, 76.0)], False: [(50.0, 58.0), (54.0, 60.0)]}
    t = loop._timings(0.0, runs)
    assert (t["wall_s"], t["wall_s_plain"]) == (62.0, 52.0)
    assert (t["command_s"], t["command_s_plain"]) == (73.0, 59.0)
    assert math.isclose(t["prefect_overhead"], 10 / 62)
    assert math.isclose(t["prefect_overhead_command"], 14 / 73)
    assert t["runs"]["prefect"] == [[60.0, 70.0], [64.0, 76.0]]
