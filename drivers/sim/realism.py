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
        r_protocols = float(np.corrcoef(np.nanmean(self.log_var_dq, axis=1), np.log10(mean))[0, 1])
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
            "pearson_r_protocol_means": r_protocols,
            "not_reached": int(np.isnan(lives).sum()),
        }


def evaluate(
    protocols: Sequence[tuple[float, float, float, float]] | None = None,
    seeds: int = 2,
    max_cycles: int = 3000,
    record_interval_s: float = 10.0,
    batch: int = 64,
) -> RealismReport:
    """Run every protocol on ``seeds`` cells; lives and the ΔQ feature per cell.

    Cells run ``batch`` at a time in one vectorised bank (bounds the memory the
    early records take).
    """
    protocols = list(protocols if protocols is not None else attia_space())
    specs, texts = [], []
    for k, (cc1, cc2, cc3, _) in enumerate(protocols):
        text = attia_protocol(
            cc1, cc2, cc3, cycles=max_cycles + 5, record_interval_s=record_interval_s
        )
        for s in range(seeds):
            specs.append(CellSpec(cell_id=f"p{k}-s{s}", seed=1000 + 17 * k + s))
            texts.append(text)
    lives_all, caps_all, logvar_all = [], [], []
    for start in range(0, len(specs), batch):
        run = cycle_lives(
            specs[start : start + batch],
            texts[start : start + batch],
            max_cycles=max_cycles,
            record_cycles=100,
        )
        assert run.early_records is not None
        lives_all.append(run.lives)
        caps_all.extend(run.capacities)
        logvar_all.extend(delta_q_log_variance(r) for r in run.early_records)
    n = len(protocols)
    lives = np.concatenate(lives_all)
    caps = [caps_all[k * seeds : (k + 1) * seeds] for k in range(n)]
    return RealismReport(
        protocols=protocols,
        seeds=seeds,
        lives=lives.reshape(n, seeds),
        log_var_dq=np.array(logvar_all).reshape(n, seeds),
        capacities=caps,
    )


def spread_sample(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` protocols spread over the Attia space (deterministic, includes extremes)."""
    space = attia_space()
    idx = np.unique(np.linspace(0, len(space) - 1, n).round().astype(int))
    return [space[i] for i in idx]


def save_figures(report: RealismReport, out_dir: str) -> list[str]:
    """Capacity-fade family and lifetime-over-protocol-space plots (PNG paths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    mean = report.mean_lives
    order = np.argsort(mean)
    picks = order[np.linspace(0, len(order) - 1, 8).round().astype(int)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for j, k in enumerate(picks):
        caps = report.capacities[k][0]
        cc = report.protocols[k]
        label = "-".join(f"{c:g}" for c in cc[:3]) + f"-{cc[3]:.2f}C"
        ax.plot(np.arange(1, caps.size), caps[1:], color=cmap(j / (len(picks) - 1)), label=label)
    ax.axhline(0.88, color="grey", ls="--", lw=1)
    ax.set_xlabel("cycle")
    ax.set_ylabel("discharge capacity (Ah)")
    ax.set_title("Simulated capacity fade, Attia protocols (CC1-CC2-CC3-CC4)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(f"{out_dir}/simulator-capacity-fade.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    paths.append(
        save_space_figure(np.array(report.protocols), report.lives, report.log_var_dq, out_dir)
    )
    return paths


def save_space_figure(
    protocols: np.ndarray, lives: np.ndarray, log_var_dq: np.ndarray, out_dir: str
) -> str:
    """Life against CC4 (coloured by CC1) and the Severson feature against life."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = np.nanmean(lives, axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    sc = axes[0].scatter(protocols[:, 3], mean, c=protocols[:, 0], cmap="plasma", s=14)
    best = int(np.nanargmax(mean))
    axes[0].annotate(
        "best " + "-".join(f"{c:g}" for c in protocols[best, :3]) + f"-{protocols[best, 3]:.2f}C",
        (protocols[best, 3], mean[best]),
        xytext=(3.3, mean[best] + 60),
        arrowprops={"arrowstyle": "->"},
        fontsize=8,
    )
    axes[0].set_xlabel("CC4 (C-rate from 60 to 80 % SOC)")
    axes[0].set_ylabel("mean cycles to 80 % (2 cells)")
    axes[0].set_title(f"Cycle life over the {len(protocols)} Attia protocols")
    fig.colorbar(sc, ax=axes[0], label="CC1 (C)")
    ok = np.isfinite(lives) & np.isfinite(log_var_dq)
    axes[1].scatter(log_var_dq[ok], np.log10(lives[ok]), s=8, alpha=0.6, label="cells")
    pm = np.nanmean(log_var_dq, axis=1)
    axes[1].scatter(pm, np.log10(mean), s=8, c="C3", label="protocol means")
    r_cell = np.corrcoef(log_var_dq[ok], np.log10(lives[ok]))[0, 1]
    r_prot = np.corrcoef(pm, np.log10(mean))[0, 1]
    axes[1].set_xlabel("log10 var(ΔQ100-10(V))")
    axes[1].set_ylabel("log10 cycle life")
    axes[1].set_title(f"Severson feature: r = {r_cell:.2f} (cells), {r_prot:.2f} (protocols)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = f"{out_dir}/simulator-lifetime-space.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:  # pragma: no cover - documentation figures
    """``python -m voltloop.drivers.sim.realism OUT_DIR [SEEDS] [NPZ]``: full-space
    figures, summary JSON on stdout and the raw lives/features in NPZ."""
    import json
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "docs/img"
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    report = evaluate(seeds=seeds)
    np.savez(
        sys.argv[3] if len(sys.argv) > 3 else "simulator-realism.npz",
        lives=report.lives,
        log_var_dq=report.log_var_dq,
        protocols=np.array(report.protocols),
    )
    print(json.dumps(report.summary(), indent=1))
    print(save_figures(report, out))


if __name__ == "__main__":  # pragma: no cover
    main()
