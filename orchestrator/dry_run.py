"""A campaign against the simulated lab: the same engine, simulated instruments.

The simulated cycler (and potentiostat, when available) are served in-process on
loopback TCP and reached through the real drivers, so every byte crosses a socket
exactly as it would to hardware. The simulated lab's loader plays the operator.

Protocol campaigns predict each cell's life early (``EarlyLifeModel``). Materials
campaigns build one cell per proposed material (orchestrator/materials_dry_run.py:
the cell format, the pool and the true value) and measure their objectives at the
fixed test's last cycle, without an early-life predictor (docs/decisions/0007).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from voltloop.campaigns.base import CampaignBase, CampaignKind
from voltloop.campaigns.loading import load_campaign
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.campaigns.protocol_campaign import ProtocolCampaign
from voltloop.db.engine import mask_url, read_session
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import Cycle, Event, Experiment, Round
from voltloop.drivers.sim.history import CHUNK_S as HISTORY_STEP_S
from voltloop.orchestrator.context import EngineContext, EngineSettings, StepKind, StepResult
from voltloop.orchestrator.engine import CampaignEngine, experiments_by_status, register_campaign
from voltloop.orchestrator.lab_pacing import LabPacer
from voltloop.orchestrator.ports import LifetimePredictor
from voltloop.orchestrator.prefect_server import TemporaryServer, start_temporary_server
from voltloop.orchestrator.simulated_operator import SimulatedOperator
from voltloop.orchestrator.simulated_truth import TruthPrefetch, true_life

DEFAULT_EXAMPLE = "protocol.toml"
#: The built-in example of each campaign kind (``voltloop dry-run --kind``).
KIND_EXAMPLES = {CampaignKind.PROTOCOL: "protocol.toml", CampaignKind.MATERIALS: "materials.toml"}
#: How long a simulated channel waits at an EIS checkpoint for the host (virtual s).
EIS_WAIT_S = 7 * 86_400.0
#: Virtual time the simulated lab advances between two of the host's poll sweeps.
#: A dry run drives the simulated lab's clock itself, in lockstep with the engine:
#: poll sweep, advance one step, poll sweep... so nothing in virtual time depends on
#: how fast the host or the machine is (the same seed gives the same campaign), and
#: the run goes as fast as the host and the simulator can. The step is the one the
#: pretraining history is simulated with (drivers/sim/history.py ``CHUNK_S``): a cell
#: then rests at an EIS checkpoint, and runs past its early-prediction cycle, as long
#: as the history's cells did (up to one step).
DRY_RUN_STEP_S = HISTORY_STEP_S


class DryRunError(ValueError):
    exit_code = 2


def example_path(name: str = DEFAULT_EXAMPLE) -> Path:
    """Path of a campaign file shipped in ``campaigns/examples``."""
    return Path(str(importlib.resources.files("voltloop.campaigns.examples") / name))


def load_dry_run_spec(
    config: Path | None, seed: int | None = None, kind: CampaignKind | None = None
) -> CampaignBase:
    """The campaign in ``config``, else the built-in example of ``kind`` (default:
    protocol); an explicit file's own kind wins over ``kind``."""
    spec = load_campaign(config or example_path(KIND_EXAMPLES[kind or CampaignKind.PROTOCOL]))
    if seed is not None and seed != spec.seed:
        spec = spec.model_copy(update={"seed": seed, "name": f"{spec.name}-seed{seed}"})
    if len(spec.instruments.cyclers) != 1:
        raise DryRunError(
            f"a dry run simulates one cycler; the campaign names {len(spec.instruments.cyclers)}"
        )
    return spec


def simulated_cycler_limits() -> Any:
    """The simulated cycler of dry runs: a fast-charging channel (30 A, 0-5 V, 80 °C),
    the kind fast-charge studies use, so cells rated to 20 C (22 A) fit it."""
    from voltloop.drivers.sim.virtual_lab import InstrumentLimits

    return InstrumentLimits(max_current_A=30.0)


def is_simulated(spec: CampaignBase) -> bool:
    """True if every instrument of the campaign is a ``sim://`` placeholder."""
    urls = [c.url for c in spec.instruments.cyclers]
    if spec.instruments.potentiostat is not None:
        urls.append(spec.instruments.potentiostat.url)
    return all(url.startswith("sim://") for url in urls)


def stored_spec(db_url: str, campaign: str) -> CampaignBase:
    """The validated spec of a campaign stored in the database."""
    from voltloop.campaigns.loading import validate_campaign_data
    from voltloop.orchestrator.engine import find_campaign

    db = open_database(db_url, read_only=True)
    try:
        _, data = find_campaign(db, campaign)
    finally:
        db.dispose()
    return validate_campaign_data(data, f"campaign {campaign!r} in {mask_url(db_url)}")


def protocol_compiler(spec: ProtocolCampaign, limits: Any) -> Callable[[dict, bool], dict]:
    """Candidate parameters → the unicycler protocol JSON, validated against the cell's
    and the instrument's limits (raises ProtocolLimitError naming step and limit)."""
    from voltloop.drivers.protocols import compile_candidate

    def compile_protocol(parameters: dict[str, float], run_on: bool) -> dict[str, Any]:
        cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
        compiled = compile_candidate(spec, parameters, cycles=cycles)
        compiled.ensure_dispatchable(limits)
        return compiled.model_dump(mode="json")

    return compile_protocol


@dataclass
class DryRunSummary:
    campaign: str
    database: str
    rounds_completed: int
    experiments: dict[str, int]
    cycles_stored: int
    channel_hours: float  # simulated cycler-channel time used
    wall_s: float
    recommendation: dict[str, Any] | None = None
    true_life_of_recommendation: float | None = None
    kind: str = CampaignKind.PROTOCOL.value
    #: materials: the recommended material's objective on fresh simulated cells
    true_value_of_recommendation: float | None = None
    #: instrument faults injected (``--faults``), by instrument and kind
    faults_injected: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarise(db, campaign_id: int, name: str, url: str, wall_s: float) -> DryRunSummary:
    with read_session(db) as session:
        rounds = session.scalar(
            select(func.count())
            .select_from(Round)
            .where(Round.campaign_id == campaign_id, Round.status == "completed")
        )
        experiment_ids = select(Experiment.id).where(Experiment.campaign_id == campaign_id)
        cycles = session.scalar(
            select(func.count()).select_from(Cycle).where(Cycle.experiment_id.in_(experiment_ids))
        )
        seconds = session.scalar(
            select(func.sum(Cycle.t_end_s - Cycle.t_start_s)).where(
                Cycle.experiment_id.in_(experiment_ids)
            )
        )
        event = session.scalar(
            select(Event)
            .where(Event.campaign_id == campaign_id, Event.kind == "recommendation")
            .order_by(Event.id.desc())
            .limit(1)
        )
        recommendation = dict(event.payload) if event is not None and event.payload else None
    return DryRunSummary(
        campaign=name,
        database=url,
        rounds_completed=int(rounds or 0),
        experiments=experiments_by_status(db, campaign_id),
        cycles_stored=int(cycles or 0),
        channel_hours=float(seconds or 0.0) / 3600.0,
        wall_s=wall_s,
        recommendation=recommendation,
    )


def run_dry_run(
    spec: CampaignBase,
    db_url: str,
    *,
    faults: float = 0.0,
    predictor: LifetimePredictor | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    use_prefect: bool = False,
    poll_interval_s: float = 0.0,
    history_cells: int | None = None,
    on_history: Callable[[int, int], None] | None = None,
    surrogate: Any = None,
    prefect_server: TemporaryServer | None = None,
) -> DryRunSummary:
    """Run ``spec`` against simulated instruments into ``db_url``; resumable.

    Protocol campaigns: without an explicit ``predictor``, early predictions come from
    :class:`~voltloop.orchestrator.lifetime.EarlyLifeModel`, pretrained on
    ``history_cells`` simulated cells (cached on disk after the first run).
    Materials campaigns: no predictor; ``surrogate`` (``SurrogateSettings``) sizes the
    GNN ensemble. Bad input (an unreadable structure file, an empty pool) raises before
    the campaign is stored. With ``use_prefect`` the flows use ``prefect_server`` (a
    caller that starts it first gives it longer to boot), else a temporary server
    started here (orchestrator/prefect_server.py), stopped at the end."""
    own_server = None
    if use_prefect and prefect_server is None:
        own_server = prefect_server = start_temporary_server()
    try:
        return _run_dry_run(
            spec,
            db_url,
            faults=faults,
            predictor=predictor,
            on_step=on_step,
            prefect_server=prefect_server if use_prefect else None,
            use_prefect=use_prefect,
            poll_interval_s=poll_interval_s,
            history_cells=history_cells,
            on_history=on_history,
            surrogate=surrogate,
        )
    finally:
        if own_server is not None:
            own_server.stop()


def _run_dry_run(
    spec: CampaignBase,
    db_url: str,
    *,
    faults: float,
    predictor: LifetimePredictor | None,
    on_step: Callable[[StepResult], None] | None,
    prefect_server: TemporaryServer | None,
    use_prefect: bool,
    poll_interval_s: float,
    history_cells: int | None,
    on_history: Callable[[int, int], None] | None,
    surrogate: Any,
) -> DryRunSummary:
    if isinstance(spec, MaterialsCampaign):
        from voltloop.orchestrator.materials_dry_run import MaterialsDryRun

        kind_run: Any = MaterialsDryRun(spec, settings=surrogate)
    elif isinstance(spec, ProtocolCampaign):
        if predictor is None and spec.lifetime.early_prediction_cycle is not None:
            predictor = default_predictor(spec, history_cells, on_history)
        kind_run = _ProtocolDryRun(spec, predictor)
    else:
        raise DryRunError(f"no dry run for campaigns of kind {spec.kind!r}")
    from voltloop.drivers.cycler import CyclerDriver
    from voltloop.drivers.sim.serve import serve_lab

    started = time.perf_counter()
    init_database(db_url)
    db = open_database(db_url)
    try:
        kind_run.prepare(db)  # validates bad input before anything is stored
    except BaseException:
        db.dispose()
        raise
    cycler_spec = spec.instruments.cyclers[0]
    lab = kind_run.lab(cycler_spec.channels, simulated_cycler_limits())
    instruments = serve_lab(
        lab,
        link="tcp",
        speed=None,  # sweeps stream at once; the cell rests until the host resumes it
        fault_rate=faults,
        seed=spec.seed,
        clock=False,  # the lab advances in lockstep with the engine (DRY_RUN_STEP_S)
    )
    user_on_step = on_step
    pacer = LabPacer(
        lab,
        DRY_RUN_STEP_S,
        spec.lifetime.early_prediction_cycle,
        spec.lifetime.end_of_life_capacity * spec.cell.nominal_capacity_Ah,
    )

    kind_on_step = getattr(kind_run, "on_step", None)

    def on_step(result: StepResult) -> None:
        if result.kind in (StepKind.POLL, StepKind.WAIT):  # the instruments had their turn
            pacer.advance()
        if kind_on_step is not None:
            kind_on_step(db, campaign_id, result)
        if user_on_step is not None:
            user_on_step(result)

    cycler = CyclerDriver(instruments.cycler.url, timeout_s=spec.instruments.timeout_s)
    potentiostat, eis_spec = _potentiostat(spec, instruments)
    try:
        campaign_id = register_campaign(db, spec)
        proposer = kind_run.proposer(db, campaign_id)
        ctx = EngineContext(
            db=db,
            campaign_id=campaign_id,
            campaign_name=spec.name,
            spec=spec,
            cyclers={cycler_spec.url: cycler},
            potentiostat=potentiostat,
            eis_spec=eis_spec,
            proposer=proposer,
            predictor=kind_run.predictor,
            operator=SimulatedOperator({cycler_spec.url: lab}, spec),
            compile_protocol=kind_run.compiler(cycler.limits()),
            settings=EngineSettings(),
        )
        engine = CampaignEngine(ctx)
        warm_up = getattr(kind_run.predictor, "warm_up", None)
        if callable(warm_up):
            warm_up()  # the pretraining history, meanwhile Prefect's server starts
        if use_prefect:
            from voltloop.orchestrator.flows import campaign_flow

            with prefect_server.serving() if prefect_server else contextlib.nullcontext():
                campaign_flow(engine, poll_interval_s=poll_interval_s, on_step=on_step)
        else:
            engine.run(poll_interval_s=poll_interval_s, on_step=on_step)
        engine.release()
    except BaseException:
        _close(kind_run)  # no summary will be made: stop any worker now
        raise
    finally:
        cycler.close()
        if potentiostat is not None:
            potentiostat.close()
        instruments.stop()
    summary = summarise(db, campaign_id, spec.name, mask_url(db.url), time.perf_counter() - started)
    db.dispose()
    summary.faults_injected = {
        name: {kind.value: n for kind, n in sorted(injector.counts.items())}
        for name, injector in instruments.faults.items()
    }
    summary.kind = spec.kind.value
    try:
        kind_run.finish(summary)
    finally:
        _close(kind_run)
    return summary


def _close(kind_run: Any) -> None:
    close = getattr(kind_run, "close", None)
    if close is not None:
        close()


class _ProtocolDryRun:
    """The protocol-campaign parts of a dry run (the materials ones are in
    orchestrator/materials_dry_run.py)."""

    def __init__(self, spec: ProtocolCampaign, predictor: LifetimePredictor | None):
        self.spec = spec
        self.predictor = predictor
        self.truth: TruthPrefetch | None = None

    def prepare(self, db: Any) -> None:
        """Nothing to check beyond the spec itself."""

    def lab(self, channels: int, limits: Any) -> Any:
        """The simulated lab. A channel waits for its EIS checkpoint (up to a week of
        virtual time) instead of skipping it; in lockstep the host comes within one step."""
        from voltloop.drivers.sim.lab import SimulatedLab

        return SimulatedLab(
            channel_count=channels, seed=self.spec.seed, limits=limits, eis_timeout_s=EIS_WAIT_S
        )

    def proposer(self, db: Any, campaign_id: int) -> Any:
        from voltloop.orchestrator.proposing import ProtocolProposer

        return ProtocolProposer(self.spec)

    def compiler(self, limits: Any) -> Callable[[dict, bool], dict]:
        return protocol_compiler(self.spec, limits)

    def on_step(self, db: Any, campaign_id: int, result: StepResult) -> None:
        """Once the confirmation round has chosen its protocols, start simulating their
        true lives on the other core (:class:`TruthPrefetch`)."""
        if result.kind != StepKind.PROPOSE or self.truth is not None:
            return
        with read_session(db) as session:
            payload = session.scalar(
                select(Event.payload)
                .where(Event.campaign_id == campaign_id, Event.kind == "confirmation_proposed")
                .limit(1)
            )
        if payload and payload.get("protocols"):
            self.truth = TruthPrefetch(
                self.spec, [dict(p["parameters"]) for p in payload["protocols"]]
            )

    def finish(self, summary: DryRunSummary) -> None:
        if summary.recommendation:
            parameters = summary.recommendation["parameters"]
            life = self.truth.life_of(parameters) if self.truth is not None else None
            summary.true_life_of_recommendation = (
                life if life is not None else true_life(self.spec, parameters)
            )

    def close(self) -> None:
        if self.truth is not None:
            self.truth.close()


def default_predictor(
    spec: ProtocolCampaign,
    history_cells: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LifetimePredictor:
    from voltloop.orchestrator.lifetime import (
        DEFAULT_HISTORY_CELLS,
        EarlyLifeModel,
        simulated_history,
    )

    n = history_cells or DEFAULT_HISTORY_CELLS
    return EarlyLifeModel(
        lambda: simulated_history(spec, n, progress=progress),
        spec.lifetime.early_prediction_cycle,
    )


def _potentiostat(spec: CampaignBase, instruments: Any) -> tuple[Any, Any]:
    """The EIS driver and request for the campaign's checkpoints, if it has any."""
    if spec.eis is None or instruments.potentiostat is None:
        return None, None
    from voltloop.drivers.eis import EisSpec
    from voltloop.drivers.potentiostat import PalmSensPotentiostat

    eis = spec.eis
    request = EisSpec(
        f_start_Hz=eis.start_frequency_Hz,
        f_end_Hz=eis.end_frequency_Hz,
        points_per_decade=eis.points_per_decade,
        amplitude_Vrms=eis.amplitude_V,
    )
    driver = PalmSensPotentiostat(
        instruments.potentiostat.url,
        timeout_s=spec.instruments.timeout_s,
        measurement_time_scale=0.0,  # the simulated sweep streams at once (speed=None)
    )
    return driver, request
