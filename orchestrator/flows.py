"""Prefect flows around the campaign engine: ``campaign_flow`` and ``round_flow``.

Prefect executes and shows the work; the database remembers it
(docs/decisions/0002-campaign-engine.md). Each task is one coarse unit — opening a
round, a proposal, a dispatch, a poll sweep, the final recommendation — named by
what the engine says is due, so the Prefect UI reads like the campaign. Poll steps
are batched into one task per ``poll_batch_s`` to keep Prefect's per-task cost
(a few ms) small next to the work.

Without ``PREFECT_API_URL`` the flows run on Prefect's temporary local server (no
set-up); with it they appear in that server's UI. Resume never relies on Prefect's
caching or state: every task is ``NO_CACHE`` and re-reads the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from voltloop.orchestrator.context import StepKind, StepResult
from voltloop.orchestrator.engine import CampaignEngine

#: Defaults that keep Prefect quiet and offline unless the user configured otherwise.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",  # the temporary server's own chatter
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # the temporary server needs ~5-9 s on 2 idle cores; allow for a busy machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
for _name, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

from prefect import flow, task  # noqa: E402 - after the environment defaults
from prefect.cache_policies import NO_CACHE  # noqa: E402

OnStep = Callable[[StepResult], None] | None


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
        if result.kind == StepKind.WAIT:
            time.sleep(poll_interval_s)


@flow(name="campaign", log_prints=False)
def campaign_flow(
    engine: CampaignEngine,
    *,
    poll_interval_s: float = 1.0,
    batch_s: float = 2.0,
    on_step: OnStep = None,
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
            engine, index, poll_interval_s, batch_s, on_step
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
