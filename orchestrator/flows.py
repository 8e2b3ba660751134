"""Prefect flows around the campaign engine: ``campaign_flow`` and ``round_flow``.

Prefect executes and shows the work; the database remembers it
(docs/decisions/0002-campaign-engine.md). Each task is one coarse unit — opening a
round, a proposal, a dispatch, a poll sweep, the final recommendation — named by
what the engine says is due, so the Prefect UI reads like the campaign. Poll steps
are batched into one task per ``poll_batch_s`` to keep Prefect's per-task cost
(a few ms) small next to the work.

A real run's operator step (orchestrator/operator_desk.py) can also be answered
through Prefect's input form: with ``operator_input``, a round waiting for its cells
pauses with ``pause_flow_run(wait_for_input=LoadingAnswer...)``, listing the cells;
the answer is stored exactly like ``voltloop confirm``. While the flow is paused a
background thread keeps stepping the engine (polls, heartbeats, reminders, the
loading timeout) and resumes the flow itself once the sheet is settled another way
(``voltloop confirm``, the timeout), so a pause never outlives its purpose and never
times out in Prefect (docs/decisions/0004-prefect-input-form.md).

Without ``PREFECT_API_URL`` the flows run on Prefect's temporary local server (no
set-up); with it they appear in that server's UI. Resume never relies on Prefect's
caching or state: every task is ``NO_CACHE`` and re-reads the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from voltloop.orchestrator.context import StepKind, StepResult
from voltloop.orchestrator.engine import CampaignEngine
from voltloop.orchestrator.prefect_server import apply_defaults
from voltloop.orchestrator.real_run import step_is_idle

apply_defaults()  # before Prefect reads its settings

from prefect import flow, task  # noqa: E402 - after the environment defaults
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.input import RunInput  # noqa: E402
from pydantic import BaseModel  # noqa: E402

OnStep = Callable[[StepResult], None] | None
log = logging.getLogger("voltloop.flows")

#: How often a paused flow asks Prefect whether the form was answered, s.
INPUT_POLL_S = 2
#: Extra time a pause may last beyond the loading deadline before Prefect would fail
#: the run; the stepping thread resumes it long before.
PAUSE_MARGIN_S = 3600


class CellAnswerInput(BaseModel):
    """One row of the loading form: a cell of the sheet and what happened to it."""

    cell_id: str
    outcome: Literal["loaded", "not_built", "damaged"] = "loaded"


class LoadingAnswer(RunInput):
    """The Prefect input form of a round's loading sheet (pre-filled: every waiting cell
    loaded). Remove the rows of cells not dealt with yet; an empty list answers nothing."""

    round: int = 0
    cells: list[CellAnswerInput] = []


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def engine_step(engine: CampaignEngine) -> StepResult:
    """One unit of campaign work (retried on unexpected errors; instrument faults are
    handled and recorded inside the engine)."""
    return engine.step()


@task(name="poll-sweeps", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def poll_sweeps(
    engine: CampaignEngine, poll_interval_s: float, batch_s: float, on_step: OnStep
) -> StepResult:
    """Poll until something other than polling is due, or ``batch_s`` has passed."""
    deadline = time.monotonic() + batch_s
    while True:
        result = engine.step()
        if on_step is not None:
            on_step(result)
        if result.kind not in (StepKind.POLL, StepKind.WAIT) or time.monotonic() > deadline:
            return result
        if result.kind == StepKind.WAIT:
            time.sleep(poll_interval_s)


@flow(name="round", log_prints=False)
def round_flow(
    engine: CampaignEngine,
    round_index: int,
    poll_interval_s: float,
    batch_s: float,
    on_step: OnStep,
    operator_input: bool = False,
) -> StepResult:
    """A round from proposal to its last experiment (``round_index`` names the run)."""
    while True:
        kind, _ = engine.due()
        if kind in (StepKind.OPEN_ROUND, StepKind.FINALISE):
            return StepResult(StepKind.CLOSE_ROUND, f"round {round_index} done")
        if kind == StepKind.POLL:
            result = poll_sweeps(engine, poll_interval_s, batch_s, on_step)
            continue  # poll_sweeps reported its own steps
        result = engine_step.with_options(name=kind.value.replace("_", "-"))(engine)
        if on_step is not None:
            on_step(result)
        if operator_input and kind == StepKind.DISPATCH and loading_sheet_waiting(engine):
            ask_operator(engine, poll_interval_s=poll_interval_s, on_step=on_step)
            continue
        if step_is_idle(result):
            time.sleep(poll_interval_s)


def loading_sheet_waiting(engine: CampaignEngine) -> Any:
    """The operator's pending loading sheet, if the operator is a desk with one."""
    pending = getattr(engine.ctx.operator, "pending", None)
    return pending() if callable(pending) else None


def ask_operator(
    engine: CampaignEngine,
    *,
    poll_interval_s: float = 1.0,
    on_step: OnStep = None,
    input_poll_s: float = INPUT_POLL_S,
) -> bool:
    """Pause the current flow run for the loading form of the waiting sheet; store the
    answer like ``voltloop confirm``. Returns True if the form's answer was stored.

    Must run inside a flow run. A thread steps the engine meanwhile and resumes the
    run (with an empty answer) once the sheet is settled without the form."""
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run

    from voltloop.db.types import utcnow
    from voltloop.orchestrator.loading_confirmation import describe_sheet

    sheet = loading_sheet_waiting(engine)
    if sheet is None:
        return False
    form = LoadingAnswer.with_initial_data(
        description=describe_sheet(sheet).replace("\n", "  \n"),
        round=sheet.round_index,
        cells=[CellAnswerInput(cell_id=c.cell_id) for c in sheet.waiting],
    )
    run_id = FlowRunContext.get().flow_run.id
    stop = threading.Event()
    stepper = _Stepper(
        target=_step_while_paused,
        args=(engine, run_id, sheet.round_index, stop, poll_interval_s, on_step),
        name="voltloop-operator-wait",
        daemon=True,
    )
    left = (sheet.deadline - utcnow()).total_seconds()
    stepper.start()
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=int(max(left, 0) + sheet.reminder_every_s + PAUSE_MARGIN_S),
            poll_interval=input_poll_s,
        )
    finally:
        stop.set()
        stepper.join()
    if stepper.error is not None:
        raise stepper.error
    return store_form_answer(engine, sheet.round_index, answer)


def store_form_answer(engine: CampaignEngine, round_index: int, answer: LoadingAnswer) -> bool:
    """Store a form answer through the same check as ``voltloop confirm --cells``; a
    bad answer is recorded as a warning event and stores nothing."""
    from voltloop.db.engine import write_session
    from voltloop.db.enums import EventLevel
    from voltloop.orchestrator.loading_confirmation import (
        Answer,
        ConfirmationError,
        store_confirmation,
    )

    if not answer.cells:
        return False
    answers = [
        Answer(c.cell_id, c.outcome, f"Prefect form row {i + 1}")
        for i, c in enumerate(answer.cells)
    ]
    try:
        store_confirmation(
            engine.ctx.db,
            engine.ctx.campaign_id,
            answers,
            source="Prefect input form",
            round_index=round_index,
        )
    except ConfirmationError as exc:
        with write_session(engine.ctx.db) as session:
            engine.ctx.event(
                session,
                "loading_answer_rejected",
                f"Prefect form answer for round {round_index} not stored: {exc}",
                level=EventLevel.WARNING,
                payload={"round": round_index},
            )
        return False
    return True


class _Stepper(threading.Thread):
    error: BaseException | None = None


def _step_while_paused(
    engine: CampaignEngine,
    run_id: Any,
    round_index: int,
    stop: threading.Event,
    poll_interval_s: float,
    on_step: OnStep,
) -> None:
    """Keep the campaign going while its flow run waits for the form; resume the run
    once nothing of ``round_index`` waits any more (or the campaign ended)."""
    from prefect.flow_runs import resume_flow_run

    me = threading.current_thread()
    try:
        while not stop.is_set():
            result = engine.step()
            if on_step is not None:
                on_step(result)
            sheet = loading_sheet_waiting(engine)
            if result.finished or sheet is None or sheet.round_index != round_index:
                break
            if step_is_idle(result):
                stop.wait(poll_interval_s)
    except BaseException as exc:  # noqa: BLE001 - handed to the flow's thread
        me.error = exc  # type: ignore[attr-defined]
    # Resume the run; it may not be paused yet (the pause is proposed after this thread
    # starts), so try until it is, or until the flow's thread says it is back.
    while not stop.is_set():
        try:
            resume_flow_run(run_id, run_input={"round": round_index, "cells": []})
            return
        except Exception as exc:  # noqa: BLE001 - not paused yet, or answered meanwhile
            log.debug("resuming the paused flow run: %s", exc)
        stop.wait(max(poll_interval_s, 0.2))


@flow(name="campaign", log_prints=False)
def campaign_flow(
    engine: CampaignEngine,
    *,
    poll_interval_s: float = 1.0,
    batch_s: float = 2.0,
    on_step: OnStep = None,
    operator_input: bool = False,
) -> StepResult:
    """Run a campaign to its end, one ``round_flow`` per round."""
    while True:
        kind, _ = engine.due()
        if kind == StepKind.FINALISE:
            result = engine_step.with_options(name="finalise")(engine)
            if on_step is not None:
                on_step(result)
            return result
        if kind == StepKind.OPEN_ROUND:
            opened = engine_step.with_options(name="open-round")(engine)
            if on_step is not None:
                on_step(opened)
        index = _current_round_index(engine)
        round_flow.with_options(flow_run_name=f"{engine.ctx.campaign_name}-round-{index}")(
            engine, index, poll_interval_s, batch_s, on_step, operator_input
        )


def _current_round_index(engine: CampaignEngine) -> int:
    from sqlalchemy import func, select

    from voltloop.db.engine import read_session
    from voltloop.db.models import Round

    with read_session(engine.ctx.db) as session:
        index = session.scalar(
            select(func.max(Round.round_index)).where(Round.campaign_id == engine.ctx.campaign_id)
        )
    return int(index or 0)
