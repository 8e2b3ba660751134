# ruff: noqa: N802 - unit-suffixed names (nominal_capacity_Ah)
"""The simulator's part of a materials dry run: simulated cells and the true value.

The pool, the proposer and the test protocol are shared with real runs
(orchestrator/materials_run.py, :class:`~voltloop.orchestrator.materials_run.MaterialsRun`);
:class:`MaterialsDryRun` adds:

- **Pool check.** Every material must be one the simulated lab can build.
- **Cells.** The simulated lab turns a structure into an 18650-format cell
  (drivers/sim/materials_mapping.py: 6.9 g of cathode). A campaign tests its own cell
  format (``[cell]``: e.g. a 3 mAh coin cell), so every material is built with the
  same cathode mass, scaled from the 18650 by ``scale`` = the campaign's nominal
  capacity / that of the LiFePO4 prototype's 18650 cell: capacities, currents, heat
  capacity and cooling ×scale, resistances ÷scale, ageing rate constants so that the
  relative fade per cycle is unchanged (docs/decisions/0007). A LiFePO4 cell then has
  the campaign's nominal capacity; a layered oxide more, a high-voltage olivine cut
  off early less — as in a lab that casts the same electrode loading for each. With
  ``[cell] cathode_mass_g`` the cells are built with that mass instead
  (``scale`` = mass / 6.9 g; docs/decisions/0083), and the summary says which.
- **True value.** The recommended material's objective averaged over fresh cells run
  through the test without the wire (no checkpoints, no noise from the host).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.orchestrator.materials_proposing import MaterialsPoolError, SurrogateSettings
from voltloop.orchestrator.materials_run import (
    CATHODE_MASS_FIELD,
    MaterialsRun,
    PoolMember,
    grams,
)

#: Fresh simulated cells averaged for the recommendation's true value.
TRUTH_CELLS = 4


def scaled_chemistry(chemistry: Any, scale: float) -> Any:
    """``chemistry`` with ``scale`` × the electrode capacities (same C-rate behaviour).

    Capacities, heat capacity and cooling scale by ``scale``, resistances by
    1/``scale``; the parabolic SEI constant by scale² and its offset by scale (SEI
    Ah/s ∝ k / Q), plating by scale, film resistance per Ah by 1/scale²; per-Ah LAM
    rates are already relative. Voltages, temperatures and fade per cycle stay the same.
    """
    d = chemistry.degradation
    degradation = dataclasses.replace(
        d,
        sei_k_Ah2_per_s=d.sei_k_Ah2_per_s * scale**2,
        sei_q0_Ah=d.sei_q0_Ah * scale,
        plating_k_A=d.plating_k_A * scale,
        film_ohm_per_Ah=d.film_ohm_per_Ah / scale**2,
        film_plating_ohm_per_Ah=d.film_plating_ohm_per_Ah / scale**2,
    )
    return chemistry.with_(
        name=f"{chemistry.name}:x{scale:.6g}",
        nominal_capacity_Ah=chemistry.nominal_capacity_Ah * scale,
        c_pos_Ah=chemistry.c_pos_Ah * scale,
        c_neg_Ah=chemistry.c_neg_Ah * scale,
        n_li_Ah=chemistry.n_li_Ah * scale,
        r0_ohm=chemistry.r0_ohm / scale,
        r1_ohm=chemistry.r1_ohm / scale,
        r2_ohm=chemistry.r2_ohm / scale,
        mass_kg=chemistry.mass_kg * scale,
        h_area_W_K=chemistry.h_area_W_K * scale,
        degradation=degradation,
    )


class SimulatedCellFormat:
    """The campaign's cell format in the simulated lab: a ``MaterialMapping`` plugin
    (``SimulatedLab(material_mapping=...)``) and the cathode mass of every cell.

    Every cell gets the same cathode mass: ``[cell] cathode_mass_g`` if the spec gives
    it, else the mass at which a LiFePO4 cell has the campaign's nominal capacity
    (``from_spec`` says which)."""

    def __init__(self, spec: MaterialsCampaign):
        from voltloop.campaigns.materials_campaign import Prototype
        from voltloop.campaigns.materials_pool import prototype_structure
        from voltloop.drivers.sim.materials_mapping import CATHODE_MASS_G, default_mapping

        reference = default_mapping(prototype_structure(Prototype.OLIVINE_LIFEPO4).as_dict())
        self.from_spec = spec.cell.cathode_mass_g is not None
        if spec.cell.cathode_mass_g is not None:
            self.scale = spec.cell.cathode_mass_g / CATHODE_MASS_G
        else:
            self.scale = spec.cell.nominal_capacity_Ah / reference.nominal_capacity_Ah
        self.cathode_mass_g = CATHODE_MASS_G * self.scale
        #: nominal capacity of this format's LiFePO4 cell, Ah
        self.lifepo4_capacity_Ah = reference.nominal_capacity_Ah * self.scale
        self._cache: dict[str, Any] = {}

    def __call__(self, structure: dict[str, Any]) -> Any:
        """The chemistry of a cell of this format made from ``structure`` (cached, so the
        same material is the same chemistry object)."""
        from voltloop.drivers.sim.materials_mapping import default_mapping

        key = json.dumps(structure, sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = scaled_chemistry(default_mapping(structure), self.scale)
        return self._cache[key]


class MaterialsDryRun(MaterialsRun):
    """What ``run_dry_run`` needs for a materials campaign: the shared parts
    (orchestrator/materials_run.py) plus the simulated cell format, the simulated lab
    and the recommendation's true value (see the module docstring)."""

    def __init__(self, spec: MaterialsCampaign, settings: SurrogateSettings | None = None):
        self.cell_format = SimulatedCellFormat(spec)
        super().__init__(spec, cathode_mass_g=self.cell_format.cathode_mass_g, settings=settings)

    def check_material(self, candidate: Any) -> None:
        """The simulated lab must be able to build a cell of ``candidate``."""
        from voltloop.drivers.sim.materials_mapping import MaterialError

        try:
            self.cell_format(candidate.structure)
        except MaterialError as exc:
            raise MaterialsPoolError(
                f"the simulated lab cannot build a cell of {candidate.label}: {exc}"
            ) from None

    def lab(self, channels: int, limits: Any) -> Any:
        from voltloop.drivers.sim.lab import SimulatedLab
        from voltloop.orchestrator.dry_run import EIS_WAIT_S

        return SimulatedLab(
            channel_count=channels,
            seed=self.spec.seed,
            limits=limits,
            eis_timeout_s=EIS_WAIT_S,
            material_mapping=self.cell_format,
        )

    def cathode_mass_note(self) -> str:
        mass = f"cathode mass {grams(self.cathode_mass_g)} per cell"
        if not self.cell_format.from_spec:
            return (
                f"{mass}: the simulated cell format's, at which a LiFePO4 cell has the nominal "
                f"capacity ({CATHODE_MASS_FIELD} not set)"
            )
        return (
            f"{mass} ({CATHODE_MASS_FIELD}); the simulated cells are built with it: a "
            f"LiFePO4 cell holds {self.cell_format.lifepo4_capacity_Ah * 1000:.4g} mAh "
            f"(nominal {self.spec.cell.nominal_capacity_Ah * 1000:.4g} mAh)"
        )

    def finish(self, summary: Any) -> None:
        super().finish(summary)
        rec = summary.recommendation
        if not rec or self._proposer is None:
            return
        summary.true_value_of_recommendation = true_material_value(
            self.spec, self.member(int(rec["material_id"])), self.cell_format, rec["metric"]
        )


def true_material_value(
    spec: MaterialsCampaign,
    member: PoolMember,
    cell_format: SimulatedCellFormat,
    metric: str,
    cells: int = TRUTH_CELLS,
) -> float | None:
    """Mean ``metric`` of ``member`` over ``cells`` fresh simulated cells run through the
    test protocol in the lab directly (no wire, no checkpoints), as fast as possible."""
    import numpy as np

    from voltloop.drivers.cycle_summary import CycleAssembler, step_kinds
    from voltloop.drivers.protocols import compile_material_test
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState
    from voltloop.orchestrator.dry_run import simulated_cycler_limits
    from voltloop.orchestrator.observations import materials_metrics
    from voltloop.orchestrator.simulated_operator import cell_seed

    bare = spec.model_copy(update={"eis": None, "reference_test": None})
    compiled = compile_material_test(bare, member.label, cycles=spec.lifetime.stop_cycle)
    protocol = compiled.protocol.model_dump(mode="json")
    lab = SimulatedLab(
        cells, seed=spec.seed, limits=simulated_cycler_limits(), material_mapping=cell_format
    )
    for i in range(cells):
        cell_id = f"truth-{member.label}-{i}"
        lab.load_cell(
            i,
            CellSpec(
                cell_id=cell_id,
                kind=spec.cell.kind,
                seed=cell_seed(spec.seed, cell_id),
                material=member.structure,
                chamber_temperature_C=spec.cell.chamber_temperature_C,
            ),
        )
        lab.start(i, compiled.protocol.model_dump_json(), f"truth-{i}")
    live = (ChannelState.RUNNING, ChannelState.WAITING_EIS)
    while any(lab.status(i).state in live for i in range(cells)):
        lab.advance(6 * 3600.0)
    values = []
    for i in range(cells):
        assembler = CycleAssembler(kinds=step_kinds(protocol))
        cycles = [c.summary for c in assembler.feed(lab.records(i, 0, limit=10**9))]
        cycles += [c.summary for c in assembler.finish()]
        metrics = materials_metrics(
            [c.discharge_Ah for c in cycles],
            [c.discharge_energy_Wh for c in cycles],
            [c.temperature_max_C for c in cycles],
            test_cycle=spec.lifetime.stop_cycle - 1,
            nominal_ah=spec.cell.nominal_capacity_Ah,
            cathode_mass_g=cell_format.cathode_mass_g,
            eol_threshold_ah=spec.lifetime.end_of_life_capacity * spec.cell.nominal_capacity_Ah,
        )
        if metric in metrics:
            values.append(metrics[metric])
    return float(np.mean(values)) if values else None


__all__ = [
    "MaterialsDryRun",
    "SimulatedCellFormat",
    "scaled_chemistry",
    "true_material_value",
]
