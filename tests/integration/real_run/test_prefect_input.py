"""The operator step through Prefect's input form: a round flow pauses with
``pause_flow_run(wait_for_input=...)`` listing the waiting cells; an answer given to
the paused run is stored exactly like ``voltloop confirm``; and a sheet settled by
``voltloop confirm`` meanwhile resumes the paused run by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from voltloop.db.engine import read_session
from voltloop.db.models import Event, Experiment
from voltloop.orchestrator.loading_confirmation import confirm_campaign

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def paused_runs() -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [r for r in client.read_flow_runs() if r.state and r.state.is_paused()]


def when_paused(
    act: Callable[[object], None], errors: list, wait_s: float = 60.0
) -> threading.Thread:
    """In a thread: wait until a flow run is paused, then ``act(run)``."""

    def watch() -> None:
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                runs = paused_runs()
                if runs:
                    act(runs[0])
                    return
                time.sleep(0.3)
            errors.append("no flow run paused")
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def outcome_events(campaign) -> tuple[list[dict], dict[str, str]]:
    with read_session(campaign.db) as session:
        confirmed = [
            dict(e.payload)
            for e in session.scalars(select(Event).where(Event.kind == "loading_confirmed"))
        ]
        by_cell = {e.cell_id: e.status.value for e in session.scalars(select(Experiment))}
    return confirmed, by_cell


def one_round(campaign):
    campaign.spec = campaign.spec.model_copy(update={"rounds": 1})
    return campaign.engine()


def test_a_form_answer_is_stored_like_voltloop_confirm(prefect_server, desk_campaign) -> None:
    from prefect.flow_runs import resume_flow_run

    from voltloop.orchestrator.flows import campaign_flow

    engine = one_round(desk_campaign)
    errors: list = []
    answered: dict = {}

    def answer(run) -> None:
        sheet = engine.ctx.operator.pending()
        cells = [{"cell_id": c.cell_id, "outcome": "loaded"} for c in sheet.waiting]
        cells[1]["outcome"] = "damaged"
        answered.update(run=run.id, damaged=cells[1]["cell_id"])
        resume_flow_run(run.id, run_input={"round": sheet.round_index, "cells": cells})

    watcher = when_paused(answer, errors)
    result = campaign_flow(engine, poll_interval_s=0.05, operator_input=True)
    watcher.join(5)
    assert not errors, errors
    assert result.finished
    confirmed, by_cell = outcome_events(desk_campaign)
    assert len(confirmed) == 1 and confirmed[0]["source"] == "Prefect input form"
    assert confirmed[0]["cells"][answered["damaged"]] == "damaged"
    assert by_cell.pop(answered["damaged"]) == "aborted"
    assert set(by_cell.values()) == {"completed"} and len(by_cell) == 3


def test_voltloop_confirm_during_the_pause_resumes_the_run(prefect_server, desk_campaign) -> None:
    from prefect.client.orchestration import get_client

    from voltloop.orchestrator.flows import campaign_flow

    engine = one_round(desk_campaign)
    errors: list = []
    paused: list = []

    def confirm_by_cli(run) -> None:
        paused.append(run.id)
        confirm_campaign(desk_campaign.url, "attia-ci")

    watcher = when_paused(confirm_by_cli, errors)
    result = campaign_flow(engine, poll_interval_s=0.05, operator_input=True)
    watcher.join(5)
    assert not errors, errors
    assert result.finished
    confirmed, by_cell = outcome_events(desk_campaign)
    assert [c["source"] for c in confirmed] == ["voltloop confirm"]
    assert set(by_cell.values()) == {"completed"} and len(by_cell) == 4
    with get_client(sync_client=True) as client:
        states = [s.type.value for s in client.read_flow_run_states(paused[0])]
    assert "PAUSED" in states and states[-1] == "COMPLETED"


def test_a_bad_form_answer_is_recorded_and_stores_nothing(desk_campaign) -> None:
    from voltloop.orchestrator.flows import CellAnswerInput, LoadingAnswer, store_form_answer

    engine = desk_campaign.engine()
    for _ in range(10):
        engine.step()
        sheet = engine.ctx.operator.pending()
        if sheet is not None:
            break
    good = CellAnswerInput(cell_id=sheet.cells[0].cell_id, outcome="not_built")
    bad = LoadingAnswer(round=0, cells=[good, CellAnswerInput(cell_id="attia-ci-r7-000")])
    assert store_form_answer(engine, 0, bad) is False
    assert store_form_answer(engine, 0, LoadingAnswer(round=0, cells=[])) is False
    with read_session(desk_campaign.db) as session:
        kinds = [e.kind for e in session.scalars(select(Event))]
        rejected = session.scalar(select(Event).where(Event.kind == "loading_answer_rejected"))
        message = rejected.message
    assert "loading_confirmed" not in kinds
    assert "Prefect form row 2: cell_id = 'attia-ci-r7-000'" in message
    assert store_form_answer(engine, 0, LoadingAnswer(round=0, cells=[good])) is True
    confirmed, _ = outcome_events(desk_campaign)
    assert confirmed[0]["cells"] == {good.cell_id: "not_built"}
