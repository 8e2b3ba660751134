"""`voltloop dry-run` end to end: Prefect flows, the simulated cycler over TCP, the
real driver, SQLite — then the same command again, which resumes the finished
campaign without dispatching anything twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Candidate, Cycle, Event, Experiment

SCRIPT = Path(sys.executable).with_name("voltloop")
EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"


def _dry_run(tmp_path: Path, url: str) -> dict:
    result = subprocess.run(
        [str(SCRIPT), "dry-run", str(EXAMPLE), "--db", url, "--json", "--history-cells", "8"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "VOLTLOOP_CACHE": str(tmp_path / "cache"),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_dry_run_with_prefect_then_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    first = _dry_run(tmp_path, url)
    assert first["campaign"] == "attia-ci"
    assert first["rounds_completed"] == 2
    assert sum(first["experiments"].values()) == 8
    assert set(first["experiments"]) <= {"completed", "safety_stopped", "failed"}

    db = open_database(url)
    with read_session(db) as session:
        experiments = list(session.scalars(select(Experiment)))
        per_experiment = {
            e.id: session.scalar(
                select(func.count()).select_from(Cycle).where(Cycle.experiment_id == e.id)
            )
            for e in experiments
        }
        parameters = [
            tuple(sorted(c.parameters.items())) for c in session.scalars(select(Candidate))
        ]
        dispatched = session.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "dispatched")
        )
        stops = {e.id: (e.status.value, e.end_reason) for e in experiments}
    db.dispose()
    assert len(set(parameters)) == len(parameters) == 8
    assert dispatched == 8
    assert sum(per_experiment.values()) == first["cycles_stored"]
    for experiment_id, cycles in per_experiment.items():
        status, reason = stops[experiment_id]
        assert reason, f"experiment {experiment_id} ended without a reason"
        if status == "completed":  # ran its compiled 30 cycles (early-prediction cycle)
            assert cycles == 30, (experiment_id, cycles, reason)

    # early predictions were made from 30 stored cycles and fed the proposer
    assert first["recommendation"] is not None
    assert first["recommendation"]["objective"] > 0
    assert first["true_life_of_recommendation"] > 0

    again = _dry_run(tmp_path, url)
    assert again["experiments"] == first["experiments"]
    assert again["cycles_stored"] == first["cycles_stored"]
