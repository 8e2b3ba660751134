"""Realism figures of the simulator over the Attia protocol space.

Used by the integration tests, the documentation figures and ``voltloop bench sim``:
true lives of (protocol, seed) pairs, the spread of lives, the replicate spread, and
the Severson feature log10 var(ΔQ₁₀₀₋₁₀(V)) computed from the records exactly as
an early-life predictor would (discharge capacity against voltage on a fixed grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voltloop.drivers.sim.reference_protocols import attia_protocol, attia_space
from voltloop.drivers.sim.truth import cycle_lives
from voltloop.drivers.sim.virtual_lab import CellSpec

#: Voltage grid of the ΔQ(V) feature (Severson et al. 2019 use 1000 points).
V_GRID = np.linspace(2.0, 3.5, 1000)


def discharge_curve(records: np.ndarray, cycle: int, grid: np.ndarray = V_GRID) -> np.ndarray:
    """Discharge capacity Q(V) (Ah) of ``cycle`` on the voltage ``grid``.

    Uses the rows with negative current; the voltage is made monotone (running
    minimum) before interpolation so sensor noise cannot fold the curve.
    """
    rows = records[(records["cycle"] == cycle) & (records["current_A"] < 0)]
    if rows.size < 3:
        raise ValueError(f"cycle {cycle} has no discharge records")
    v = np.minimum.accumulate(rows["voltage_V"].astype(float))
    q = rows["discharge_Ah"].astype(float)
    return np.interp(grid, v[::-1], q[::-1])


def delta_q_log_variance(records: np.ndarray, early: int = 10, late: int = 100) -> float:
    """log10 var(Q_late(V) - Q_early(V)) (Severson's single-feature predictor)."""
    dq = discharge_curve(records, late) - discharge_curve(records, early)
    return float(np.log10(np.var(dq) + 1e-20))


@dataclass
class RealismReport:
    protocols: list[tuple[float, float, float, float]]
    seeds: int
    lives: np.ndarray  # (n_protocols, seeds), NaN if not reached
    log_var_dq: np.ndarray  # (n_protocols, seeds)
    capacities: list[list[np.ndarray]]

    @property
    def mean_lives(self) -> np.ndarray:
        return np.nanmean(self.lives, axis=1)

    def summary(self) -> dict[str, float | list[float]]:
        """The figures docs/simulator.md and the tests quote."""
        lives = self.lives
        mean = self.mean_lives
        best = int(np.nanargmax(mean))
        ok = np.isfinite(lives) & np.isfinite(self.log_var_dq)
        r = float(np.corrcoef(self.log_var_dq[ok], np.log10(lives[ok]))[0, 1])
        cv = np.nanstd(lives, axis=1, ddof=1) / mean if self.seeds > 1 else np.zeros(len(mean))
        return {
            "life_min": float(np.nanmin(lives)),
            "life_max": float(np.nanmax(lives)),
            "life_median": float(np.nanmedian(lives)),
            "best_protocol": list(self.protocols[best]),
            "best_mean_life": float(mean[best]),
            "replicate_cv_median": float(np.median(cv)),
            "replicate_cv_max": float(np.max(cv)),
            "replicate_cv_min": float(np.min(cv)),
            "pearson_r_logvar_loglife": r,
            "not_reached": int(np.isnan(lives).sum()),
        }


def evaluate(
    protocols: Sequence[tuple[float, float, float, float]] | None = None,
    seeds: int = 2,
    max_cycles: int = 3000,
    record_interval_s: float = 10.0,
) -> RealismReport:
    """Run every protocol on ``seeds`` cells; lives and the ΔQ feature per cell."""
    protocols = list(protocols if protocols is not None else attia_space())
    specs, texts = [], []
    for k, (cc1, cc2, cc3, _) in enumerate(protocols):
        text = attia_protocol(
            cc1, cc2, cc3, cycles=max_cycles + 5, record_interval_s=record_interval_s
        )
        for s in range(seeds):
            specs.append(CellSpec(cell_id=f"p{k}-s{s}", seed=1000 + 17 * k + s))
            texts.append(text)
    run = cycle_lives(specs, texts, max_cycles=max_cycles, record_cycles=100)
    assert run.early_records is not None
    logvar = np.array([delta_q_log_variance(r) for r in run.early_records])
    n = len(protocols)
    caps = [run.capacities[k * seeds : (k + 1) * seeds] for k in range(n)]
    return RealismReport(
        protocols=protocols,
        seeds=seeds,
        lives=run.lives.reshape(n, seeds),
        log_var_dq=logvar.reshape(n, seeds),
        capacities=caps,
    )


def spread_sample(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` protocols spread over the Attia space (deterministic, includes extremes)."""
    space = attia_space()
    idx = np.unique(np.linspace(0, len(space) - 1, n).round().astype(int))
    return [space[i] for i in idx]
