"""The report's figures, drawn with matplotlib into inline SVG.

Each function takes the gathered :class:`~voltloop.orchestrator.report_model.ReportData`
and returns a :class:`Figure` holding either the SVG markup or, when the data
needed is missing, a note that says what is missing — a plot never fails the
report. Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot,
no global backend state) and saved as SVG with text kept as text; long series
are downsampled so a 192-cell campaign stays small (docs/decisions/0080).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure as MplFigure

from voltloop.orchestrator.report_model import (
    CandidateRow,
    ReportData,
    best_so_far,
    downsample,
    pareto_mask,
)

#: Points per capacity trace in the fade plot (first and last cycle always kept).
MAX_POINTS_PER_TRACE = 120
#: Feasible points of an enumerable space drawn as background in the protocol-space plot.
MAX_BACKGROUND_POINTS = 20_000
_CMAP = "viridis"
_RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.grid": True,
       "grid.alpha": 0.25, "font.family": "DejaVu Sans"}  # fmt: skip
_METRIC_LABELS = {
    "cycle_life": "cycle life (cycles)",
    "capacity_retention": "capacity retention (last/first)",
    "discharge_capacity": "discharge capacity (Ah)",
    "peak_temperature": "peak temperature (°C)",
    "charge_time": "charge time (min)",
    "specific_energy": "specific energy (Wh/kg)",
    "thermal_risk": "thermal risk (0..1)",
}


@dataclass(frozen=True)
class Figure:
    """One report figure: ``svg`` markup, or ``note`` saying why there is none."""

    key: str
    title: str
    svg: str | None = None
    note: str | None = None
    caption: str = ""


def _svg(fig: MplFigure) -> str:
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")  # constrained layout: no second "tight" draw
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline markup
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(width: float, height: float) -> MplFigure:
    with mpl.rc_context(_RC):
        return MplFigure(figsize=(width, height), layout="constrained")


def _numeric_parameter(data: ReportData) -> str | None:
    for name in data.parameter_names:
        values = [c.parameters.get(name) for c in data.candidates]
        if values and all(isinstance(v, int | float) for v in values):
            return name
    return None


def _unit(data: ReportData, name: str) -> str:
    for p in (data.spec.get("space") or {}).get("parameters") or []:
        if isinstance(p, dict) and p.get("name") == name and p.get("unit"):
            return f" ({p['unit']})"
    return ""


def capacity_fade(data: ReportData) -> Figure:
    """Discharge capacity against cycle, one line per experiment, coloured by protocol."""
    title = "Capacity fade"
    traces = [t for t in data.traces.values() if np.any(t.cycle_index > 0)]
    if not traces:
        return Figure("capacity", title, note="No cycles were stored for this campaign yet.")
    by_experiment = {e.id: e for e in data.experiments}
    colour_name = _numeric_parameter(data)
    values: dict[str, float] = {}
    for t in traces:
        e = by_experiment.get(t.experiment_id)
        c = data.candidate(e.candidate_id) if e is not None else None
        if c is None:
            continue
        value = c.parameters.get(colour_name) if colour_name else c.observed_life
        if isinstance(value, int | float) and math.isfinite(value):
            values[t.experiment_id] = float(value)
    label = f"{colour_name}{_unit(data, colour_name)}" if colour_name else "observed life (cycles)"
    with mpl.rc_context(_RC):
        fig = _figure(9.0, 4.6)
        ax = fig.add_subplot()
        segments, colours = [], []
        for t in traces:
            keep = t.cycle_index > 0  # cycle 0 is conditioning (the end-of-life rule skips it)
            x, y = downsample(
                t.cycle_index[keep], t.discharge_capacity_ah[keep], MAX_POINTS_PER_TRACE
            )
            segments.append(np.column_stack([x, y]))
            colours.append(values.get(t.experiment_id, np.nan))
        cmap = mpl.colormaps[_CMAP].with_extremes(bad="0.6")
        lines = LineCollection(segments, linewidths=1.0, alpha=0.85, cmap=cmap)
        array = np.asarray(colours, dtype=float)
        lines.set_array(np.ma.masked_invalid(array))
        ax.add_collection(lines)
        ax.autoscale_view()
        clipped = _robust_ylim(ax, np.concatenate([seg[:, 1] for seg in segments]),
                               data.eol_threshold_ah)  # fmt: skip
        if np.isfinite(array).any():
            fig.colorbar(lines, ax=ax, label=label, pad=0.01)
        if data.eol_threshold_ah is not None:
            ax.axhline(data.eol_threshold_ah, color="crimson", ls="--", lw=1)
            ax.annotate(
                f"end of life {data.eol_threshold_ah:.3g} Ah",
                (0.99, data.eol_threshold_ah),
                xycoords=("axes fraction", "data"),
                ha="right", va="bottom", color="crimson", fontsize=8,
            )  # fmt: skip
        ax.set_xlabel("cycle")
        ax.set_ylabel("discharge capacity (Ah)")
        svg = _svg(fig)
    caption = (
        f"{len(traces)} experiments; colour: {label}; grey: no value. Cycle 0 (conditioning) "
        f"left out; at most {MAX_POINTS_PER_TRACE} points per line."
        + (
            f" {clipped} outlying points (e.g. slow checkpoint cycles) lie beyond the axis."
            if clipped
            else ""
        )
    )
    return Figure("capacity", title, svg=svg, caption=caption)


def _robust_ylim(ax, values: np.ndarray, threshold: float | None) -> int:
    """Limit the capacity axis to Tukey's far fences (3 × IQR) so that a few outlying
    cycles (slow checkpoint or reference cycles read high) do not flatten the fade;
    the end-of-life line stays in view. Returns how many points fall outside."""
    finite = values[np.isfinite(values)]
    if finite.size < 8:
        return 0
    q1, q3 = np.percentile(finite, [25, 75])
    spread = max(q3 - q1, 0.01 * abs(q3))
    low, high = q1 - 3 * spread, q3 + 3 * spread
    outside = int(np.sum((finite < low) | (finite > high)))
    if not outside:
        return 0
    inside = finite[(finite >= low) & (finite <= high)]
    bottom, top = float(inside.min()), float(inside.max())
    if threshold is not None:
        bottom, top = min(bottom, threshold), max(top, threshold)
    pad = 0.05 * max(top - bottom, 1e-6)
    ax.set_ylim(bottom - pad, top + pad)
    return outside


def predicted_vs_measured(data: ReportData) -> Figure:
    """Latest early prediction against measured end of life, with ±2σ intervals."""
    title = "Predicted vs measured lifetime"
    pairs = [
        e for e in data.experiments if e.prediction is not None and e.measured_life is not None
    ]
    if not pairs:
        predicted = sum(e.prediction is not None for e in data.experiments)
        measured = sum(e.measured_life is not None for e in data.experiments)
        return Figure(
            "calibration",
            title,
            note=f"No experiment has both a lifetime prediction and a measured end of life "
            f"({predicted} predicted, {measured} measured): cells stopped at the early-prediction "
            "cycle never reach end of life; set lifetime.run_to_end_of_life > 0 to check "
            "predictions.",
        )
    measured = np.array([e.measured_life for e in pairs], dtype=float)
    predicted = np.array([e.prediction.predicted_life for e in pairs], dtype=float)
    std = np.array([e.prediction.std if e.prediction.std else 0.0 for e in pairs], dtype=float)
    error = predicted - measured
    with mpl.rc_context(_RC):
        fig = _figure(5.6, 5.0)
        ax = fig.add_subplot()
        ax.errorbar(measured, predicted, yerr=2 * std, fmt="o", ms=5, capsize=3, color="tab:blue",
                    ecolor="tab:blue", alpha=0.85, label="prediction ±2σ")  # fmt: skip
        low = float(min(measured.min(), (predicted - 2 * std).min()))
        high = float(max(measured.max(), (predicted + 2 * std).max()))
        pad = 0.05 * max(high - low, 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=1, label="identity")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("measured end of life (cycle)")
        ax.set_ylabel("predicted life (cycles)")
        ax.legend(loc="upper left")
        svg = _svg(fig)
    covered = int(np.sum(np.abs(error) <= 2 * std)) if np.any(std > 0) else 0
    caption = (
        f"{len(pairs)} experiments; mean error {round(float(error.mean())) + 0:+d} cycles, RMSE "
        f"{math.sqrt(float(np.mean(error**2))):.0f} cycles; {covered}/{len(pairs)} within ±2σ."
    )
    return Figure("calibration", title, svg=svg, caption=caption)


def _maximize(data: ReportData) -> bool:
    return not data.objectives or data.objectives[0].direction != "minimize"


def best_by_round(data: ReportData) -> Figure:
    """Best-so-far observed life by round, over each round's observed values."""
    title = "Best so far by round"
    if not data.rounds:
        return Figure("best", title, note="The campaign has no rounds yet.")
    rows = best_so_far(data.candidates, [r.index for r in data.rounds], maximize=_maximize(data))
    if all(r.best is None for r in rows):
        return Figure(
            "best", title, note="No candidate has an observed or predicted lifetime yet, so "
            "there is no best-so-far to plot."
        )  # fmt: skip
    with mpl.rc_context(_RC):
        fig = _figure(7.0, 3.8)
        ax = fig.add_subplot()
        for r in rows:
            if r.round_values:
                ax.scatter([r.round_index] * len(r.round_values), r.round_values, s=14,
                           color="0.55", alpha=0.7, zorder=2)  # fmt: skip
        xs = [r.round_index for r in rows if r.best is not None]
        ys = [r.best for r in rows if r.best is not None]
        ax.step(xs, ys, where="post", color="tab:orange", lw=2, zorder=3)
        ax.plot(xs, ys, "o", color="tab:orange", zorder=4, label="best so far")
        ax.scatter([], [], s=14, color="0.55", label="this round's candidates")
        ax.set_xticks([r.round_index for r in rows])
        ax.set_xlabel("round")
        ax.set_ylabel("observed life (cycles)")
        ax.legend(loc="lower right")
        svg = _svg(fig)
    caption = "Observed life = measured end of life where reached, else the latest prediction."
    return Figure("best", title, svg=svg, caption=caption)


def _background(data: ReportData) -> list[dict[str, float]]:
    """Every feasible point of an all-discrete protocol space (empty otherwise)."""
    space = data.spec.get("space")
    if data.kind != "protocol" or not isinstance(space, dict):
        return []
    try:
        from voltloop.campaigns.protocol_campaign import ProtocolSpace

        parsed = ProtocolSpace.model_validate(space)
        if not parsed.discrete:
            return []
        sizes = [len(p.values or []) for p in parsed.parameters]
        if math.prod(sizes) > MAX_BACKGROUND_POINTS:
            return []
        return parsed.enumerate()
    except Exception:  # noqa: BLE001 - an old or foreign spec only loses the background
        return []


def protocol_space(data: ReportData) -> Figure:
    """Tested candidates in parameter space, coloured by observed life."""
    title = "Protocol space"
    names = [n for n in data.parameter_names if _all_numeric(data, n)]
    if not names:
        note = "The candidates have no numeric parameters to place in a space (materials pool)."
        return Figure("space", title, note=note)
    if not data.candidates:
        return Figure("space", title, note="No candidates were proposed yet.")
    pairs = [(names[0], names[1])] if len(names) >= 2 else [(names[0], None)]
    if len(names) >= 3:
        pairs = [(names[0], names[1]), (names[0], names[2]), (names[1], names[2])]
    background = _background(data)
    observed = [c for c in data.candidates if c.observed_life is not None]
    unobserved = [c for c in data.candidates if c.observed_life is None]
    lives = np.array([c.observed_life for c in observed], dtype=float)
    rec = data.recommendation
    with mpl.rc_context(_RC):
        fig = _figure(3.6 * len(pairs) + 1.2, 3.8)
        axes = fig.subplots(1, len(pairs), squeeze=False)[0]
        scatter = None
        for ax, (x_name, y_name) in zip(axes, pairs, strict=True):

            def coords(items, x=x_name, y=y_name):
                xs = np.array([_num(c.get(x) if isinstance(c, dict) else c.parameters.get(x))
                               for c in items], dtype=float)  # fmt: skip
                if y is None:
                    return xs, np.array([c.observed_life for c in items], dtype=float)
                ys = np.array([_num(c.get(y) if isinstance(c, dict) else c.parameters.get(y))
                               for c in items], dtype=float)  # fmt: skip
                return xs, ys

            if background and y_name is not None:
                bx, by = coords(background)
                ax.scatter(bx, by, s=40, color="0.9", marker="s", zorder=1, label="feasible")
            if unobserved and y_name is not None:
                ux, uy = coords(unobserved)
                ax.scatter(ux, uy, s=30, facecolor="none", edgecolor="0.3", zorder=2,
                           label="tested, no life")  # fmt: skip
            if observed:
                ox, oy = coords(observed)
                order = np.argsort(lives)  # best on top
                scatter = ax.scatter(ox[order], oy[order], c=lives[order], cmap=_CMAP, s=32,
                                     edgecolor="k", linewidth=0.3, zorder=3)  # fmt: skip
            if rec is not None and rec.parameters and y_name is not None:
                rx, ry = _num(rec.parameters.get(x_name)), _num(rec.parameters.get(y_name))
                ax.scatter([rx], [ry], marker="*", s=220, facecolor="none", edgecolor="crimson",
                           linewidth=1.5, zorder=4, label="recommended")  # fmt: skip
            ax.margins(0.08)
            ax.set_xlabel(f"{x_name}{_unit(data, x_name)}")
            ax.set_ylabel(f"{y_name}{_unit(data, y_name)}" if y_name else "observed life (cycles)")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            axes[0].legend(handles, labels, loc="best", fontsize=7)
        if scatter is not None and len(pairs) and pairs[0][1] is not None:
            fig.colorbar(scatter, ax=list(axes), label="observed life (cycles)", pad=0.01)
        svg = _svg(fig)
    caption = (
        f"{len(observed)} candidates with an observed life, {len(unobserved)} without"
        + (
            f"; grey squares: the {len(background)} feasible points of the space"
            if background
            else ""
        )
        + ("; panels are 2-D projections of a 3-D space" if len(pairs) == 3 else "")
        + "."
    )
    return Figure("space", title, svg=svg, caption=caption)


def _all_numeric(data: ReportData, name: str) -> bool:
    """Whether every candidate gives ``name`` a number (others are left out of the plot)."""
    return all(isinstance(c.parameters.get(name), int | float) for c in data.candidates)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def pareto_front(data: ReportData) -> Figure | None:
    """The first two objectives against each other with the non-dominated set; None for
    single-objective campaigns (the section is left out)."""
    if len(data.objectives) < 2:
        return None
    title = "Pareto front"
    first, second = data.objectives[0], data.objectives[1]
    both: list[CandidateRow] = [
        c for c in data.candidates if first.metric in c.metrics and second.metric in c.metrics
    ]
    if not both:
        return Figure(
            "pareto", title, note=f"No candidate has values for both {first.metric} and "
            f"{second.metric} yet (computable from stored cycles: cycle_life, "
            "capacity_retention, discharge_capacity, peak_temperature, charge_time)."
        )  # fmt: skip
    points = np.array([[c.metrics[first.metric], c.metrics[second.metric]] for c in both])
    directions = (first.direction != "minimize", second.direction != "minimize")
    front = pareto_mask(points, directions)
    with mpl.rc_context(_RC):
        fig = _figure(6.0, 4.6)
        ax = fig.add_subplot()
        ax.scatter(points[~front, 0], points[~front, 1], s=22, color="0.6", label="dominated")
        ordered = points[front][np.argsort(points[front][:, 0])]
        ax.plot(ordered[:, 0], ordered[:, 1], "o-", color="tab:red", ms=6, label="Pareto front")
        for objective, axis in ((first, ax.axvline), (second, ax.axhline)):
            if objective.threshold is not None:
                axis(objective.threshold, color="k", ls=":", lw=1)
        ax.set_xlabel(f"{_METRIC_LABELS.get(first.metric, first.metric)} ({first.direction})")
        ax.set_ylabel(f"{_METRIC_LABELS.get(second.metric, second.metric)} ({second.direction})")
        ax.legend(loc="best")
        svg = _svg(fig)
    caption = f"{int(front.sum())} of {len(both)} candidates are non-dominated; dotted: thresholds."
    return Figure("pareto", title, svg=svg, caption=caption)


def nyquist(data: ReportData) -> Figure:
    """−Im Z against Re Z at each checkpoint, one panel per experiment, equal aspect."""
    title = "EIS at checkpoints (Nyquist)"
    sets = [s for s in data.spectra if s.spectra]
    if not sets:
        skipped = data.event_counts.get("eis_skipped", 0)
        why = f" ({skipped} checkpoints were skipped, see eis_skipped events)" if skipped else ""
        return Figure("nyquist", title, note=f"No EIS spectra were measured{why}.")
    peak = max(float(np.max(np.abs(sp.impedance_ohm))) for s in sets for sp in s.spectra)
    scale, unit = (1e3, "mΩ") if peak < 1.0 else (1.0, "Ω")
    columns = min(3, len(sets))
    rows = math.ceil(len(sets) / columns)
    cycles = [sp.cycle_index for s in sets for sp in s.spectra]
    norm = mpl.colors.Normalize(min(cycles), max(max(cycles), min(cycles) + 1))
    cmap = mpl.colormaps["plasma"]
    with mpl.rc_context(_RC):
        fig = _figure(3.4 * columns + 1.0, 3.2 * rows)
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, spectrum_set in zip(axes, sets, strict=False):
            for sp in spectrum_set.spectra:
                z = sp.impedance_ohm * scale
                ax.plot(z.real, -z.imag, "o-", ms=2.5, lw=1, color=cmap(norm(sp.cycle_index)))
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(spectrum_set.cell_id or spectrum_set.experiment_id[:8], fontsize=9)
            ax.set_xlabel(f"Re Z ({unit})")
            ax.set_ylabel(f"−Im Z ({unit})")
        for ax in axes[len(sets) :]:
            ax.set_visible(False)
        mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=list(axes[: len(sets)]), label="cycle", pad=0.01)
        svg = _svg(fig)
    caption = (
        f"{sum(len(s.spectra) for s in sets)} spectra of {len(sets)} experiments shown "
        f"({data.spectra_total} stored in all); colour: cycle of the checkpoint."
    )
    return Figure("nyquist", title, svg=svg, caption=caption)


def all_figures(data: ReportData) -> list[Figure]:
    """Every figure of the report, in page order (the Pareto front only when ≥ 2 objectives)."""
    figures = [
        capacity_fade(data),
        predicted_vs_measured(data),
        best_by_round(data),
        protocol_space(data),
        pareto_front(data),
        nyquist(data),
    ]
    return [f for f in figures if f is not None]
