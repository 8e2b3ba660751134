"""SIGKILL the orchestrator at chosen points of a real run, resume each time.

``voltloop sim serve`` in its own process plays the lab (it survives every kill, as
instruments do); ``voltloop run`` is the orchestrator, killed with SIGKILL six times:
while it waits for the operator, just after the operator confirms (mid-dispatch),
while cycles are being ingested (twice), and between rounds. Each time the same
command starts again and resumes from the database (the last time as ``voltloop
resume``). At the end every candidate was
tested exactly once and every cycle stored exactly once: each experiment's stored
record count equals the simulator's own count for it, and its cycles are exactly the
protocol's.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Candidate, Cycle, Event, Experiment
from voltloop.drivers.sim.loader_control import LoaderControlClient
from voltloop.drivers.sim.virtual_lab import CellSpec

pytestmark = pytest.mark.timeout(420)

VOLTLOOP = Path(sys.executable).with_name("voltloop")
CHANNELS = 3
ROUNDS = 3
CYCLES = 12

CAMPAIGN = f"""
name = "kill-resume"
kind = "protocol"
seed = 5
rounds = {ROUNDS}
batch_size = {CHANNELS}
[lifetime]
early_prediction_cycle = {CYCLES}
max_cycles = {CYCLES + 1}
[cell]
kind = "lfp_graphite_18650"
nominal_capacity_Ah = 1.1
min_voltage_V = 2.0
max_voltage_V = 3.6
max_charge_rate_C = 10.0
max_discharge_rate_C = 20.0
max_temperature_C = 60.0
chamber_temperature_C = 30.0
[instruments]
timeout_s = 3.0
[[instruments.cyclers]]
url = "{{cycler}}"
channels = {CHANNELS}
[[objectives]]
metric = "cycle_life"
direction = "maximize"
[space]
preset = "attia2020"
[cycling]
charge_rate_C = 1.0
upper_cutoff_V = 3.6
discharge_rate_C = 4.0
lower_cutoff_V = 2.0
record_interval_s = 30.0
"""


def _env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PREFECT_HOME": str(tmp / "prefect"),
        "VOLTLOOP_CACHE": str(tmp / "cache"),
    }


@pytest.fixture
def lab(tmp_path):
    proc = subprocess.Popen(
        [str(VOLTLOOP), "sim", "serve", "--channels", str(CHANNELS), "--speed", "5000",
         "--no-load", "--control-port", "0", "--max-current", "30", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
        env=_env(tmp_path),
    )  # fmt: skip
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(15)


class Run:
    """The orchestrator process, started (and restarted) with the same command."""

    def __init__(self, tmp: Path, config: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.args = [str(VOLTLOOP), "run", str(config), "--db", url, "--no-prefect",
                     "--sheets", "sheets", "--no-early-prediction", "--poll-interval", "0.05",
                     "--json"]  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.kills: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.tmp,
            env=_env(self.tmp), start_new_session=True,
        )  # fmt: skip

    def kill(self, where: str, *, then: list[str] | None = None) -> None:
        """SIGKILL the orchestrator, then start it again (``then``: another command)."""
        assert self.proc is not None
        if self.proc.poll() is not None:  # it finished before we got to it
            raise AssertionError(f"the run ended before the kill {where!r}: {self._tail()}")
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills.append(where)
        if then is not None:
            self.args = then
        self.start()

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() not in (None, 0):
            raise AssertionError(f"voltloop run failed: {self._tail()}")

    def _tail(self) -> str:
        return self.proc.stderr.read()[-3000:] if self.proc and self.proc.stderr else ""


def _query(url: str, statement):
    if not Path(url.removeprefix("sqlite:///")).exists():
        return None
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            return session.execute(statement).all()
    finally:
        db.dispose()


def _sheet(tmp: Path, round_index: int) -> list[dict[str, str]] | None:
    """The round's loading sheet, in the folder ``voltloop run --sheets`` named (which
    ``voltloop resume`` keeps using: the run's options are stored with the campaign)."""
    path = tmp / "sheets" / f"kill-resume-loading-sheet-round-{round_index}.csv"
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _cycles_stored(url: str) -> int:
    rows = _query(url, select(func.count()).select_from(Cycle))
    return rows[0][0] if rows else 0


def test_sigkill_at_six_points_then_resume_stores_everything_once(lab, tmp_path) -> None:
    rng = random.Random(2026)
    config = tmp_path / "kill-resume.toml"
    config.write_text(CAMPAIGN.format(cycler=lab["cycler"]))
    url = f"sqlite:///{tmp_path / 'run.db'}"
    hands = LoaderControlClient(lab["loader"])
    run = Run(tmp_path, config, url)
    finals: dict[str, int] = {}  # experiment id -> the simulator's record count at its end

    def note_finals() -> None:
        for channel in range(CHANNELS):
            status = hands.status(channel)
            if status["experiment_id"] and status["state"] in ("completed", "stopped"):
                finals[status["experiment_id"]] = status["record_count"]

    def operate(round_index: int) -> None:
        """Load the sheet's cells (unless already in) and confirm, as an operator would."""
        note_finals()
        for i, row in enumerate(_sheet(tmp_path, round_index)):
            channel = int(row["channel"])
            if hands.status(channel)["cell_id"] != row["cell_id"]:
                hands.load_cell(
                    channel, CellSpec(cell_id=row["cell_id"], seed=100 * round_index + i)
                )
        done = subprocess.run(
            [str(VOLTLOOP), "confirm", "kill-resume", "--db", url], capture_output=True,
            text=True, timeout=60, cwd=tmp_path, env=_env(tmp_path),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def wait(condition, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            run.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    run.start()
    try:
        # 1. round 0's sheet is out and the orchestrator waits for the operator
        wait(lambda: _sheet(tmp_path, 0) is not None, "round 0's sheet")
        run.kill("waiting for the operator")
        operate(0)
        # 2. just after the confirmation: loading, leasing, starting channels
        time.sleep(rng.uniform(0.0, 0.3))
        run.kill("mid-dispatch")
        # 3. cells cycling, cycles being stored
        wait(lambda: _cycles_stored(url) >= rng.randint(2, 8), "round 0 ingest")
        run.kill("mid-ingest")
        # 4. round 1: confirm, then kill while it dispatches
        wait(lambda: _sheet(tmp_path, 1) is not None, "round 1's sheet")
        operate(1)
        time.sleep(rng.uniform(0.0, 0.3))
        run.kill("mid-dispatch")
        # 5. round 1 ingest, later in the cycles
        round_1 = CHANNELS * CYCLES + rng.randint(4, 2 * CYCLES)
        wait(lambda: _cycles_stored(url) >= round_1, "round 1 ingest")
        run.kill("mid-ingest")
        # 6. between rounds: round 1 ending, the next proposal being made
        wait(
            lambda: (_query(url, select(func.count()).select_from(Event).where(
                Event.kind == "round_completed")) or [(0,)])[0][0] >= 2,
            "round 1's end",
        )  # fmt: skip
        # ... and come back through `voltloop resume`, which finds the campaign's real
        # instruments in the stored spec
        resume = [str(VOLTLOOP), "resume", "kill-resume", "--db", url, "--no-prefect", "--json"]
        run.kill("between rounds", then=resume)
        wait(lambda: _sheet(tmp_path, 2) is not None, "round 2's sheet")
        operate(2)
        out, err = run.proc.communicate(timeout=180)
        assert run.proc.returncode == 0, err[-3000:]
    finally:
        if run.proc is not None and run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait(10)
    note_finals()
    summary = json.loads(out)
    assert run.kills == ["waiting for the operator", "mid-dispatch", "mid-ingest",
                         "mid-dispatch", "mid-ingest", "between rounds"]  # fmt: skip
    assert summary["rounds_completed"] == ROUNDS
    assert summary["experiments"] == {"completed": ROUNDS * CHANNELS}

    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            experiments = session.scalars(select(Experiment)).all()
            per_candidate = session.execute(
                select(Candidate.id, func.count(Experiment.id))
                .join(Experiment, Experiment.candidate_id == Candidate.id)
                .group_by(Candidate.id)
            ).all()
            parameters = [
                tuple(sorted(c.parameters.items())) for c in session.scalars(select(Candidate))
            ]
            cycles = {
                e.id: session.scalars(
                    select(Cycle.cycle_index).where(Cycle.experiment_id == e.id)
                ).all()
                for e in experiments
            }
            ingested = {e.id: e.records_ingested for e in experiments}
            takeovers = session.scalar(
                select(func.count()).select_from(Event).where(Event.kind == "lease_taken_over")
            )
    finally:
        db.dispose()
    # every candidate proposed once and tested exactly once
    assert len(per_candidate) == ROUNDS * CHANNELS and all(n == 1 for _, n in per_candidate)
    assert len(set(parameters)) == len(parameters)
    # every cycle stored exactly once, and every record the simulator made for it
    assert set(finals) == set(ingested)
    for experiment_id, indices in cycles.items():
        assert sorted(indices) == list(range(CYCLES)), experiment_id
        assert ingested[experiment_id] == finals[experiment_id], experiment_id
    # the killed orchestrators' leases were taken over, not waited out
    assert takeovers >= 1
