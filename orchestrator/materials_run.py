"""What every run of a materials campaign needs, dry or real: pool, proposer, test.

:class:`MaterialsRun` holds the parts that do not depend on who builds the cells:

- **Pool.** A campaign seen before reads its pool from the database (the
  ``materials_pool`` event, :func:`stored_pool`); a new one builds it from the spec
  (campaigns/materials_pool.py) and checks it before anything is stored: every
  structure readable, the pool not empty, at least one material left after the
  ``thermal_risk`` filter, and whatever a subclass adds (:meth:`MaterialsRun.check_material`:
  the dry run asks whether the simulated lab can build it).
- **Proposer.** :class:`~voltloop.orchestrator.materials_proposing.MaterialsProposer`
  over the stored pool, with the cells' cathode mass for ``specific_energy``.
- **Test.** ``drivers.protocols.compile_material_test`` (formation + fixed cycles),
  checked against the cell's limits and the cyclers' (:meth:`MaterialsRun.check_test`
  once before anything is written, then every compiled protocol before dispatch).
- **No early-life predictor**: objectives are measured at the test's last cycle
  (docs/decisions/0007).

The dry run adds the simulated cell format and the true value
(orchestrator/materials_dry_run.py); the real run (orchestrator/real_run.py) takes the
cathode mass from ``[cell] cathode_mass_g`` (:func:`require_cathode_mass`) and people
build the cells from the loading sheet, which names each cell's material
(:func:`sheet_materials`; docs/decisions/0083).

This module imports no torch: the loading desk reads sheet materials through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import EventLevel
from voltloop.db.ingest import record_event
from voltloop.db.models import Candidate, Event, Experiment, Material

POOL_EVENT = "materials_pool"
#: The spec field a real run needs for specific energy (named in errors).
CATHODE_MASS_FIELD = "cell.cathode_mass_g"


class CathodeMassError(ValueError):
    """A real materials run that needs the cells' cathode mass and has none."""

    exit_code = 2


@dataclass(frozen=True)
class PoolMember:
    """One material of a campaign's pool, as stored (``structure``: ``Structure.as_dict()``)."""

    material_id: int
    label: str
    formula: str
    structure: dict[str, Any]


# --- the pool in the database ------------------------------------------------------------


def register_pool(db: Engine, campaign_id: int, candidates: Sequence[Any]) -> list[PoolMember]:
    """Store ``candidates`` (``materials_pool.PoolCandidate``) as material rows and the
    campaign's pool event; idempotent (an existing pool event wins)."""
    existing = stored_pool(db, campaign_id)
    if existing is not None:
        return existing
    with write_session(db) as session:
        ids: list[int] = []
        for c in candidates:
            row = session.scalar(
                select(Material).where(Material.structure_hash == c.structure_hash)
            )
            if row is None:
                row = Material(
                    formula=c.formula,
                    structure=c.structure,
                    structure_hash=c.structure_hash,
                    source=c.source[:256],
                )
                session.add(row)
                session.flush()
            ids.append(row.id)
        labels = [c.label for c in candidates]
        record_event(
            session,
            EventLevel.INFO,
            POOL_EVENT,
            f"pool of {len(ids)} materials stored",
            campaign_id=campaign_id,
            payload={"material_ids": ids, "labels": labels},
        )
    return [
        PoolMember(i, c.label, c.formula, c.structure) for i, c in zip(ids, candidates, strict=True)
    ]


def _pool_event(session: Session, campaign_id: int) -> Event | None:
    return session.scalar(
        select(Event)
        .where(Event.campaign_id == campaign_id, Event.kind == POOL_EVENT)
        .order_by(Event.id)
        .limit(1)
    )


def stored_pool(db: Engine, campaign_id: int) -> list[PoolMember] | None:
    """The campaign's pool from the database, or None if it was never stored."""
    with read_session(db) as session:
        event = _pool_event(session, campaign_id)
        if event is None:
            return None
        ids, labels = event.payload["material_ids"], event.payload["labels"]
        rows = {m.id: m for m in session.scalars(select(Material).where(Material.id.in_(ids)))}
        return [
            PoolMember(i, label, rows[i].formula, dict(rows[i].structure))
            for i, label in zip(ids, labels, strict=True)
        ]


def campaign_pool(db: Engine, name: str) -> list[PoolMember] | None:
    """The stored pool of the campaign called ``name``, or None (unknown campaign or no
    pool stored yet)."""
    from voltloop.db.errors import UnknownCampaignError
    from voltloop.orchestrator.engine import find_campaign

    try:
        campaign_id, _ = find_campaign(db, name)
    except UnknownCampaignError:
        return None
    return stored_pool(db, campaign_id)


def campaign_pool_at(db_url: str, name: str) -> list[PoolMember] | None:
    """:func:`campaign_pool` read through a read-only connection, writing nothing: None
    when the database does not exist yet or has no voltloop schema."""
    from voltloop.db.errors import DatabaseNotInitialisedError
    from voltloop.db.migrate import open_database

    try:
        db = open_database(db_url, read_only=True)
    except DatabaseNotInitialisedError:
        return None
    try:
        return campaign_pool(db, name)
    finally:
        db.dispose()


@dataclass(frozen=True)
class SheetMaterial:
    """What a cell of a loading sheet is built from."""

    material_id: int
    label: str  # the pool's label, e.g. LiMn0.25Fe0.75PO4 (per formula unit)
    formula: str  # the material row's reduced formula, e.g. Li4MnFe3(PO4)4


def sheet_materials(
    session: Session, campaign_id: int, experiment_ids: Sequence[str]
) -> dict[str, SheetMaterial]:
    """The material of each experiment's candidate, by experiment id (experiments of
    candidates without a material — protocol campaigns — are left out). Labels come
    from the campaign's pool event; a material missing from it is labelled by formula."""
    if not experiment_ids:
        return {}
    rows = session.execute(
        select(Experiment.id, Material.id, Material.formula)
        .join(Candidate, Candidate.id == Experiment.candidate_id)
        .join(Material, Material.id == Candidate.material_id)
        .where(Experiment.id.in_(list(experiment_ids)))
    ).all()
    if not rows:
        return {}
    event = _pool_event(session, campaign_id)
    labels: dict[int, str] = {}
    if event is not None:
        labels = dict(zip(event.payload["material_ids"], event.payload["labels"], strict=True))
    return {
        experiment_id: SheetMaterial(material_id, labels.get(material_id, formula), formula)
        for experiment_id, material_id, formula in rows
    }


# --- the cathode mass ----------------------------------------------------------------------


def grams(mass_g: float) -> str:
    """A cathode mass for people: ``6.9 g``, ``20.2 mg``."""
    return f"{mass_g:.4g} g" if mass_g >= 1.0 else f"{mass_g * 1000:.4g} mg"


def require_cathode_mass(spec: MaterialsCampaign) -> float | None:
    """The cells' cathode mass (g) for a real run; CathodeMassError naming the field if
    an objective or constraint is ``specific_energy`` and the spec has none."""
    mass = spec.cell.cathode_mass_g
    if mass is None and spec.needs_cathode_mass:
        goals = [f"objectives[{i}]" for i, o in enumerate(spec.objectives)]
        goals += [f"constraints[{i}]" for i, c in enumerate(spec.constraints)]
        metrics = [o.metric.value for o in spec.objectives]
        metrics += [c.metric.value for c in spec.constraints]
        where = ", ".join(g for g, m in zip(goals, metrics, strict=True) if m == "specific_energy")
        raise CathodeMassError(
            f"campaign {spec.name!r}: {where} = specific_energy (Wh per kg of cathode) needs "
            f"the cathode mass of each cell; set {CATHODE_MASS_FIELD} (grams of cathode active "
            "material per cell) under [cell] in the campaign file (nothing was written)"
        )
    return mass


# --- the run's materials parts -------------------------------------------------------------


class MaterialsRun:
    """The engine's parts for a materials campaign that do not depend on the lab.

    ``cathode_mass_g`` (per cell; None: ``specific_energy`` cannot be measured) is
    handed to the proposer; ``settings`` (``SurrogateSettings``) size the GNN ensemble.
    Use: :meth:`prepare` (or :meth:`prepare_from_url`) before anything is stored, then
    :meth:`proposer` once the campaign row exists, then :meth:`compiler`.
    """

    predictor = None  # the objectives are measured at the fixed test cycle

    def __init__(
        self,
        spec: MaterialsCampaign,
        *,
        cathode_mass_g: float | None,
        settings: Any = None,
    ) -> None:
        self.spec = spec
        self.cathode_mass_g = cathode_mass_g
        self.settings = settings
        self.pool: list[Any] = []  # PoolCandidate before the pool is stored, then PoolMember
        self._proposer: Any = None

    # --- before anything is stored -------------------------------------------------------
    def check_material(self, candidate: Any) -> None:
        """Raise ``MaterialsPoolError`` if ``candidate`` cannot be tested (none here)."""

    def prepare(self, db: Engine) -> None:
        """The stored pool of a known campaign, else the spec's, checked (raises
        ``PoolError``/``MaterialsPoolError`` with exit code 2 before anything is stored)."""
        self.use_pool(campaign_pool(db, self.spec.name))

    def prepare_from_url(self, db_url: str) -> None:
        """:meth:`prepare` without writing to (or creating) the database at ``db_url``."""
        self.use_pool(campaign_pool_at(db_url, self.spec.name))

    def use_pool(self, stored: list[PoolMember] | None) -> None:
        from voltloop.campaigns.materials_pool import build_pool
        from voltloop.orchestrator.materials_proposing import MaterialsPoolError

        self.pool = stored if stored is not None else build_pool(self.spec)
        if not self.pool:
            raise MaterialsPoolError(f"campaign {self.spec.name!r}: the materials pool is empty")
        for candidate in self.pool:
            self.check_material(candidate)
        self._proposer_over([PoolMember(0, c.label, c.formula, c.structure) for c in self.pool])

    def check_test(self, limits: Any) -> None:
        """Compile the test once (the same for every material) and check it against the
        cell's and the instruments' limits: ``ProtocolLimitError`` (exit code 2) names
        the step and the limit."""
        from voltloop.drivers.protocols import compile_material_test

        label = self.pool[0].label if self.pool else "material"
        for cycles in sorted({self.spec.lifetime.stop_cycle, self.spec.lifetime.max_cycles}):
            compile_material_test(self.spec, label, cycles=cycles).ensure_dispatchable(limits)

    # --- once the campaign is stored -----------------------------------------------------
    def _proposer_over(self, members: Sequence[PoolMember], **options: Any) -> Any:
        from voltloop.orchestrator.materials_proposing import MaterialsProposer

        return MaterialsProposer(
            self.spec,
            members,
            cathode_mass_g=self.cathode_mass_g,
            settings=self.settings,
            **options,
        )

    def proposer(self, db: Engine, campaign_id: int) -> Any:
        """Store the pool (idempotent) and build the proposer over its rows."""
        if not isinstance(self.pool[0], PoolMember):
            self.pool = register_pool(db, campaign_id, self.pool)
        from voltloop.surrogates.registry import ModelRegistry, SqlModelStore

        self._proposer = self._proposer_over(
            self.pool,
            warm_up=True,
            registry=ModelRegistry(SqlModelStore(db)),
            campaign_id=campaign_id,
        )
        return self._proposer

    def member(self, material_id: int) -> PoolMember:
        """The stored pool member with ``material_id`` (after :meth:`proposer`)."""
        assert self._proposer is not None, "proposer() first"
        return self._proposer.pool[self._proposer.position[int(material_id)]]

    def compiler(self, limits: Any) -> Callable[[dict, bool], dict]:
        """Candidate parameters → the fixed test protocol JSON for its material, checked
        against the cell's and ``limits`` (raises ProtocolLimitError naming step and limit)."""
        from voltloop.drivers.protocols import compile_material_test

        spec = self.spec

        def compile_protocol(parameters: dict[str, float], run_on: bool) -> dict[str, Any]:
            assert self._proposer is not None, "proposer() first"
            cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
            label = self._proposer.label_of(parameters)
            compiled = compile_material_test(spec, label, cycles=cycles)
            compiled.ensure_dispatchable(limits)
            return compiled.model_dump(mode="json")

        return compile_protocol

    # --- after the run -------------------------------------------------------------------
    def cathode_mass_note(self) -> str:
        if self.cathode_mass_g is None:
            return "cathode mass: not given, so specific_energy is not measured"
        return f"cathode mass {grams(self.cathode_mass_g)} per cell ({CATHODE_MASS_FIELD})"

    def finish(self, summary: Any) -> None:
        """Notes on the summary: no predictor, where the cathode mass came from."""
        summary.kind = self.spec.kind.value
        summary.notes.append(
            "materials: no early-life predictor; objectives measured at test cycle "
            f"{self.spec.lifetime.stop_cycle - 1} (docs/decisions/0007)"
        )
        summary.notes.append(self.cathode_mass_note())


__all__ = [
    "CATHODE_MASS_FIELD",
    "POOL_EVENT",
    "CathodeMassError",
    "MaterialsRun",
    "PoolMember",
    "SheetMaterial",
    "campaign_pool",
    "campaign_pool_at",
    "grams",
    "register_pool",
    "require_cathode_mass",
    "sheet_materials",
    "stored_pool",
]
