"""A dry run with instrument faults injected at 2 % of commands (delays, dropped,
garbled and partial replies, disconnects, resets, channel faults) completes: the
drivers retry what can be retried, faulted experiments end failed or safety-stopped
with the instrument's reason, and the loop carries on around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from voltloop.db.engine import read_session
from voltloop.db.enums import ExperimentStatus
from voltloop.db.migrate import open_database
from voltloop.db.models import Candidate, Event, Experiment
from voltloop.orchestrator.dry_run import load_dry_run_spec, run_dry_run

pytestmark = pytest.mark.timeout(600)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"


def test_dry_run_with_two_percent_faults_completes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOLTLOOP_CACHE", str(tmp_path / "cache"))
    spec = load_dry_run_spec(EXAMPLE)
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    summary = run_dry_run(spec, url, faults=0.02, history_cells=8)
    assert summary.rounds_completed == spec.rounds
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as s:
            experiments = [(e.status, e.end_reason) for e in s.scalars(select(Experiment))]
            candidates = s.scalars(select(Candidate.id)).all()
            events = [(e.kind, e.message) for e in s.scalars(select(Event))]
    finally:
        db.dispose()
    # every experiment ended, and every one that did not complete says why
    assert all(status.is_terminal for status, _ in experiments)
    for status, reason in experiments:
        if status != ExperimentStatus.COMPLETED:
            assert status in (ExperimentStatus.FAILED, ExperimentStatus.SAFETY_STOPPED,
                              ExperimentStatus.ABORTED)  # fmt: skip
            assert reason
    # each round filled its batch; no candidate was tested twice
    assert len(experiments) == spec.rounds * spec.batch_size
    assert len(set(candidates)) == len(candidates) == len(experiments)
    # the faults happened (the simulated instruments count what they injected)
    injected = sum(sum(kinds.values()) for kinds in summary.faults_injected.values())
    assert injected > 0, summary.faults_injected
    assert summary.recommendation is not None
    assert events  # the audit trail kept going
