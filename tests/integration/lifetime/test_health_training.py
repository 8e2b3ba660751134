"""Cell-health models fitted from the database flag the short-lived cells."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import ExperimentStatus
from voltloop.surrogates.lifetime import synthetic
from voltloop.surrogates.lifetime.dataset import LifetimeDataError
from voltloop.surrogates.lifetime.health import HealthAction
from voltloop.surrogates.lifetime.health_training import assess_experiments, fit_health

from .conftest import add_campaign, add_cell

KW = {"curve_cycles": (), "eis_every": 50}


def test_fit_and_assess_from_the_database(engine) -> None:
    cid = add_campaign(engine)
    lives = np.r_[np.linspace(200, 260, 5), np.linspace(600, 1000, 12)]
    for i, life in enumerate(lives):
        add_cell(engine, cid, synthetic.make_cell(float(life), 500 + i, **KW))
    with write_session(engine) as session:
        version = fit_health(session, "fastcharge", up_to_cycle=100)
    short = add_cell(
        engine,
        cid,
        synthetic.make_cell(220.0, 900, **KW),
        last_cycle=100,
        status=ExperimentStatus.RUNNING,
    )
    long = add_cell(
        engine,
        cid,
        synthetic.make_cell(900.0, 901, **KW),
        last_cycle=100,
        status=ExperimentStatus.RUNNING,
    )
    with read_session(engine) as session:
        verdicts = assess_experiments(session, [short, long], version)
    assert verdicts[0].failure_score > 0 > verdicts[1].failure_score
    assert verdicts[0].action in (HealthAction.STOP, HealthAction.REVIEW)
    assert verdicts[1].action is HealthAction.CONTINUE


def test_too_few_cells_is_a_clear_error(engine) -> None:
    cid = add_campaign(engine)
    add_cell(engine, cid, synthetic.make_cell(300.0, 1, **KW))
    with write_session(engine) as session, pytest.raises(LifetimeDataError, match="at least 5"):
        fit_health(session, "fastcharge")


def test_the_engine_monitor_judges_checkpoints_only_within_the_models_window(engine) -> None:
    """Spectra past the early-prediction cycle (cells running on to end of life) get no
    verdict: the models never saw cells that old."""
    from voltloop.orchestrator.health import CellHealthMonitor

    cid = add_campaign(engine)
    lives = np.r_[np.linspace(200, 260, 5), np.linspace(600, 1000, 12)]
    for i, life in enumerate(lives):
        add_cell(engine, cid, synthetic.make_cell(float(life), 500 + i, **KW))
    with write_session(engine) as session:
        fit_health(session, "fastcharge", up_to_cycle=100)
    running = ExperimentStatus.RUNNING
    young = add_cell(engine, cid, synthetic.make_cell(220.0, 900, **KW), 100, running)
    old = add_cell(engine, cid, synthetic.make_cell(220.0, 900, **KW), 160, running)
    monitor = CellHealthMonitor(lambda: [], up_to_cycle=100)
    with read_session(engine) as session:
        verdict = monitor.assess(session, young)
        assert verdict is not None and verdict.failure_score > 0
        assert monitor.assess(session, old) is None
