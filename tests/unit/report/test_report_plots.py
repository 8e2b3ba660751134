"""The report's figures from in-memory data: SVG when the data is there, a note that
names what is missing when it is not, never an exception."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import numpy as np
import pytest

from voltloop.db.readback import StoredSpectrum
from voltloop.orchestrator import report_plots
from voltloop.orchestrator.report_model import (
    CandidateRow,
    CapacityTrace,
    ExperimentRow,
    Objective,
    PredictionRow,
    Recommendation,
    ReportData,
    RoundRow,
    SpectrumSet,
)

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
SPACE = {"parameters": [{"name": "CC1", "unit": "C"}, {"name": "CC2", "unit": "C"}]}


def _experiment(i: int, *, life: int | None, predicted: float | None) -> ExperimentRow:
    prediction = None
    if predicted is not None:
        prediction = PredictionRow(predicted, 20.0, 100, "m v1", NOW)
    return ExperimentRow(
        id=f"e{i}", candidate_id=i, round_index=i % 2, cell_id=f"cell-{i}",
        cycler_url="sim://cycler", channel=i, status="completed", end_reason="x",
        created_at=NOW, queued_at=NOW, started_at=NOW, ended_at=NOW, cycles_stored=200,
        last_cycle=199, measured_life=life, peak_temperature_c=40.0, channel_hours=1.0,
        prediction=prediction,
    )  # fmt: skip


def _data(n: int = 6, **changes) -> ReportData:
    experiments = [_experiment(i, life=150 + 10 * i, predicted=160.0 + 9 * i) for i in range(n)]
    candidates = [
        CandidateRow(
            id=i, round_index=i % 2, parameters={"CC1": 3.6 + i, "CC2": 4.0 + 0.5 * i},
            material=None, acquisition_value=0.1, predicted_mean=100.0, predicted_std=10.0,
            status="observed", experiment_ids=(f"e{i}",), observed_life=150.0 + 10 * i,
            observed_source="measured",
            metrics={"cycle_life": 150.0 + 10 * i, "peak_temperature": 50.0 - i},
        )
        for i in range(n)
    ]  # fmt: skip
    cycles = np.arange(2000)
    traces = {
        f"e{i}": CapacityTrace(f"e{i}", cycles, 1.1 * (1 - 0.2 * cycles / (150 + 10 * i)))
        for i in range(n)
    }
    f = np.logspace(4, -2, 20)
    spectra = tuple(
        SpectrumSet(f"e{i}", f"cell-{i}", tuple(
            StoredSpectrum(c, f, 0.02 + 0.01 / (1 + 1j * f * 0.01), None, None, None, NOW)
            for c in (0, 50, 100)))
        for i in range(2)
    )  # fmt: skip
    data = ReportData(
        name="c", kind="protocol", status="completed", seed=0, description="",
        spec={"space": SPACE},
        created_at=NOW, updated_at=NOW, generated_at=NOW, database="sqlite://",
        eol_threshold_ah=0.88, nominal_capacity_ah=1.1,
        objectives=(Objective("cycle_life", "maximize"),), parameter_names=("CC1", "CC2"),
        rounds=(RoundRow(0, "completed", 3, NOW, NOW, NOW),
                RoundRow(1, "completed", 3, NOW, NOW, NOW)),
        candidates=tuple(candidates), experiments=tuple(experiments), traces=traces,
        spectra=spectra, spectra_total=6, events=(), events_total=0, event_counts={},
        event_levels={}, recommendation=Recommendation(5, {"CC1": 8.6, "CC2": 6.5}, 200.0, "m",
                                                       "info", NOW),
    )  # fmt: skip
    return dataclasses.replace(data, **changes)


def _points_in_polylines(svg: str) -> int:
    return sum(len(m.split("L")) for m in re.findall(r'<path d="M ([^"]*)"', svg))


TWO_OBJECTIVES = (
    Objective("cycle_life", "maximize"),
    Objective("peak_temperature", "minimize", 48.0),
)


@pytest.fixture(scope="module")
def figures() -> dict[str, report_plots.Figure]:
    """Every figure drawn once (drawing dominates these tests' time)."""
    return {f.key: f for f in report_plots.all_figures(_data(objectives=TWO_OBJECTIVES))}


def test_every_figure_is_inline_svg_without_external_references(figures):
    assert list(figures) == ["capacity", "calibration", "best", "space", "pareto", "nyquist"]
    for figure in figures.values():
        assert figure.svg is not None, figure.note
        assert figure.svg.startswith("<svg") and figure.svg.rstrip().endswith("</svg>")
        assert "<?xml" not in figure.svg and "DOCTYPE" not in figure.svg
        assert not re.search(r'(href|src)="(https?:|//|file:)', figure.svg)


def test_capacity_traces_are_downsampled(figures):
    figure = figures["capacity"]
    assert "6 experiments" in figure.caption and "CC1 (C)" in figure.caption
    # 6 traces of 2000 cycles each drawn with at most MAX_POINTS_PER_TRACE points apiece
    assert len(figure.svg) < 100_000


def test_calibration_caption_reports_error(figures):
    # predicted - measured = 10 - i for i in 0..5: mean +7.5
    caption = figures["calibration"].caption
    assert "mean error +8 cycles" in caption and "6 experiments" in caption


def test_pareto_front_for_two_objectives(figures):
    # life rises and temperature falls with i: only the last candidate is non-dominated
    assert "1 of 6 candidates are non-dominated" in figures["pareto"].caption
    assert report_plots.pareto_front(_data()) is None
    other = (Objective("cycle_life", "maximize"), Objective("specific_energy", "maximize"))
    missing = report_plots.pareto_front(_data(objectives=other))
    assert missing.svg is None and "specific_energy" in missing.note


@pytest.mark.parametrize(
    ("figure", "changes", "note"),
    [
        ("capacity_fade", {"traces": {}}, "No cycles were stored"),
        ("nyquist", {"spectra": (), "event_counts": {"eis_skipped": 4}},
         "No EIS spectra were measured (4 checkpoints were skipped"),
        ("best_by_round", {"rounds": ()}, "no rounds yet"),
        ("protocol_space", {"parameter_names": ()}, "no numeric parameters"),
    ],
)  # fmt: skip
def test_missing_data_gives_a_note(figure, changes, note):
    result = getattr(report_plots, figure)(_data(**changes))
    assert result.svg is None and note in result.note


def test_no_prediction_with_measured_life_gives_a_note():
    data = _data()
    experiments = tuple(dataclasses.replace(e, measured_life=None) for e in data.experiments)
    result = report_plots.predicted_vs_measured(dataclasses.replace(data, experiments=experiments))
    assert result.svg is None and "(6 predicted, 0 measured)" in result.note


def test_unobserved_candidates_give_a_best_so_far_note():
    data = _data()
    candidates = tuple(dataclasses.replace(c, observed_life=None) for c in data.candidates)
    result = report_plots.best_by_round(dataclasses.replace(data, candidates=candidates))
    assert result.svg is None and "no best-so-far" in result.note


def test_outlying_checkpoint_cycles_do_not_set_the_capacity_axis():
    from matplotlib.figure import Figure as MplFigure

    ax = MplFigure().add_subplot()
    values = np.r_[np.linspace(1.10, 1.09, 40), [1.65, 1.66]]  # two slow checkpoint cycles
    ax.plot(np.arange(values.size), values)
    assert report_plots._robust_ylim(ax, values, 0.88) == 2
    bottom, top = ax.get_ylim()
    assert bottom < 0.88 and 1.10 < top < 1.2
    assert report_plots._robust_ylim(ax, np.linspace(1.1, 0.8, 50), 0.88) == 0  # a real fade
