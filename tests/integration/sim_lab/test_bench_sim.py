"""``voltloop bench sim`` runs and reports figures of the right shape."""

from __future__ import annotations

from voltloop.benchmarks import sim


def test_quick_run_reports_sane_figures() -> None:
    figures = sim.run(quick=True)
    assert figures["channels"] == 48
    inproc = figures["in_process"]
    assert inproc["cell_cycles_per_s"] > 0 and inproc["cell_cycles_per_cpu_s"] > 0
    assert 100 < inproc["records_per_cell_cycle"] < 600  # ~45 min cycle at 10 s records
    # Speeds are figures for the benchmark's JSON, never compared in a test:
    # the machine is shared and a timing comparison here would be flaky.
    physics = figures["in_process_no_records"]
    assert physics["cell_cycles_per_cpu_s"] > 0
    small = figures["small_batch"]
    assert small["channels"] == 8 and small["cell_cycles_per_cpu_s"] > 0
    e2e = figures["end_to_end_tcp"]
    assert e2e["records_fetched"] > 0 and e2e["fetch_overhead"] > 0
