"""A campaign on real instruments: the dry run's engine with real URLs and people.

:func:`run_real_campaign` (``voltloop run CONFIG``) connects the cyclers and the
potentiostat named in the spec through the real drivers, checks that each one is
the instrument the spec expects — identity (``*IDN?``), self-test, channels,
current, voltage and temperature limits, firmware if configured — and refuses to
start, before anything is written, if one is not. Then it runs the same engine as
the dry run with a :class:`~voltloop.orchestrator.operator_desk.LoadingDesk` as the
operator: each round's loading sheet goes out, and cells start once ``voltloop
confirm`` (or the Prefect input form) says they are in their channels.

Materials campaigns run the same way with the parts they share with dry runs
(orchestrator/materials_run.py): the pool (built and checked, or read back), the
crystal-graph proposer, the fixed test protocol (checked against the cyclers' limits
before anything is written), no early-life predictor. The cells' cathode mass comes
from ``[cell] cathode_mass_g``; a campaign that measures specific energy without it is
refused first. Each loading sheet names the material every cell is built from
(docs/decisions/0083).

:func:`resume_real_campaign` continues a stored campaign the same way (the
instruments are checked again: a swapped instrument is refused on resume too).
See docs/real-runs.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voltloop.campaigns.base import CampaignBase
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.campaigns.protocol_campaign import ProtocolCampaign
from voltloop.orchestrator.context import StepResult
from voltloop.orchestrator.operator_desk import OperatorSettings
from voltloop.orchestrator.ports import LifetimePredictor


class RealRunError(ValueError):
    """The campaign cannot run on real instruments as configured."""

    exit_code = 2


class InstrumentMismatchError(RuntimeError):
    """An instrument is not the one the campaign expects (identity, limits, firmware)."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "refusing to start: the instruments do not match the campaign (nothing was "
            "written):\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class CombinedLimits:
    """The tightest limits over several cyclers (what every channel can do); fits
    ``drivers.safety.InstrumentLimitsLike``."""

    max_current_A: float  # noqa: N815 - unit suffix
    min_voltage_V: float  # noqa: N815
    max_voltage_V: float  # noqa: N815
    max_temperature_C: float  # noqa: N815
    max_steps: int

    @classmethod
    def of(cls, limits: list[Any]) -> CombinedLimits:
        return cls(
            max_current_A=min(x.max_current_A for x in limits),
            min_voltage_V=max(x.min_voltage_V for x in limits),
            max_voltage_V=min(x.max_voltage_V for x in limits),
            max_temperature_C=min(x.max_temperature_C for x in limits),
            max_steps=min(x.max_steps for x in limits),
        )


@dataclass
class ConnectedInstruments:
    """Drivers by the spec's URLs, and what each instrument said about itself."""

    cyclers: dict[str, Any] = field(default_factory=dict)
    cycler_limits: dict[str, Any] = field(default_factory=dict)
    identities: dict[str, Any] = field(default_factory=dict)
    potentiostat: Any | None = None
    eis_spec: Any | None = None

    def close(self) -> None:
        for driver in [*self.cyclers.values(), self.potentiostat]:
            if driver is not None:
                driver.close()

    @property
    def limits(self) -> CombinedLimits:
        return CombinedLimits.of(list(self.cycler_limits.values()))


def _identity_problems(where: str, says: str, cfg: Any, identity: Any) -> list[str]:
    """The configured identity text and exact firmware, against what the instrument says."""
    problems = []
    if cfg.identity and cfg.identity not in identity.idn:
        problems.append(
            f"{where}: {says} {identity.idn!r}, which does not contain the configured "
            f"identity {cfg.identity!r}"
        )
    if cfg.firmware and cfg.firmware != identity.firmware:
        problems.append(
            f"{where}: firmware {identity.firmware!r}, the campaign requires {cfg.firmware!r}"
        )
    return problems


def check_cycler(spec: CampaignBase, cfg: Any, identity: Any, limits: Any, test: Any) -> list[str]:
    """Why the cycler at ``cfg.url`` does not fit ``spec`` (empty: it fits)."""
    from voltloop.drivers.protocols import VOLTAGE_SAFETY_MARGIN_V

    where = f"cycler {cfg.url}"
    problems = _identity_problems(where, "*IDN? says", cfg, identity)
    if test is not None and not test.passed:
        problems.append(f"{where}: self-test failed ({'; '.join(test.messages) or test.code})")
    if cfg.channels > limits.channels:
        problems.append(
            f"{where}: the campaign uses channels = {cfg.channels}, the instrument has "
            f"{limits.channels}"
        )
    cell = spec.cell
    for what, amps in (
        ("max_charge_rate_C", cell.max_charge_current_A),
        ("max_discharge_rate_C", cell.max_discharge_current_A),
    ):
        if amps > limits.max_current_A + 1e-9:
            problems.append(
                f"{where}: cell.{what} x nominal capacity = {amps:g} A is above the "
                f"instrument's max_current_A {limits.max_current_A:g} A (it would refuse "
                "every schedule)"
            )
    top = cell.max_voltage_V + VOLTAGE_SAFETY_MARGIN_V
    if top > limits.max_voltage_V + 1e-9:
        problems.append(
            f"{where}: cell.max_voltage_V {cell.max_voltage_V:g} V (+{VOLTAGE_SAFETY_MARGIN_V:g} V "
            f"safety margin) is above the instrument's max_voltage_V {limits.max_voltage_V:g} V"
        )
    if cell.min_voltage_V < limits.min_voltage_V - 1e-9:
        problems.append(
            f"{where}: cell.min_voltage_V {cell.min_voltage_V:g} V is below the instrument's "
            f"min_voltage_V {limits.min_voltage_V:g} V"
        )
    stop = spec.temperature_stop_limit_C
    if stop > limits.max_temperature_C:
        problems.append(
            f"{where}: temperature stop limit {stop:g} °C is above the instrument's "
            f"max_temperature_C {limits.max_temperature_C:g} °C"
        )
    return problems


def check_potentiostat(spec: CampaignBase, cfg: Any, identity: Any, limits: Any) -> list[str]:
    """Why the potentiostat does not fit ``spec``'s EIS checkpoints (empty: it fits)."""
    where = f"potentiostat {cfg.url}"
    problems = _identity_problems(where, "it identifies as", cfg, identity)
    eis = spec.eis
    if eis is not None and limits is not None:
        if eis.start_frequency_Hz > limits.max_frequency_Hz:
            problems.append(
                f"{where}: eis.start_frequency_Hz {eis.start_frequency_Hz:g} is above the "
                f"device's {limits.max_frequency_Hz:g} Hz"
            )
        if eis.end_frequency_Hz < limits.min_frequency_Hz:
            problems.append(
                f"{where}: eis.end_frequency_Hz {eis.end_frequency_Hz:g} is below the "
                f"device's {limits.min_frequency_Hz:g} Hz"
            )
        if not limits.min_amplitude_Vrms <= eis.amplitude_V <= limits.max_amplitude_Vrms:
            problems.append(
                f"{where}: eis.amplitude_V {eis.amplitude_V:g} is outside the device's "
                f"{limits.min_amplitude_Vrms:g}..{limits.max_amplitude_Vrms:g} V rms"
            )
    return problems


def connect_and_check(spec: CampaignBase) -> ConnectedInstruments:
    """Open every instrument of ``spec`` and check it; InstrumentMismatchError listing
    every problem (drivers closed) if one does not fit. Touches no database."""
    from voltloop.drivers.cycler import CyclerDriver

    simulated = [c.url for c in spec.instruments.cyclers if c.url.startswith("sim://")]
    pot = spec.instruments.potentiostat
    if pot is not None and pot.url.startswith("sim://"):
        simulated.append(pot.url)
    if simulated:
        raise RealRunError(
            f"{', '.join(simulated)}: sim:// instruments exist only in `voltloop dry-run`; "
            "give real URLs (socket://HOST:PORT, a device path) or serve a simulated lab "
            "with `voltloop sim serve` and use its socket:// URLs"
        )
    timeout = spec.instruments.timeout_s
    connected = ConnectedInstruments()
    problems: list[str] = []
    try:
        for cfg in spec.instruments.cyclers:
            driver = CyclerDriver(cfg.url, timeout_s=timeout)
            connected.cyclers[cfg.url] = driver
            identity = driver.identify()
            limits = driver.limits()
            connected.identities[cfg.url] = identity
            connected.cycler_limits[cfg.url] = limits
            problems += check_cycler(spec, cfg, identity, limits, driver.self_test())
        if pot is not None:
            from voltloop.drivers.potentiostat import PalmSensPotentiostat

            connected.potentiostat = PalmSensPotentiostat(pot.url, timeout_s=timeout)
            identity = connected.potentiostat.identify()
            connected.identities[pot.url] = identity
            problems += check_potentiostat(spec, pot, identity, connected.potentiostat.limits)
            if spec.eis is not None:
                from voltloop.drivers.eis import EisSpec

                connected.eis_spec = EisSpec(
                    f_start_Hz=spec.eis.start_frequency_Hz,
                    f_end_Hz=spec.eis.end_frequency_Hz,
                    points_per_decade=spec.eis.points_per_decade,
                    amplitude_Vrms=spec.eis.amplitude_V,
                )
        if problems:
            raise InstrumentMismatchError(problems)
    except BaseException:
        connected.close()
        raise
    return connected


def step_is_idle(result: StepResult) -> bool:
    """Nothing happened: a WAIT, or a DISPATCH that loaded, refused and started nothing
    (the engine reports a dispatch step whose cells all wait for the operator as
    DISPATCH, so a loop that sleeps only on WAIT would spin while people work)."""
    from voltloop.orchestrator.context import StepKind

    if result.kind == StepKind.WAIT:
        return True
    return result.kind == StepKind.DISPATCH and not any(
        n for k, n in result.counts.items() if k != "waiting"
    )


def drive(
    engine: Any,
    *,
    poll_interval_s: float,
    on_step: Callable[[StepResult], None] | None = None,
) -> StepResult:
    """``engine.run`` that also sleeps while the operator is pending."""
    while True:
        result = engine.step()
        if on_step is not None:
            on_step(result)
        if result.finished:
            return result
        if step_is_idle(result):
            time.sleep(poll_interval_s)


def potentiostat_router(eis_switch: str | None) -> Callable[[str, int], None] | None:
    """What connects the potentiostat to a channel before EIS: ``loader://HOST:PORT``
    (the simulated lab's control port, docs/real-runs.md) or None (wired by hand)."""
    if eis_switch is None:
        return None
    from voltloop.drivers.sim.loader_control import LoaderControlClient

    try:
        client = LoaderControlClient(eis_switch)
    except ValueError as exc:
        raise RealRunError(f"--eis-switch: {exc}") from exc
    return lambda _cycler_url, channel: client.attach_potentiostat(channel)


def run_real_campaign(
    spec: CampaignBase,
    db_url: str,
    *,
    operator: OperatorSettings | None = None,
    announce: Callable[[str], None] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    use_prefect: bool = False,
    prefect_input: bool = True,
    poll_interval_s: float = 1.0,
    predictor: LifetimePredictor | None = None,
    history_cells: int | None = None,
    early_prediction: bool = True,
    eis_switch: str | None = None,
    must_exist: bool = False,
    run_options: dict[str, Any] | None = None,
) -> Any:
    """Check the instruments, then run (or continue) ``spec`` into ``db_url``.

    Returns the campaign summary (``dry_run.DryRunSummary``: rounds, experiments by
    status, cycles, channel hours, recommendation). Without an explicit ``predictor``,
    early predictions come from the early-life model pretrained on ``history_cells``
    simulated cells (``early_prediction=False``: none; cells then run to the
    early-prediction cycle and count only if they reach end of life). ``must_exist``:
    refuse unless the campaign is already stored (resume). ``run_options`` (the
    command's own options, JSON) are stored as a ``run_options`` event, so a resume
    continues with them (:func:`stored_run_options`). Materials campaigns never use a
    predictor (``predictor``, ``history_cells`` and ``early_prediction`` are ignored);
    their summary has ``kind = "materials"`` and a recommendation naming the material."""
    from voltloop.db.engine import mask_url
    from voltloop.db.migrate import init_database, open_database
    from voltloop.orchestrator.context import EngineContext, EngineSettings
    from voltloop.orchestrator.dry_run import default_predictor, protocol_compiler, summarise
    from voltloop.orchestrator.engine import CampaignEngine, register_campaign
    from voltloop.orchestrator.interrupts import StopAfterStep
    from voltloop.orchestrator.operator_desk import LoadingDesk

    materials = materials_parts(spec)  # refuses a missing cathode mass before any I/O
    router = potentiostat_router(eis_switch)
    started = time.perf_counter()
    instruments = connect_and_check(spec)  # refuses before anything is written
    try:
        if materials is not None:
            materials.prepare_from_url(db_url)  # the pool, checked; writes nothing
            materials.check_test(instruments.limits)
            predictor = None  # objectives are measured at the test's last cycle
        elif (
            predictor is None
            and early_prediction
            and spec.lifetime.early_prediction_cycle is not None
        ):
            predictor = default_predictor(spec, history_cells)
        if not must_exist:
            init_database(db_url)
        db = open_database(db_url)
        try:
            if must_exist:
                from voltloop.orchestrator.engine import find_campaign

                find_campaign(db, spec.name)  # UnknownCampaignError lists the known ones
            campaign_id = register_campaign(db, spec)
            if run_options is not None:
                from voltloop.db.engine import write_session
                from voltloop.db.ingest import record_event

                with write_session(db) as session:
                    record_event(
                        session, "info", "run_options", "options of voltloop run",
                        campaign_id=campaign_id, payload=run_options,
                    )  # fmt: skip
            desk = LoadingDesk(
                db,
                campaign_id,
                spec.name,
                operator,
                announce=announce,
                potentiostat_router=router,
            )
            if materials is not None:
                proposer = materials.proposer(db, campaign_id)  # stores the pool once
                compile_protocol = materials.compiler(instruments.limits)
            else:
                from voltloop.orchestrator.proposing import ProtocolProposer

                proposer = ProtocolProposer(spec)
                compile_protocol = protocol_compiler(spec, instruments.limits)
            ctx = EngineContext(
                db=db,
                campaign_id=campaign_id,
                campaign_name=spec.name,
                spec=spec,
                cyclers=instruments.cyclers,
                potentiostat=instruments.potentiostat,
                eis_spec=instruments.eis_spec,
                proposer=proposer,
                predictor=predictor,
                operator=desk,
                compile_protocol=compile_protocol,
                settings=EngineSettings(),
            )
            engine = CampaignEngine(ctx)
            release = True
            try:
                if use_prefect:
                    from voltloop.orchestrator.flows import campaign_flow

                    campaign_flow(
                        engine,
                        poll_interval_s=poll_interval_s,
                        on_step=on_step,
                        operator_input=prefect_input,
                    )
                else:
                    drive(engine, poll_interval_s=poll_interval_s, on_step=on_step)
            except KeyboardInterrupt as exc:
                # Ctrl-C twice stops inside a step, whose write may still hold the database:
                # releasing would wait out its busy timeout. The lease expires, or a resume
                # on this host takes it over from the stopped process.
                release = isinstance(exc, StopAfterStep)
                raise
            finally:
                if release:
                    engine.release()
            summary = summarise(
                db, campaign_id, spec.name, mask_url(db.url), time.perf_counter() - started
            )
            summary.kind = spec.kind.value
            if materials is not None:
                materials.finish(summary)
            return summary
        finally:
            db.dispose()
    finally:
        instruments.close()


def materials_parts(spec: CampaignBase) -> Any:
    """The materials parts of a real run (``orchestrator.materials_run.MaterialsRun``
    with the spec's cathode mass), None for a protocol campaign. Refuses, before any
    I/O, a campaign that measures specific energy without ``[cell] cathode_mass_g``."""
    if isinstance(spec, ProtocolCampaign):
        return None
    if not isinstance(spec, MaterialsCampaign):
        raise RealRunError(f"no real run for campaigns of kind {spec.kind!r}")
    from voltloop.orchestrator.materials_run import MaterialsRun, require_cathode_mass

    return MaterialsRun(spec, cathode_mass_g=require_cathode_mass(spec))


def resume_real_campaign(spec: CampaignBase, db_url: str, **options: Any) -> Any:
    """Continue a stored campaign on its real instruments (``voltloop resume``).

    ``spec`` is the stored spec (``dry_run.stored_spec(db_url, name)``); ``options``
    are those of :func:`run_real_campaign`. The instruments are checked again first;
    issued loading sheets, their deadlines and every answer come back from the
    database, so a sheet is never issued twice."""
    return run_real_campaign(spec, db_url, must_exist=True, **options)


def stored_run_options(db_url: str, campaign: str) -> dict[str, Any]:
    """The options the campaign was last run with (``voltloop run``), or {}."""
    from sqlalchemy import select

    from voltloop.db.engine import read_session
    from voltloop.db.migrate import open_database
    from voltloop.db.models import Campaign, Event

    db = open_database(db_url, read_only=True)
    try:
        with read_session(db) as session:
            payload = session.scalar(
                select(Event.payload)
                .join(Campaign, Campaign.id == Event.campaign_id)
                .where(Campaign.name == campaign, Event.kind == "run_options")
                .order_by(Event.id.desc())
                .limit(1)
            )
    finally:
        db.dispose()
    return dict(payload or {})


def load_run_spec(config: Path) -> CampaignBase:
    from voltloop.campaigns.loading import load_campaign

    return load_campaign(config)
