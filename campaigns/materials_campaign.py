# ruff: noqa: N802, N815  (unit suffixes: rate_C)
"""Materials campaigns: which cathode from a candidate pool performs best?

The pool comes from structure files (CIF or pymatgen JSON, paths relative to the
campaign TOML file, glob patterns allowed) and/or substitution rules applied to a
prototype structure (e.g. olivine LiFePO4 with Fe replaced by Mn, Co or Ni at
given fractions). Every candidate is tested with the same fixed protocol
(``[test_protocol]``): formation cycles, then CC-CV charge, rest, discharge, rest.

This module only describes the pool; campaigns/materials_pool.py builds the
structures (it imports pymatgen, which this module does not).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from voltloop.campaigns.base import (
    CampaignBase,
    CampaignKind,
    CellDefinition,
    FixedCycle,
    Metric,
    SpecFieldError,
    StrictModel,
)

_ELEMENT_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm "
    "Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U "
    "Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
)
ELEMENTS = frozenset(_ELEMENT_SYMBOLS.split(" "))


def _check_element(symbol: str) -> str:
    if symbol not in ELEMENTS:
        raise ValueError(f"{symbol!r} is not a chemical element symbol (e.g. Fe, Mn, Co, Ni)")
    return symbol


Element = Annotated[str, AfterValidator(_check_element)]

#: File suffixes a structure file may have.
STRUCTURE_SUFFIXES = (".cif", ".json")


class Prototype(enum.StrEnum):
    """Built-in prototype structures for substitution rules."""

    OLIVINE_LIFEPO4 = "olivine-LiFePO4"  # Pnma, 4 f.u. per cell (pymatgen's example)
    LAYERED_LICOO2 = "layered-LiCoO2"  # R-3m alpha-NaFeO2 type, 3 f.u. per hexagonal cell


class SubstitutionRule(StrictModel):
    """Replace a fraction of the ``site`` element in ``prototype`` by each substituent.

    Substitution is ordered: with n sites of ``site`` in the cell, a fraction f
    replaces round(f·n) of them, so f must be a multiple of 1/n (checked when the pool
    is built). ``prototype`` is a built-in name or a structure file path.
    """

    prototype: str = Field(description="olivine-LiFePO4, layered-LiCoO2, or a .cif/.json path")
    site: Element
    substituents: list[Element] = Field(min_length=1, max_length=20)
    fractions: list[float] = Field(min_length=1, max_length=20)
    include_prototype: bool = Field(default=True, description="Add the unsubstituted prototype.")

    @model_validator(mode="after")
    def _sane(self) -> Self:
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise SpecFieldError("fractions", self.fractions, "each must lie in (0, 1]")
        if len(set(self.fractions)) != len(self.fractions):
            raise SpecFieldError("fractions", self.fractions, "must be distinct")
        if self.site in self.substituents:
            raise SpecFieldError(
                "substituents", self.substituents, f"must differ from the site element {self.site}"
            )
        if self.builtin_prototype is None and not self.prototype.lower().endswith(
            STRUCTURE_SUFFIXES
        ):
            raise SpecFieldError(
                "prototype",
                self.prototype,
                f"must be a built-in prototype ({', '.join(p.value for p in Prototype)}) "
                "or a .cif/.json file",
            )
        return self

    @property
    def builtin_prototype(self) -> Prototype | None:
        """The built-in prototype named, or None when ``prototype`` is a file path."""
        try:
            return Prototype(self.prototype)
        except ValueError:
            return None


class MaterialsPool(StrictModel):
    """Where candidates come from; at least one source is required."""

    structures: list[str] = Field(
        default_factory=list,
        description="CIF / pymatgen JSON files or glob patterns, relative to the TOML file.",
    )
    substitutions: list[SubstitutionRule] = Field(default_factory=list)
    max_size: int = Field(default=5000, ge=1, le=1_000_000, description="Refuse bigger pools.")

    @model_validator(mode="after")
    def _some_source(self) -> Self:
        if not self.structures and not self.substitutions:
            raise SpecFieldError(
                "structures", [], "the pool needs structures = [...] or [[pool.substitutions]]"
            )
        for i, path in enumerate(self.structures):
            if not path.lower().endswith(STRUCTURE_SUFFIXES):
                raise SpecFieldError(f"structures[{i}]", path, "must end in .cif or .json")
        return self


class MaterialsTestProtocol(FixedCycle):
    """The fixed test every candidate gets: formation, then ``lifetime.max_cycles`` cycles."""

    formation_cycles: int = Field(default=2, ge=0, le=20)
    formation_rate_C: float = Field(default=0.1, gt=0, le=5)


#: Metrics a materials campaign can optimise or constrain.
MATERIALS_METRICS = frozenset(
    {
        Metric.SPECIFIC_ENERGY,
        Metric.CAPACITY_RETENTION,
        Metric.DISCHARGE_CAPACITY,
        Metric.PEAK_TEMPERATURE,
        Metric.THERMAL_RISK,
        Metric.CYCLE_LIFE,
    }
)


class MaterialsCell(CellDefinition):
    """The test cell of a materials campaign: the common cell keys, plus the mass of
    cathode active material in each cell (every material is cast at the same loading).

    ``cathode_mass_g`` turns a cell's discharge energy into ``specific_energy`` (Wh per
    kg of cathode). A real run (``voltloop run``) whose objectives or constraints use
    specific energy needs it; a dry run without it uses the simulated cell's own mass,
    and with it builds its simulated cells at that mass (docs/decisions/0083).
    """

    cathode_mass_g: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Cathode active-material mass per cell, g (specific energy = Wh / this).",
    )


class MaterialsCampaign(CampaignBase):
    """Which material from ``pool`` gives the best objectives under ``test_protocol``?"""

    kind: Literal[CampaignKind.MATERIALS] = CampaignKind.MATERIALS
    cell: MaterialsCell
    pool: MaterialsPool
    test_protocol: MaterialsTestProtocol
    _source_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _materials_rules(self) -> Self:
        self.check_metrics(MATERIALS_METRICS, "materials")
        self.test_protocol.check_against(self.cell, "test_protocol")
        if self.test_protocol.formation_rate_C > self.cell.max_charge_rate_C:
            raise SpecFieldError(
                "test_protocol.formation_rate_C",
                self.test_protocol.formation_rate_C,
                f"must not exceed the cell's max_charge_rate_C ({self.cell.max_charge_rate_C} C)",
            )
        return self

    @property
    def needs_cathode_mass(self) -> bool:
        """True if an objective or constraint is ``specific_energy`` (Wh/kg of cathode)."""
        metrics = [o.metric for o in self.objectives] + [c.metric for c in self.constraints]
        return Metric.SPECIFIC_ENERGY in metrics

    @property
    def source_dir(self) -> Path:
        """Directory relative paths are resolved against (the TOML file's; else cwd)."""
        return self._source_dir or Path.cwd()

    def with_source_dir(self, directory: Path) -> Self:
        """Remember where the spec came from (set by the loader)."""
        self._source_dir = Path(directory).resolve()
        return self

    def structure_paths(self) -> list[Path]:
        """The structure files the pool names, globs expanded, in a stable order."""
        paths: list[Path] = []
        for pattern in self.pool.structures:
            candidate = Path(pattern)
            base = candidate if candidate.is_absolute() else self.source_dir / candidate
            if any(ch in pattern for ch in "*?["):
                paths += sorted(base.parent.glob(base.name))
            else:
                paths.append(base)
        return paths
