"""Simulated lab speed: cell-cycles/s for 48 channels in-process and through TCP.

48 channels of the default LFP/graphite cell run the default Attia-style protocol
(CC 4.8-5.2-5.2-4.16C to 80 % SOC, 1C CC-CV to 3.6 V, 4C discharge to 2.0 V, CV
to C/50, rests; records every 10 s) as fast as possible. Figures (medians over
repeats): in-process with records, in-process physics only (no records), and
end-to-end — the same lab served by the simulated cycler over TCP while the host
driver fetches every record after each clock chunk; ``fetch_overhead`` is fetch
time / simulation time. Chunks alternate between fetching channel by channel
(``end_to_end_tcp``, one ``CHAN<n>:DATA?`` each, what ``CyclerDriver.fetch`` does) and
one multi-channel ``FETC?`` (``end_to_end_tcp_sweep``, ``CyclerDriver.fetch_many``).
``small_batch``: 8 channels on 8 protocols spread over the
Attia space with an EIS checkpoint every 15 cycles (measured at each 4-h chunk, as
drivers/sim/history.py does), physics only — the case where per-step costs cannot
be shared by many channels.
"""

from __future__ import annotations

import statistics
import time
import uuid

CHANNELS = 48
SMALL_CHANNELS = 8
CHUNK_S = 6 * 3600.0


def _lab(keep_records: bool = True):  # noqa: ANN202 - SimulatedLab (imported lazily)
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.reference_protocols import attia_protocol
    from voltloop.drivers.sim.virtual_lab import CellSpec

    lab = SimulatedLab(CHANNELS, seed=7, keep_records=keep_records)
    protocol = attia_protocol(4.8, 5.2, 5.2, cycles=5000, record_interval_s=10.0)
    ids = []
    for ch in range(CHANNELS):
        lab.load_cell(ch, CellSpec(cell_id=f"bench-{ch}", seed=ch))
        ids.append(str(uuid.UUID(int=ch + 1)))
    return lab, protocol, ids


def _in_process(chunks: int, keep_records: bool) -> dict[str, float]:
    lab, protocol, ids = _lab(keep_records)
    for ch in range(CHANNELS):
        lab.start(ch, protocol, ids[ch])
    lab.advance(2 * 3600.0)  # warm-up: leave the first, partial cycle
    c0 = int(lab.executor.cycle.sum())
    w0, p0 = time.perf_counter(), time.process_time()
    for _ in range(chunks):
        lab.advance(CHUNK_S)
    wall, cpu = time.perf_counter() - w0, time.process_time() - p0
    cycles = int(lab.executor.cycle.sum()) - c0
    records = sum(int(lab.executor.rec_count[ch]) for ch in range(CHANNELS))
    return {
        "cell_cycles": cycles,
        "cell_cycles_per_s": cycles / wall,
        "cell_cycles_per_cpu_s": cycles / cpu,
        "records": records,
    }


def _small_batch(chunks: int) -> dict[str, float]:
    import numpy as np

    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.reference_protocols import attia_protocol, attia_space
    from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState

    space = attia_space()
    picks = [space[i][:3] for i in np.linspace(0, len(space) - 1, SMALL_CHANNELS).astype(int)]
    lab = SimulatedLab(SMALL_CHANNELS, seed=3, eis_timeout_s=1e12, keep_records=False)
    for ch, (cc1, cc2, cc3) in enumerate(picks):
        lab.load_cell(ch, CellSpec(cell_id=f"small-{ch}", seed=ch))
        lab.start(ch, attia_protocol(cc1, cc2, cc3, cycles=3000, eis_every=15), f"small-{ch}")
    freqs = np.logspace(4, -2, 61)
    c0 = int(lab.executor.cycle.sum())
    w0, p0 = time.perf_counter(), time.process_time()
    for _ in range(chunks):
        lab.advance(4 * 3600.0)
        for ch in range(SMALL_CHANNELS):
            if lab.status(ch).state == ChannelState.WAITING_EIS:
                lab.impedance(ch, freqs)
                lab.resume(ch)
    wall, cpu = time.perf_counter() - w0, time.process_time() - p0
    cycles = int(lab.executor.cycle.sum()) - c0
    return {"cell_cycles_per_s": cycles / wall, "cell_cycles_per_cpu_s": cycles / cpu}


def _end_to_end(chunks: int) -> dict[str, dict[str, float]]:
    """The lab served over TCP; after every clock chunk the host fetches every new
    record, alternating chunk by chunk between the two ways a host can poll:
    ``per_channel`` (one ``CHAN<n>:DATA?`` per channel, as ``fetch`` does) and
    ``sweep`` (one ``FETC?`` for all channels, as ``fetch_many`` does). Alternating
    gives both the same lab state and the same machine load."""
    from voltloop.drivers.cycler import CyclerDriver
    from voltloop.drivers.sim.cycler_server import CyclerServer

    lab, protocol, ids = _lab(True)
    server = CyclerServer(lab, link="tcp")
    url = server.start()
    modes = ("per_channel", "sweep")
    sim_s = dict.fromkeys(modes, 0.0)
    fetch_s = dict.fromkeys(modes, 0.0)
    cycles = dict.fromkeys(modes, 0)
    fetched = dict.fromkeys(modes, 0)
    try:
        with CyclerDriver(url, timeout_s=10.0) as driver:
            for ch in range(CHANNELS):
                driver.start(ch, protocol, ids[ch])
            since = [0] * CHANNELS
            lab.advance(2 * 3600.0)
            for ch in range(CHANNELS):
                since[ch] += len(driver.fetch(ch, since[ch]).records)
            for chunk in range(2 * chunks):
                mode = modes[chunk % 2]
                c0 = int(lab.executor.cycle.sum())
                t0 = time.perf_counter()
                lab.advance(CHUNK_S)
                t1 = time.perf_counter()
                if mode == "sweep":
                    batches = driver.fetch_many(dict(enumerate(since)))
                    got = [len(batches[ch].records) for ch in range(CHANNELS)]
                else:
                    got = [len(driver.fetch(ch, since[ch]).records) for ch in range(CHANNELS)]
                t2 = time.perf_counter()
                for ch in range(CHANNELS):
                    since[ch] += got[ch]
                sim_s[mode] += t1 - t0
                fetch_s[mode] += t2 - t1
                cycles[mode] += int(lab.executor.cycle.sum()) - c0
                fetched[mode] += sum(got)
    finally:
        server.stop()
    return {
        mode: {
            "cell_cycles": cycles[mode],
            "cell_cycles_per_s": cycles[mode] / (sim_s[mode] + fetch_s[mode]),
            "records_fetched": fetched[mode],
            "fetch_overhead": fetch_s[mode] / sim_s[mode],
            "fetch_us_per_record": 1e6 * fetch_s[mode] / max(fetched[mode], 1),
        }
        for mode in modes
    }


def run(quick: bool = False) -> dict:
    """Median figures over repeats (quick: one short repeat)."""
    repeats, chunks = (1, 2) if quick else (3, 8)
    with_records = [_in_process(chunks, True) for _ in range(repeats)]
    physics = [_in_process(chunks, False) for _ in range(repeats)]
    e2e = [_end_to_end(chunks) for _ in range(repeats)]
    small = [_small_batch(3 * chunks) for _ in range(repeats)]

    def med(rows: list[dict], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    def e2e_figures(mode: str) -> dict[str, float | str]:
        rows = [run[mode] for run in e2e]
        return {
            "fetch": "one CHAN<n>:DATA? per channel" if mode == "per_channel" else "one FETC?",
            "cell_cycles_per_s": med(rows, "cell_cycles_per_s"),
            "fetch_overhead": med(rows, "fetch_overhead"),
            "fetch_us_per_record": med(rows, "fetch_us_per_record"),
            "records_fetched": med(rows, "records_fetched"),
        }

    return {
        "channels": CHANNELS,
        "protocol": "attia 4.8-5.2-5.2-4.16C, records every 10 s",
        "repeats": repeats,
        "in_process": {
            "cell_cycles_per_s": med(with_records, "cell_cycles_per_s"),
            "cell_cycles_per_cpu_s": med(with_records, "cell_cycles_per_cpu_s"),
            "records_per_cell_cycle": med(with_records, "records")
            / med(with_records, "cell_cycles"),
        },
        "in_process_no_records": {
            "cell_cycles_per_s": med(physics, "cell_cycles_per_s"),
            "cell_cycles_per_cpu_s": med(physics, "cell_cycles_per_cpu_s"),
        },
        "end_to_end_tcp": e2e_figures("per_channel"),
        "end_to_end_tcp_sweep": e2e_figures("sweep"),
        "small_batch": {
            "channels": SMALL_CHANNELS,
            "protocol": "8 Attia protocols, EIS checkpoint every 15 cycles, no records",
            "cell_cycles_per_s": med(small, "cell_cycles_per_s"),
            "cell_cycles_per_cpu_s": med(small, "cell_cycles_per_cpu_s"),
        },
        "target_cell_cycles_per_s": 20_000,
    }
