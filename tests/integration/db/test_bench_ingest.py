"""The ingest benchmark runs (quick) and its figures have the documented shape."""

from __future__ import annotations

import pytest

from voltloop.benchmarks import available
from voltloop.benchmarks.ingest import run

pytestmark = pytest.mark.integration


def test_quick_run_reports_sane_figures() -> None:
    figures = run(quick=True)
    assert "ingest" in available()
    assert figures["samples"] == 2 * 10 * 1000
    assert figures["ingest"]["samples_per_s"] > 1000
    assert figures["ingest"]["target_samples_per_s"] == 1_000_000
    assert isinstance(figures["ingest"]["meets_target"], bool)
    assert figures["resend"]["new"] == 0
    assert 0 < figures["readback"]["median_ms"] < 10_000
    assert figures["readback"]["cycles"] == 500
    storage = figures["storage"]
    # realistic noisy data: compressed, but nowhere near the all-zero ratio
    assert 3 < storage["blob_bytes_per_sample"] < storage["raw_bytes_per_sample"] == 32
    assert storage["db_bytes_per_sample"] >= storage["blob_bytes_per_sample"]
    options = figures["blob_options"]
    assert options["none_float32"]["bytes_per_sample"] > 32
    shuffled = options["zlib1_shuffle_float32"]["bytes_per_sample"]
    assert shuffled < options["zlib1_float32"]["bytes_per_sample"]
