"""``voltloop run`` end to end against ``voltloop sim serve`` in another process, over
TCP: the simulated lab plays the real lab, its loader control port plays the
operator's hands, ``voltloop confirm --cells`` the operator's answer (one cell
damaged; the loop carries on around it). An instrument whose identity does not match
the campaign is refused before anything is written; a bad cells file is rejected
without a write."""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Cycle, Event, Experiment
from voltloop.drivers.sim.loader_control import LoaderControlClient
from voltloop.drivers.sim.virtual_lab import CellSpec

pytestmark = pytest.mark.timeout(180)

VOLTLOOP = Path(sys.executable).with_name("voltloop")
#: ``voltloop`` that answers Ctrl-C even when the test run itself ignores SIGINT (a suite
#: started in the background by a non-interactive shell passes SIG_IGN on to every child),
#: and writes every thread's stack to stderr on SIGUSR1 (:func:`stop_with_ctrl_c`).
VOLTLOOP_CTRL_C = [
    sys.executable,
    "-c",
    "import faulthandler, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "from voltloop.orchestrator.cli import main; main()",
]
CHANNELS = 3

CAMPAIGN = """
name = "{name}"
kind = "protocol"
seed = 3
rounds = {rounds}
batch_size = {channels}
[lifetime]
early_prediction_cycle = 12
max_cycles = 13
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
url = "{cycler}"
channels = {channels}
identity = "{identity}"
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


def env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PREFECT_HOME": str(tmp / "prefect"),
        "VOLTLOOP_CACHE": str(tmp / "cache"),
    }


def voltloop(args: list[str], tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VOLTLOOP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
        env=env(tmp),
    )


@contextlib.contextmanager
def sim_serve(tmp: Path, channels: int, speed: int) -> Iterator[dict]:
    """``voltloop sim serve`` in a subprocess, no cells loaded: its URLs (cycler,
    potentiostat, loader control)."""
    proc = subprocess.Popen(
        [str(VOLTLOOP), "sim", "serve", "--channels", str(channels), "--speed", str(speed),
         "--no-load", "--control-port", "0", "--max-current", "30", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp,
        env=env(tmp),
    )  # fmt: skip
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with sim_serve(tmp_path_factory.mktemp("lab"), CHANNELS, 10_000) as info:
        yield info


def campaign_file(tmp: Path, lab: dict, name: str, identity: str, rounds: int = 2) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        CAMPAIGN.format(
            name=name, cycler=lab["cycler"], channels=CHANNELS, identity=identity, rounds=rounds
        )
    )
    return path


def stop_with_ctrl_c(proc: subprocess.Popen, timeout: float = 30) -> int:
    """Ctrl-C ``proc`` and return its exit code; if it has not exited within ``timeout``,
    fail with the stacks of all its threads (where it hangs) and the end of its stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to stderr
        time.sleep(1.0)
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
        raise AssertionError(
            f"no exit within {timeout} s of Ctrl-C; stacks and stderr:\n{stderr[-20000:]}"
        ) from None


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"voltloop run ended early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} after {timeout} s")
        time.sleep(0.2)
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _dispatched(path: Path) -> int:
    """Dispatched events in a SQLite campaign database, read without the ORM."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT count(*) FROM event WHERE kind = 'dispatched'").fetchone()[
                0
            ]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def event_count(url: str, kind: str | None = None) -> int:
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            query = select(func.count()).select_from(Event)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return session.scalar(query)
    finally:
        db.dispose()


def test_identity_mismatch_is_refused_before_anything_is_written(lab, tmp_path) -> None:
    config = campaign_file(tmp_path, lab, "wrong-lab", "ACME,CY-96")
    result = voltloop(
        ["run", str(config), "--db", f"sqlite:///{tmp_path / 'run.db'}", "--no-prefect",
         "--sheets", "sheets"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "refusing to start" in message
    assert "does not contain the configured identity 'ACME,CY-96'" in message
    assert "VOLTLOOP,VLC-3" in message and "Traceback" not in message
    assert not (tmp_path / "run.db").exists() and not (tmp_path / "sheets").exists()


def test_run_with_an_operator_and_a_damaged_cell(lab, tmp_path) -> None:
    name = "real-run-ci"
    url = f"sqlite:///{tmp_path / 'run.db'}"
    config = campaign_file(tmp_path, lab, name, "VOLTLOOP,VLC-3")
    hands = LoaderControlClient(lab["loader"])
    run = subprocess.Popen(
        [*VOLTLOOP_CTRL_C, "run", str(config), "--db", url, "--no-prefect", "--sheets", "sheets",
         "--no-early-prediction", "--poll-interval", "0.1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env(tmp_path),
    )  # fmt: skip
    try:
        sheet = wait_for(tmp_path / "sheets" / f"{name}-loading-sheet-round-0.csv", run)
        assert [int(r["channel"]) for r in sheet] == list(range(CHANNELS))

        # a bad answer: refused with line, field and value; nothing stored
        bad = tmp_path / "bad.csv"
        bad.write_text(f"cell_id,outcome\n{sheet[0]['cell_id']},lodaed\n")
        before = event_count(url)
        refused = voltloop(["confirm", name, "--db", url, "--cells", str(bad)], tmp_path)
        assert refused.returncode == 2
        assert "line 2: outcome = 'lodaed'" in " ".join(refused.stderr.split())
        assert event_count(url) == before

        # the operator loads two cells; the third was damaged while building it
        for i, row in enumerate(sheet):
            if i == 1:
                row["outcome"] = "damaged"
                continue
            hands.load_cell(int(row["channel"]), CellSpec(cell_id=row["cell_id"], seed=i))
            row["outcome"] = "loaded"
        answers = tmp_path / "round-0.csv"
        with answers.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(sheet[0]))
            writer.writeheader()
            writer.writerows(sheet)
        confirmed = voltloop(
            ["confirm", name, "--db", url, "--cells", str(answers), "--json"], tmp_path
        )
        assert confirmed.returncode == 0, confirmed.stderr
        assert json.loads(confirmed.stdout)["stored"] == {r["cell_id"]: r["outcome"] for r in sheet}

        # round 1: every cell loaded, confirmed without a file
        second = wait_for(tmp_path / "sheets" / f"{name}-loading-sheet-round-1.csv", run)
        for i, row in enumerate(second):
            hands.load_cell(int(row["channel"]), CellSpec(cell_id=row["cell_id"], seed=10 + i))
        assert voltloop(["confirm", name, "--db", url], tmp_path).returncode == 0
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["rounds_completed"] == 2
    assert summary["experiments"] == {"aborted": 1, "completed": 2 * CHANNELS - 1}

    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            experiments = [
                (e.id, e.cell_id, e.status.value, e.end_reason, e.records_ingested)
                for e in session.scalars(select(Experiment))
            ]
            cycles = {
                e[0]: session.scalar(
                    select(func.count()).select_from(Cycle).where(Cycle.experiment_id == e[0])
                )
                for e in experiments
            }
            kinds = list(session.scalars(select(Event.kind)))
    finally:
        db.dispose()
    damaged = sheet[1]["cell_id"]
    ingested = {cell: (id_, records) for id_, cell, *_, records in experiments}
    for id_, cell, status, reason, _ in experiments:
        if cell == damaged:
            assert status == "aborted" and reason == "operator: cell damaged"
            assert cycles[id_] == 0
        else:
            assert status == "completed" and cycles[id_] == 12, (cell, reason)
    assert kinds.count("loading_sheet") == 2 and kinds.count("loading_confirmed") == 2
    assert kinds.count("dispatched") == 2 * CHANNELS - 1
    # every record the simulated cycler holds for round 1 was stored, once
    for row in second:
        status = hands.status(int(row["channel"]))
        experiment_id, stored = ingested[row["cell_id"]]
        assert status["experiment_id"] == experiment_id and status["state"] == "completed"
        assert stored == status["record_count"]


def test_stop_and_resume_a_real_campaign(lab, tmp_path) -> None:
    """Ctrl-C the orchestrator while its cells cycle; ``resume_real_campaign`` checks the
    instruments again and finishes the round without dispatching or storing twice."""
    from voltloop.orchestrator.dry_run import stored_spec
    from voltloop.orchestrator.loading_confirmation import confirm_campaign
    from voltloop.orchestrator.real_run import resume_real_campaign

    name = "real-run-resume"
    url = f"sqlite:///{tmp_path / 'run.db'}"
    config = campaign_file(tmp_path, lab, name, "VOLTLOOP", rounds=1)
    hands = LoaderControlClient(lab["loader"])
    run = subprocess.Popen(
        [*VOLTLOOP_CTRL_C, "run", str(config), "--db", url, "--no-prefect", "--sheets", "sheets",
         "--no-early-prediction", "--poll-interval", "0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env(tmp_path),
    )  # fmt: skip
    try:
        sheet = wait_for(tmp_path / "sheets" / f"{name}-loading-sheet-round-0.csv", run)
        for i, row in enumerate(sheet):
            hands.load_cell(int(row["channel"]), CellSpec(cell_id=row["cell_id"], seed=20 + i))
        confirm_campaign(url, name)  # as `voltloop confirm` does, without a process
        # the cells need ~3 s of wall time for their 12 cycles at 10,000x: watch the
        # database file directly (milliseconds a look) so Ctrl-C comes while they cycle
        deadline = time.monotonic() + 60
        while _dispatched(tmp_path / "run.db") < CHANNELS:
            assert time.monotonic() < deadline, "cells were not dispatched"
            time.sleep(0.02)
        assert stop_with_ctrl_c(run) == 130, run.stderr.read()[-2000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    summary = resume_real_campaign(
        stored_spec(url, name), url, early_prediction=False, poll_interval_s=0.1
    )
    assert summary.rounds_completed == 1 and summary.experiments == {"completed": CHANNELS}
    assert summary.cycles_stored == 12 * CHANNELS
    assert event_count(url, "dispatched") == CHANNELS
    assert event_count(url, "loading_sheet") == 1
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            ingested = {
                e.cell_id: (e.id, e.records_ingested) for e in session.scalars(select(Experiment))
            }
    finally:
        db.dispose()
    for row in sheet:
        status = hands.status(int(row["channel"]))
        assert (status["experiment_id"], status["record_count"]) == ingested[row["cell_id"]]
