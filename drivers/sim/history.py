"""A historical dataset of cycled cells, generated in-process by the simulated lab.

Lifetime models need cells cycled to end of life before a campaign has any; this
module runs virtual cells of one cell type (each with its own cell-to-cell
variation, from ``CellSpec.seed``) under protocols drawn from the Attia et al.
ten-minute space, compiled exactly as a protocol campaign compiles its candidates
(drivers/protocols.py), in a :class:`SimulatedLab` advanced as fast as the
physics allows (no wire, no clock thread). Many cells share one vectorised lab.

Per cell it keeps what the database would hold and the models read:

* every cycle's discharge capacity, to end of life and ``past_eol`` beyond (for the
  recorded cycles that of the aging discharge alone, as the engine stores it; later
  checkpoint cycles keep the instrument's counter, which includes the checkpoint);
* for cycles 0..``record_cycles`` the per-cycle summaries computed from the raw
  records by the cycler host's summariser (drivers/cycle_summary.py: charge
  capacity, charge time, temperature max/min/mean, internal resistance as the
  median |ΔV/ΔI| at current steps) and the raw discharge V/Q series; later
  cycles carry NaN there (never zeros);
* the EIS spectra of the protocol's checkpoints (measured while the channel
  waits at the checkpoint, as the potentiostat would).

Output is the plain numpy/dict layout of ``surrogates/lifetime/dataset.py`` (this
module must not import surrogates); :func:`save_history`/:func:`load_history`
store a list of such dicts as one ``.npz`` without pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voltloop.campaigns.checkpoints import checkpoint_steps
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState

#: Virtual time per advance (s): short enough to catch EIS checkpoints promptly.
CHUNK_S = 4 * 3600.0
SUMMARY_KEYS = (
    "discharge_capacity_Ah",
    "charge_capacity_Ah",
    "charge_time_s",
    "temperature_max_C",
    "temperature_min_C",
    "temperature_mean_C",
    "temperature_integral_Cs",
    "internal_resistance_ohm",
)


@dataclass(frozen=True)
class HistoryConfig:
    n_cells: int = 150
    seed: int = 0
    kind: str = "lfp_graphite_18650"
    record_cycles: int = 100  # raw series and summaries kept for cycles 0..this
    max_cycles: int = 3000
    eol_fraction: float = 0.8
    past_eol: float = 0.1  # keep cycling this fraction of the life past end of life
    batch_size: int = 50  # cells per simulated lab
    eis: bool = True  # measure the protocol's EIS checkpoints
    chamber_temperature_C: float = 30.0  # noqa: N815 - unit suffix


def source_digest() -> str:
    """A digest of the code that shapes a history: the simulator, the protocol compiler
    and the cycle summariser. Caches of generated history are keyed by it."""
    import voltloop.campaigns.checkpoints as checkpoints
    import voltloop.drivers.cycle_summary as cycle_summary
    import voltloop.drivers.protocols as protocols

    files = sorted(Path(__file__).parent.glob("*.py"))
    files += [Path(m.__file__) for m in (checkpoints, cycle_summary, protocols)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def attia_protocols(n: int, seed: int) -> list[dict[str, float]]:
    """``n`` protocols drawn uniformly (with replacement once the space is used up)."""
    from voltloop.campaigns.attia import enumerate_protocols

    space = enumerate_protocols()
    rng = np.random.default_rng([seed, 0xA771A])
    picks: list[int] = []
    while len(picks) < n:
        picks.extend(rng.permutation(len(space)).tolist())
    return [space[i].as_dict() for i in picks[:n]]


def _example_spec():
    from voltloop.campaigns.examples import example_text
    from voltloop.campaigns.loading import parse_campaign

    return parse_campaign(example_text("protocol"), "protocol.toml")


def compile_protocols(
    protocols: Sequence[dict[str, float]], max_cycles: int, spec: Any = None
) -> tuple[list[str], float, np.ndarray | None]:
    """Unicycler JSON per protocol, the nominal capacity and the EIS frequencies."""
    from voltloop.drivers.protocols import compile_candidate

    spec = spec or _example_spec()
    every = spec.eis.every_cycles if getattr(spec, "eis", None) else 1
    cycles = -(-max_cycles // every) * every  # whole checkpoint blocks; we stop earlier
    out = []
    for values in protocols:
        compiled = compile_candidate(
            spec, {k: v for k, v in values.items() if k != "CC4"}, cycles=cycles
        )
        out.append(compiled.protocol.model_dump_json())
    eis = getattr(spec, "eis", None)
    freqs = None
    if eis is not None:
        decades = np.log10(eis.start_frequency_Hz / eis.end_frequency_Hz)
        points = int(round(decades * eis.points_per_decade)) + 1
        freqs = np.logspace(
            np.log10(eis.start_frequency_Hz), np.log10(eis.end_frequency_Hz), points
        )
    return out, float(spec.cell.nominal_capacity_Ah), freqs


def summarise_cycle(
    rec: np.ndarray, checkpoint: frozenset[int] | None = None, nominal_Ah: float = 1.1
) -> dict[str, Any]:
    """Summary values and the aging discharge series of one cycle's records (n,).

    The summary is the cycler host's (drivers/cycle_summary.py), i.e. what the
    ``cycle`` table would hold, leaving out the ``checkpoint`` steps' records as the
    engine does; the temperature integral is temperature_mean × cycle duration, as
    the database adapter computes it (no integral column).
    """
    from voltloop.campaigns.checkpoints import aging_discharge
    from voltloop.drivers.cycle_summary import SummaryOptions
    from voltloop.drivers.cycle_summary import summarise_cycle as host_summary

    options = SummaryOptions.for_capacity(nominal_Ah)
    s = host_summary(rec, checkpoint=checkpoint, options=options)
    voltage, capacity = aging_discharge(
        rec["voltage_V"], rec["current_A"], rec["discharge_Ah"], rec["step"], checkpoint
    )
    ir = s.internal_resistance_ohm
    return {
        "discharge_capacity_Ah": s.discharge_Ah,
        "charge_capacity_Ah": s.charge_Ah,
        "charge_time_s": s.charge_time_s,
        "temperature_max_C": s.temperature_max_C,
        "temperature_min_C": s.temperature_min_C,
        "temperature_mean_C": s.temperature_mean_C,
        "temperature_integral_Cs": s.temperature_mean_C * (s.end_t_s - s.start_t_s),
        "internal_resistance_ohm": np.nan if ir is None else ir,
        "curve": {
            "voltage_V": voltage.astype(np.float32),
            "capacity_Ah": capacity.astype(np.float32),
        },
    }


class _CellRun:
    """Accumulates one channel's early records, spectra and end of life."""

    def __init__(
        self, cell_id: str, protocol: dict[str, float], checkpoint: frozenset[int]
    ) -> None:
        self.cell_id = cell_id
        self.protocol = protocol
        self.checkpoint = checkpoint
        self.records: list[np.ndarray] = []
        self.spectra: list[dict[str, Any]] = []
        self.since = 0
        self.eol: int | None = None
        self.done = False


def _run_batch(
    config: HistoryConfig,
    protocols: list[dict[str, float]],
    first_cell: int,
    spec: Any,
) -> list[dict[str, Any]]:
    n = len(protocols)
    jsons, nominal, freqs = compile_protocols(protocols, config.max_cycles, spec)
    lab = SimulatedLab(n, seed=config.seed * 7919 + first_cell, eis_timeout_s=1e12)
    runs = []
    for i, values in enumerate(protocols):
        cell_id = f"history-{config.seed}-{first_cell + i}"
        lab.load_cell(
            i,
            CellSpec(
                cell_id=cell_id,
                kind=config.kind,
                seed=config.seed * 100_003 + first_cell + i,
                chamber_temperature_C=config.chamber_temperature_C,
            ),
        )
        lab.start(i, jsons[i], cell_id)
        runs.append(_CellRun(cell_id, values, checkpoint_steps(json.loads(jsons[i]))))
    threshold = config.eol_fraction * nominal
    while not all(r.done for r in runs):
        lab.advance(CHUNK_S)
        recording = False
        for i, run in enumerate(runs):
            if run.done:
                continue
            status = lab.status(i)
            if lab.executor.keep_records:
                rec = lab.records(i, run.since, limit=10**9)
                run.since += rec.size
                early = rec[rec["cycle"] <= config.record_cycles]
                if early.size:
                    run.records.append(early)
                recording |= status.cycle <= config.record_cycles
            if status.state == ChannelState.WAITING_EIS:
                if config.eis and freqs is not None:
                    z = lab.impedance(i, freqs)
                    run.spectra.append(
                        {
                            "cycle": int(status.cycle),
                            "frequency_Hz": freqs,
                            "impedance_ohm": np.asarray(z),
                        }
                    )
                lab.resume(i)
            caps = lab.capacities(i)
            if run.eol is None:
                below = np.flatnonzero(caps[1:] < threshold)
                if below.size:
                    run.eol = int(below[0]) + 1
            stop_at = config.max_cycles if run.eol is None else run.eol * (1 + config.past_eol)
            if caps.size > stop_at or status.state not in (
                ChannelState.RUNNING,
                ChannelState.WAITING_EIS,
            ):
                lab.stop(i)
                run.done = True
        if not recording and lab.executor.keep_records:
            lab.executor.keep_records = False  # early cycles all seen: no more records
            for buffer in lab.executor.buffers:
                buffer.clear()
    return [_cell_dict(run, lab.capacities(i), nominal, config) for i, run in enumerate(runs)]


def _cell_dict(run: _CellRun, caps: np.ndarray, nominal: float, config: HistoryConfig) -> dict:
    n = caps.size
    summary = {k: np.full(n, np.nan) for k in SUMMARY_KEYS}
    summary["discharge_capacity_Ah"] = caps.astype(float)
    curves = {}
    if run.records:
        rec = np.concatenate(run.records)
        for c in np.unique(rec["cycle"]):
            if c >= n:
                continue  # an unfinished cycle
            values = summarise_cycle(rec[rec["cycle"] == c], run.checkpoint, nominal)
            curves[int(c)] = values.pop("curve")
            for key, value in values.items():  # recorded cycles: the aging discharge
                summary[key][c] = value
    return {
        "cell_id": run.cell_id,
        "nominal_capacity_Ah": nominal,
        "protocol": dict(run.protocol),
        "cycle_index": np.arange(n),
        **summary,
        "discharge_curves": curves,
        "spectra": run.spectra,
        "end_of_life_cycle": run.eol,
    }


def generate_history(
    config: HistoryConfig | None = None,
    protocols: Sequence[dict[str, float]] | None = None,
    spec: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Simulate ``config.n_cells`` cells (protocols drawn from the Attia space unless
    given) and return one plain dict per cell (module docstring)."""
    config = config or HistoryConfig()
    protocols = (
        list(protocols) if protocols is not None else attia_protocols(config.n_cells, config.seed)
    )
    cells: list[dict[str, Any]] = []
    for start in range(0, len(protocols), config.batch_size):
        cells += _run_batch(config, protocols[start : start + config.batch_size], start, spec)
        if progress:
            progress(len(cells), len(protocols))
    return cells


# --- safe on-disk cache: one npz, no pickle ---------------------------------------------


def save_history(cells: Sequence[dict[str, Any]], path: Path, config: HistoryConfig) -> None:
    """Write cells (plain dicts) to ``path`` as an ``.npz`` of arrays + JSON metadata."""
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        p = f"c{i}/"
        arrays[p + "cycle_index"] = np.asarray(cell["cycle_index"])
        for key in SUMMARY_KEYS:
            arrays[p + key] = np.asarray(cell[key], float)
        for c, curve in cell["discharge_curves"].items():
            arrays[f"{p}curve{c}/V"] = np.asarray(curve["voltage_V"])
            arrays[f"{p}curve{c}/Q"] = np.asarray(curve["capacity_Ah"])
        for k, s in enumerate(cell["spectra"]):
            arrays[f"{p}eis{k}/f"] = np.asarray(s["frequency_Hz"], float)
            arrays[f"{p}eis{k}/z"] = np.asarray(s["impedance_ohm"], complex)
        meta.append(
            {
                "cell_id": cell["cell_id"],
                "nominal_capacity_Ah": cell["nominal_capacity_Ah"],
                "protocol": cell["protocol"],
                "end_of_life_cycle": cell["end_of_life_cycle"],
                "curves": sorted(int(c) for c in cell["discharge_curves"]),
                "eis_cycles": [int(s["cycle"]) for s in cell["spectra"]],
            }
        )
    header = json.dumps({"config": asdict(config), "cells": meta})
    arrays["__meta__"] = np.frombuffer(header.encode(), np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)  # atomic: a crash never leaves half a cache


def load_history(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cells and the generating config from a :func:`save_history` file."""
    with np.load(Path(path), allow_pickle=False) as npz:
        header = json.loads(npz["__meta__"].tobytes().decode())
        cells = []
        for i, m in enumerate(header["cells"]):
            p = f"c{i}/"
            cell = {
                "cell_id": m["cell_id"],
                "nominal_capacity_Ah": m["nominal_capacity_Ah"],
                "protocol": m["protocol"],
                "end_of_life_cycle": m["end_of_life_cycle"],
                "cycle_index": npz[p + "cycle_index"],
                **{key: npz[p + key] for key in SUMMARY_KEYS},
                "discharge_curves": {
                    c: {"voltage_V": npz[f"{p}curve{c}/V"], "capacity_Ah": npz[f"{p}curve{c}/Q"]}
                    for c in m["curves"]
                },
                "spectra": [
                    {
                        "cycle": c,
                        "frequency_Hz": npz[f"{p}eis{k}/f"],
                        "impedance_ohm": npz[f"{p}eis{k}/z"],
                    }
                    for k, c in enumerate(m["eis_cycles"])
                ],
            }
            cells.append(cell)
    return cells, header["config"]
