"""Ingest: raw samples/s into SQLite (48 x 200 cycles x 1,000 samples), summary read-back time.

Targets (issue 2): at least 1,000,000 raw samples per second appended into
SQLite, and one experiment's per-cycle summaries for 10,000 cycles read back as
NumPy arrays in under 100 ms. The series are realistic, noisy LFP-like cycles
(voltloop.db.testing.synthetic_cycle_series), generated before the clock starts:
all-zero data would compress unrealistically well. Ingest is timed per
experiment (one transaction of 200 cycles each), from ready summaries and raw
arrays to a committed transaction; computing the summaries from the raw series
is timed separately. The wall-clock rate is the headline; the process CPU-time
rate and the load average show how much a shared machine held it back. Also
reported: database bytes per sample, a re-send of already stored cycles (must
add none), and the blob compression options measured on the same data
(docs/decisions/0011-array-blob-format.md).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES_PER_S_TARGET = 1_000_000
READ_MS_TARGET = 100.0


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark in a temporary directory; ``quick`` shrinks every size."""
    from voltloop.db.cycles import CycleData
    from voltloop.db.engine import make_engine, read_session, write_session
    from voltloop.db.enums import CampaignKind
    from voltloop.db.ingest import append_cycles
    from voltloop.db.migrate import init_database
    from voltloop.db.models import Campaign, Experiment
    from voltloop.db.readback import cycle_summaries
    from voltloop.db.testing import synthetic_cycle_series

    n_experiments, n_cycles, n_samples = (2, 10, 1000) if quick else (48, 200, 1000)
    read_cycles, read_repeats = (500, 5) if quick else (10_000, 9)
    rng = np.random.default_rng(2026)

    def raw_cycles(count: int) -> list[dict[str, np.ndarray]]:
        return [
            synthetic_cycle_series(c, n_samples=n_samples, t_start_s=c * 3700.0, rng=rng)
            for c in range(count)
        ]

    with tempfile.TemporaryDirectory(prefix="voltloop-bench-ingest-") as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        init_database(url)
        engine = make_engine(url)
        try:
            with write_session(engine) as session:
                campaign = Campaign(name="bench", kind=CampaignKind.PROTOCOL, spec={})
                session.add(campaign)
                session.flush()
                experiments = [
                    Experiment(campaign_id=campaign.id) for _ in range(n_experiments + 1)
                ]
                session.add_all(experiments)
                session.flush()
                ids = [e.id for e in experiments]

            ingest_s: list[float] = []
            ingest_cpu_s: list[float] = []
            summarise_s: list[float] = []
            last: list[CycleData] = []
            for experiment_id in ids[:n_experiments]:
                series = raw_cycles(n_cycles)  # not timed
                start = time.perf_counter()
                last = [CycleData.from_series(i, s) for i, s in enumerate(series)]
                ready = time.perf_counter()
                cpu = time.process_time()
                with write_session(engine) as session:
                    added = append_cycles(session, experiment_id, last)
                done = time.perf_counter()
                ingest_cpu_s.append(time.process_time() - cpu)
                if added != n_cycles:
                    raise RuntimeError(f"ingest stored {added} of {n_cycles} cycles")
                summarise_s.append(ready - start)
                ingest_s.append(done - ready)

            start = time.perf_counter()
            with write_session(engine) as session:
                resent_new = append_cycles(session, ids[n_experiments - 1], last)
            resend_s = time.perf_counter() - start

            long_id = ids[n_experiments]
            pool = raw_cycles(min(read_cycles // 10, 200))
            long_ingest_s = 0.0
            for first in range(0, read_cycles, 500):
                chunk = [
                    CycleData.from_series(i, pool[i % len(pool)])
                    for i in range(first, min(first + 500, read_cycles))
                ]
                start = time.perf_counter()
                with write_session(engine) as session:
                    append_cycles(session, long_id, chunk)
                long_ingest_s += time.perf_counter() - start

            read_ms = []
            for _ in range(read_repeats):
                start = time.perf_counter()
                with read_session(engine) as session:
                    summaries = cycle_summaries(session, long_id)
                read_ms.append((time.perf_counter() - start) * 1000.0)
            if summaries["cycle_index"].shape != (read_cycles,):
                raise RuntimeError("read-back returned the wrong number of cycles")

            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                blob_bytes = connection.exec_driver_sql(
                    "SELECT sum(length(data)) FROM cycle_series"
                ).scalar()
        finally:
            engine.dispose()
        db_bytes = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))

    samples = n_experiments * n_cycles * n_samples
    stored_samples = samples + read_cycles * n_samples
    total_ingest = sum(ingest_s)
    per_experiment = [n_cycles * n_samples / s for s in ingest_s]
    samples_per_s = samples / total_ingest
    read_median = statistics.median(read_ms)
    return {
        "quick": quick,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "experiments": n_experiments,
        "cycles_per_experiment": n_cycles,
        "samples_per_cycle": n_samples,
        "samples": samples,
        "ingest": {
            "samples_per_s": round(samples_per_s),
            "median_experiment_samples_per_s": round(statistics.median(per_experiment)),
            "seconds": round(total_ingest, 3),
            "with_summaries_samples_per_s": round(samples / (total_ingest + sum(summarise_s))),
            # wall clock counts time the OS gave to other processes; CPU time does not
            "samples_per_cpu_s": round(samples / sum(ingest_cpu_s)),
            "target_samples_per_s": SAMPLES_PER_S_TARGET,
            "meets_target": samples_per_s >= SAMPLES_PER_S_TARGET,
        },
        "resend": {"cycles": n_cycles, "new": resent_new, "seconds": round(resend_s, 4)},
        "readback": {
            "cycles": read_cycles,
            "median_ms": round(read_median, 2),
            "min_ms": round(min(read_ms), 2),
            "repeats": read_repeats,
            "target_ms": READ_MS_TARGET,
            "meets_target": read_median < READ_MS_TARGET,
            "ingest_samples_per_s": round(read_cycles * n_samples / long_ingest_s),
        },
        "storage": {
            "db_bytes_per_sample": round(db_bytes / stored_samples, 2),
            "blob_bytes_per_sample": round(blob_bytes / stored_samples, 2),
            "raw_bytes_per_sample": _raw_bytes_per_sample(),
        },
        "blob_options": _blob_options(raw_cycles(8 if quick else 50)),
    }


def _raw_bytes_per_sample() -> int:
    from voltloop.db.cycles import SERIES_DTYPES

    kept = ("t_s", "voltage_V", "current_A", "temperature_C", "charge_Ah", "discharge_Ah", "step")
    return sum(SERIES_DTYPES[name].itemsize for name in kept)


def _blob_options(series: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Size and speed of the blob encodings considered, on the same realistic cycles."""
    from voltloop.db.blobs import Codec, decode_arrays, encode_arrays
    from voltloop.db.cycles import normalise_series

    stored = [normalise_series(s) for s in series]
    as_float64 = [
        {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in s.items()}
        for s in stored
    ]
    options = {
        "none_float32": (stored, {"codec": Codec.NONE, "shuffle": False}),
        "zlib1_float32": (stored, {"level": 1, "shuffle": False}),
        "zlib1_shuffle_float32": (stored, {"level": 1, "shuffle": True}),
        "zlib1_rle_shuffle_float32": (
            stored,
            {"level": 1, "shuffle": True, "strategy": zlib.Z_RLE},
        ),
        "zlib6_shuffle_float32": (stored, {"level": 6, "shuffle": True}),
        "zlib1_shuffle_float64": (as_float64, {"level": 1, "shuffle": True}),
    }
    samples = sum(len(s["t_s"]) for s in stored)
    figures: dict[str, dict[str, float]] = {}
    for name, (data, kwargs) in options.items():
        encode_times, decode_times = [], []
        for _ in range(3):
            start = time.perf_counter()
            blobs = [encode_arrays(s, **kwargs) for s in data]
            encode_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for blob in blobs:
                decode_arrays(blob)
            decode_times.append(time.perf_counter() - start)
        figures[name] = {
            "bytes_per_sample": round(sum(len(b) for b in blobs) / samples, 2),
            "encode_samples_per_s": round(samples / statistics.median(encode_times)),
            "decode_samples_per_s": round(samples / statistics.median(decode_times)),
        }
    return figures
