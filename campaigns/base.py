"""The parts every campaign spec shares: cell, instruments, checkpoints, goals.

All models forbid unknown fields (a misspelt key is an error, not a silently
ignored setting) and are frozen (a validated spec is never edited in place; use
``model_copy(update=...)`` and validate again). Units are in the field names:
``_V`` volts, ``_A``/``_Ah`` amperes/ampere-hours, ``_s`` seconds, ``_Hz`` hertz,
``rate_C`` C-rate (1 C = nominal capacity per hour), ``temperature_C`` °C.

The protocol and materials campaigns (campaigns/protocol_campaign.py,
campaigns/materials_campaign.py) build on these; campaigns/spec.py is the
public facade that re-exports them.
"""

# ruff: noqa: N802, N815  (unit suffixes: _V, _A, _Ah, _Hz, rate_C, temperature_C)
from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: A campaign or parameter name: letters, digits, ``_ . -``; starts with a letter or digit.
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: A parameter name usable in step templates: a Python-style identifier.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,31}$"

_URL_HELP = (
    "sim://NAME (a simulated instrument that `voltloop dry-run` starts), socket://HOST:PORT, "
    "rfc2217://HOST:PORT, a device path such as /dev/ttyUSB0, or a port name such as COM3"
)
_URL_RE = re.compile(
    r"^(sim://[A-Za-z0-9_.-]+|socket://[^\s:/]+:\d{1,5}|rfc2217://[^\s:/]+:\d{1,5}"
    r"|/dev/\S+|COM\d+)$"
)


class SpecFieldError(ValueError):
    """A rule broken by one field of a model (raised inside model validators).

    ``field`` is relative to the model being validated (``"batch_size"``,
    ``"charge[2].rate_C"``); the TOML loader prefixes the model's own path, so the
    user reads ``space.charge[2].rate_C = 'CC9': ...``.
    """

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field} = {value!r}: {message}")


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields are errors; validated specs are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CampaignKind(enum.StrEnum):
    PROTOCOL = "protocol"  # search over charging-protocol parameters for one cell type
    MATERIALS = "materials"  # search over a pool of cathode materials with a fixed protocol


class LoopMode(enum.StrEnum):
    ROUND = "round"  # propose a batch, wait for every result, retrain, repeat (Attia et al.)
    ASYNC = "async"  # propose for a channel as soon as it frees up (pending points in BO)


class Direction(enum.StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Metric(enum.StrEnum):
    """What an objective or constraint measures; each is computed from stored cycles."""

    CYCLE_LIFE = "cycle_life"  # cycles to the end-of-life capacity (early-predicted)
    CAPACITY_RETENTION = "capacity_retention"  # Q_discharge(last) / Q_discharge(first), 0..1
    SPECIFIC_ENERGY = "specific_energy"  # discharge energy per cathode mass, Wh/kg
    DISCHARGE_CAPACITY = "discharge_capacity"  # Ah, first full cycle
    PEAK_TEMPERATURE = "peak_temperature"  # highest cell temperature over the test, °C
    CHARGE_TIME = "charge_time"  # time of the charge phase, minutes
    THERMAL_RISK = "thermal_risk"  # 0..1 score from the materials surrogate (O2 release)


class CellDefinition(StrictModel):
    """The cell every experiment of the campaign uses (datasheet values)."""

    kind: str = Field(
        min_length=1,
        description="Cell type known to the simulated lab and the lab, e.g. lfp_graphite_18650.",
    )
    chemistry: str = Field(default="", description="Free text, e.g. 'LFP/graphite'.")
    model: str = Field(default="", description="Manufacturer and part, e.g. A123 APR18650M1A.")
    nominal_capacity_Ah: float = Field(gt=0, le=1000)
    min_voltage_V: float = Field(ge=0, le=10, description="Lower end of the voltage window.")
    max_voltage_V: float = Field(gt=0, le=10, description="Upper end of the voltage window.")
    max_charge_rate_C: float = Field(gt=0, le=100)
    max_discharge_rate_C: float = Field(gt=0, le=100)
    max_temperature_C: float = Field(gt=-40, le=150, description="Highest allowed cell temperature")
    chamber_temperature_C: float = Field(default=25.0, ge=-40, le=100)

    @model_validator(mode="after")
    def _window_ordered(self) -> Self:
        if self.min_voltage_V >= self.max_voltage_V:
            raise SpecFieldError(
                "max_voltage_V",
                self.max_voltage_V,
                f"the voltage window must be ordered: above min_voltage_V ({self.min_voltage_V})",
            )
        if self.chamber_temperature_C >= self.max_temperature_C:
            raise SpecFieldError(
                "chamber_temperature_C",
                self.chamber_temperature_C,
                f"must be below max_temperature_C ({self.max_temperature_C})",
            )
        return self

    @property
    def max_charge_current_A(self) -> float:
        return self.max_charge_rate_C * self.nominal_capacity_Ah

    @property
    def max_discharge_current_A(self) -> float:
        return self.max_discharge_rate_C * self.nominal_capacity_Ah


def _check_url(url: str) -> str:
    if not _URL_RE.match(url):
        raise ValueError(f"unsupported instrument URL {url!r}; allowed: {_URL_HELP}")
    return url


InstrumentUrl = Annotated[str, AfterValidator(_check_url)]


class CyclerInstrument(StrictModel):
    """One multichannel cycler the campaign may use."""

    url: InstrumentUrl = Field(description="How to reach it: " + _URL_HELP)
    channels: int = Field(ge=1, le=4096, description="Channels this campaign may use.")
    identity: str | None = Field(
        default=None, description="Expected text in its *IDN? reply; a mismatch stops the run."
    )
    firmware: str | None = Field(
        default=None, description="Exact firmware version required; a mismatch stops the run."
    )

    @property
    def simulated(self) -> bool:
        return self.url.startswith("sim://")


class PotentiostatInstrument(StrictModel):
    """The potentiostat that measures EIS at checkpoints (MethodSCRIPT)."""

    url: InstrumentUrl = Field(description="How to reach it: " + _URL_HELP)
    identity: str | None = Field(default=None, description="Expected text in its identity reply.")
    firmware: str | None = Field(
        default=None, description="Exact firmware version required; a mismatch stops the run."
    )

    @property
    def simulated(self) -> bool:
        return self.url.startswith("sim://")


class Instruments(StrictModel):
    cyclers: list[CyclerInstrument] = Field(min_length=1)
    potentiostat: PotentiostatInstrument | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Bound on every read/write.")

    @model_validator(mode="after")
    def _unique_urls(self) -> Self:
        urls = [c.url for c in self.cyclers]
        duplicates = sorted({u for u in urls if urls.count(u) > 1})
        if duplicates:
            raise SpecFieldError(
                "cyclers", ", ".join(duplicates), "each cycler URL may appear only once"
            )
        return self

    @property
    def total_channels(self) -> int:
        return sum(c.channels for c in self.cyclers)


class LifetimeSettings(StrictModel):
    """How long cells run and when their life is predicted."""

    early_prediction_cycle: int | None = Field(
        default=100,
        ge=5,
        description="Predict life from the first N cycles and stop the cell there; "
        "omit to run every cell to end of life or max_cycles.",
    )
    run_to_end_of_life: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of cells (0..1) that keep cycling to end of life, to check predictions.",
    )
    end_of_life_capacity: float = Field(
        default=0.8, gt=0.0, lt=1.0, description="End of life: this fraction of nominal capacity."
    )
    max_cycles: int = Field(default=3000, ge=1, le=100_000, description="Hard cycle limit.")

    @model_validator(mode="after")
    def _prediction_before_limit(self) -> Self:
        cycle = self.early_prediction_cycle
        if cycle is not None and cycle >= self.max_cycles:
            raise SpecFieldError(
                "early_prediction_cycle", cycle, f"must be below max_cycles ({self.max_cycles})"
            )
        return self

    @property
    def stop_cycle(self) -> int:
        """Cycles run by a cell that is early-predicted (not run to end of life)."""
        return self.early_prediction_cycle or self.max_cycles


class EisCheckpoints(StrictModel):
    """Electrochemical impedance spectra taken every N cycles at a set SOC after an OCV rest."""

    every_cycles: int = Field(ge=1, le=100_000)
    at_start: bool = Field(default=True, description="Also measure before the first cycle.")
    start_frequency_Hz: float = Field(default=10_000.0, gt=0, le=1e6)
    end_frequency_Hz: float = Field(default=0.01, gt=0, le=1e6)
    points_per_decade: int = Field(default=10, ge=1, le=100)
    amplitude_V: float = Field(default=0.005, gt=0, le=0.05, description="rms, volts")
    soc: float = Field(default=0.5, ge=0.0, le=1.0, description="SOC (0..1) at which to measure.")
    soc_rate_C: float = Field(default=0.5, gt=0, le=5, description="Rate used to reach that SOC.")
    rest_s: float = Field(default=1800.0, ge=0, le=86_400, description="OCV rest before EIS.")

    @model_validator(mode="after")
    def _sweep_high_to_low(self) -> Self:
        if self.start_frequency_Hz <= self.end_frequency_Hz:
            raise SpecFieldError(
                "start_frequency_Hz",
                self.start_frequency_Hz,
                f"EIS sweeps from high to low frequency: must be above end_frequency_Hz "
                f"({self.end_frequency_Hz})",
            )
        return self


class ReferencePerformanceTest(StrictModel):
    """A slow full charge/discharge every N cycles to measure capacity on a fixed footing."""

    every_cycles: int = Field(ge=1, le=100_000)
    at_start: bool = Field(default=False, description="Also run one before the first cycle.")
    charge_rate_C: float = Field(default=0.5, gt=0, le=10)
    discharge_rate_C: float = Field(default=0.2, gt=0, le=10)
    cv_until_rate_C: float = Field(default=0.05, gt=0, le=1)
    rest_s: float = Field(default=600.0, ge=0, le=86_400)


class FixedCycle(StrictModel):
    """The fixed part of every cycle: finish the charge by CC-CV, rest, discharge, rest.

    In a protocol campaign the searched charge steps come first and this CC-CV only
    finishes the charge (Attia: 1C to 3.6 V); in a materials campaign it is the whole
    charge. ``cv_until_rate_C`` omitted means no constant-voltage hold.
    """

    charge_rate_C: float = Field(gt=0, le=100)
    upper_cutoff_V: float = Field(gt=0, le=10)
    cv_until_rate_C: float | None = Field(default=0.05, gt=0, le=10)
    rest_after_charge_s: float = Field(default=60.0, ge=0, le=86_400)
    discharge_rate_C: float = Field(gt=0, le=100)
    lower_cutoff_V: float = Field(ge=0, le=10)
    discharge_cv_until_rate_C: float | None = Field(default=None, gt=0, le=10)
    rest_after_discharge_s: float = Field(default=60.0, ge=0, le=86_400)
    record_interval_s: float = Field(default=10.0, gt=0, le=3600, description="Logging period.")

    @model_validator(mode="after")
    def _cutoffs_ordered(self) -> Self:
        if self.lower_cutoff_V >= self.upper_cutoff_V:
            raise SpecFieldError(
                "lower_cutoff_V",
                self.lower_cutoff_V,
                f"must be below upper_cutoff_V ({self.upper_cutoff_V})",
            )
        return self

    def check_against(self, cell: CellDefinition, where: str) -> None:
        """Raise SpecFieldError if a cut-off or rate leaves the cell's datasheet limits."""
        if not cell.min_voltage_V <= self.lower_cutoff_V:
            raise SpecFieldError(
                f"{where}.lower_cutoff_V",
                self.lower_cutoff_V,
                f"must not be below the cell's min_voltage_V ({cell.min_voltage_V} V)",
            )
        if not self.upper_cutoff_V <= cell.max_voltage_V:
            raise SpecFieldError(
                f"{where}.upper_cutoff_V",
                self.upper_cutoff_V,
                f"must not be above the cell's max_voltage_V ({cell.max_voltage_V} V)",
            )
        if self.charge_rate_C > cell.max_charge_rate_C:
            raise SpecFieldError(
                f"{where}.charge_rate_C",
                self.charge_rate_C,
                f"must not exceed the cell's max_charge_rate_C ({cell.max_charge_rate_C} C)",
            )
        if self.discharge_rate_C > cell.max_discharge_rate_C:
            raise SpecFieldError(
                f"{where}.discharge_rate_C",
                self.discharge_rate_C,
                f"must not exceed the cell's max_discharge_rate_C ({cell.max_discharge_rate_C} C)",
            )


class Objective(StrictModel):
    metric: Metric
    direction: Direction
    threshold: float | None = Field(
        default=None,
        description="Worst acceptable value; the reference point for multi-objective search.",
    )


class Constraint(StrictModel):
    """``metric`` must stay ≤ ``max`` and/or ≥ ``min``.

    With ``safe_mode`` on, the optimiser only proposes candidates whose probability of
    meeting the constraint is at least ``min_probability``, and a temperature limit is
    also a run-time stop limit for every cell. With it off, the constraint only weighs
    the acquisition (expected feasibility) and is never used to stop a cell.
    """

    metric: Metric
    max: float | None = None
    min: float | None = None
    safe_mode: bool = True
    min_probability: float = Field(default=0.9, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.max is None and self.min is None:
            raise SpecFieldError(
                "max", None, f"a constraint on {self.metric.value} needs max, min or both"
            )
        if self.max is not None and self.min is not None and self.min >= self.max:
            raise SpecFieldError("min", self.min, f"must be below max ({self.max})")
        return self


Name = Annotated[str, Field(pattern=CAMPAIGN_NAME_PATTERN)]


class CampaignBase(StrictModel):
    """Fields every campaign has; subclasses fix ``kind`` and add their search space."""

    name: Name = Field(description="Unique campaign name (letters, digits, _ . -).")
    description: str = ""
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    rounds: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=4096, description="Candidates proposed per round.")
    mode: LoopMode = LoopMode.ROUND
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; --db and $VOLTLOOP_DB take precedence."
    )
    lifetime: LifetimeSettings = Field(default_factory=LifetimeSettings)
    cell: CellDefinition
    instruments: Instruments
    eis: EisCheckpoints | None = None
    reference_test: ReferencePerformanceTest | None = None
    objectives: list[Objective] = Field(min_length=1, max_length=4)
    constraints: list[Constraint] = Field(default_factory=list, max_length=8)

    def check_metrics(self, allowed: frozenset[Metric], kind: str) -> None:
        """Every objective and constraint measures something a ``kind`` campaign records."""
        for label, items in (("objectives", self.objectives), ("constraints", self.constraints)):
            for i, item in enumerate(items):
                if item.metric not in allowed:
                    raise SpecFieldError(
                        f"{label}[{i}].metric",
                        item.metric.value,
                        f"not available in a {kind} campaign; use one of "
                        + ", ".join(sorted(m.value for m in allowed)),
                    )

    @model_validator(mode="after")
    def _common_rules(self) -> Self:
        channels = self.instruments.total_channels
        if self.batch_size > channels:
            raise SpecFieldError(
                "batch_size",
                self.batch_size,
                f"must not exceed the cycler channels available ({channels}); lower it or add "
                "channels under [[instruments.cyclers]]",
            )
        if self.eis is not None and self.instruments.potentiostat is None:
            raise SpecFieldError(
                "instruments.potentiostat",
                None,
                "EIS checkpoints need a potentiostat: add [instruments.potentiostat] or remove "
                "[eis]",
            )
        for label, checkpoint in (("eis", self.eis), ("reference_test", self.reference_test)):
            if checkpoint is not None and checkpoint.every_cycles > self.lifetime.max_cycles:
                raise SpecFieldError(
                    f"{label}.every_cycles",
                    checkpoint.every_cycles,
                    f"must not exceed lifetime.max_cycles ({self.lifetime.max_cycles})",
                )
        self._checkpoints_fit_the_cycle_counts()
        metrics = [o.metric for o in self.objectives]
        repeated = sorted({m.value for m in metrics if metrics.count(m) > 1})
        if repeated:
            raise SpecFieldError(
                "objectives", ", ".join(repeated), "each objective metric may appear only once"
            )
        clash = sorted({c.metric.value for c in self.constraints} & {m.value for m in metrics})
        if clash:
            raise SpecFieldError(
                "constraints", ", ".join(clash), "a metric cannot be both objective and constraint"
            )
        for i, constraint in enumerate(self.constraints):
            if (
                constraint.metric is Metric.PEAK_TEMPERATURE
                and constraint.max is not None
                and constraint.max > self.cell.max_temperature_C
            ):
                raise SpecFieldError(
                    f"constraints[{i}].max",
                    constraint.max,
                    f"must not exceed cell.max_temperature_C ({self.cell.max_temperature_C} °C)",
                )
        return self

    def _checkpoints_fit_the_cycle_counts(self) -> None:
        """Checkpoint intervals divide the cycle counts and nest in each other.

        A compiled protocol repeats blocks of aging cycles with loops, one loop jump per
        new cycle (docs/protocols/compilation.md); that needs every run length to be a
        whole number of blocks, and a longer interval to be a multiple of a shorter one.
        """
        present = [
            (label, c.every_cycles)
            for label, c in (("eis", self.eis), ("reference_test", self.reference_test))
            if c is not None
        ]
        stops = [("lifetime.max_cycles", self.lifetime.max_cycles)]
        if self.lifetime.early_prediction_cycle is not None:
            stops.insert(
                0, ("lifetime.early_prediction_cycle", self.lifetime.early_prediction_cycle)
            )
        for label, every in present:
            for stop_label, stop in stops:
                if stop % every:
                    raise SpecFieldError(
                        f"{label}.every_cycles",
                        every,
                        f"must divide {stop_label} ({stop}) so that runs end on a checkpoint; "
                        f"divisors near it: {', '.join(map(str, _divisors_near(stop, every)))}",
                    )
        if len(present) == 2:
            (_, a), (_, b) = present
            if max(a, b) % min(a, b):
                raise SpecFieldError(
                    "reference_test.every_cycles",
                    self.reference_test.every_cycles if self.reference_test else None,
                    f"must be a multiple or a divisor of eis.every_cycles ({a})",
                )

    @property
    def temperature_stop_limit_C(self) -> float:
        """The lowest cell-temperature limit that stops a running cell."""
        limits = [self.cell.max_temperature_C]
        limits += [
            c.max
            for c in self.constraints
            if c.metric is Metric.PEAK_TEMPERATURE and c.safe_mode and c.max is not None
        ]
        return min(limits)


def _divisors_near(n: int, target: int, count: int = 3) -> list[int]:
    """The ``count`` divisors of ``n`` closest to ``target`` (for error messages)."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return sorted(sorted(divisors, key=lambda d: abs(d - target))[:count])
