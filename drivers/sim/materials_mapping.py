# ruff: noqa: N815 - unit-suffixed physics names (capacity_mAh_g, average_voltage_V)
"""From a cathode crystal structure to the parameters of a virtual 18650 cell.

A documented, physically motivated mapping for materials campaigns (docs/simulator.md,
"Materials"). Every step is a stated rule of thumb from the battery-materials
literature, not a fit:

1. **Mobile ion and redox.** The mobile ion is Li (else Na, K). Anions and
   spectator cations take fixed oxidation states (O −2, F −1, P +5, Si +4, S +6 in
   oxo-anions, ...); charge balance gives the mean transition-metal (TM) oxidation
   state. Extractable electrons per formula unit: n = min(mobile ions, Σ over TMs of
   (highest practical oxidation state − present state)).
2. **Theoretical capacity** ``Q = n F / (3.6 M)`` mAh/g (M = formula mass, g/mol).
3. **Average voltage** from the redox couple and the structure family (vs Li/Li+):
   olivine/phosphate Fe²⁺/³⁺ 3.45 V, Mn 4.1, Co 4.8, Ni 5.1, V 3.8; oxides (layered or
   spinel) Co 3.9, Ni 3.8, Mn 4.0 (spinel 4.1), Fe 2.7; silicates and borates −0.6 V,
   sulfates +0.15 V, fluorine-containing polyanions +0.3 V (inductive effect,
   Padhi/Goodenough); sulfides ~2.0 V; sodium hosts −0.3 V (Na⁺/Na vs Li⁺/Li).
4. **Rate capability / resistance.** Resistance multiplier (vs carbon-coated LFP)
   = family factor (olivine 1.0 — 1D channels, other polyanions 1.2, layered 0.7,
   spinel 0.6 — 3D, sulfides 0.8) × (74.9 Å³ / free volume per mobile ion)^½ ×
   1.3 for Na.
5. **Fade rate.** Lattice strain proxy = mean relative change of the TM's Shannon
   ionic radius over one oxidation step (Fe²⁺→Fe³⁺ 17 %); cracking and LAM rates
   scale with strain / strain(LFP), ×1.5 for Jahn–Teller Mn³⁺ in oxides, ÷(1 + 0.25
   (n_TM − 1)) for mixed-TM stabilisation; electrolyte oxidation (SEI/CEI rate)
   grows as exp((V − 3.45 V)/0.6 V).
6. **Thermal risk** (0..1): oxygen-release tendency of the charged cathode —
   oxides Ni 0.9, Co 0.8, Mn 0.5, Fe 0.3; phosphates 0.1, other polyanions 0.15,
   sulfides 0.3 (TM-weighted). It adds parasitic heat 0.05 V × risk per ampere, so
   risky materials run measurably hotter on the cycler.

Cells: 6.9 g of cathode (an 18650 like the A123 APR18650M1A) at 95 % of theoretical
capacity, graphite anode at N/P 1.08, 97.5 % of the cathode's lithium cyclable.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from voltloop.drivers.sim.chemistry import (
    DEFAULT_VARIATION,
    FARADAY,
    LFP_GRAPHITE_18650,
    Chemistry,
    DegradationParams,
    graphite_ocp_chen2020,
    sloped_cathode_ocp,
)

MOBILE_IONS = ("Li", "Na", "K")
#: Fixed oxidation states of non-redox elements (S is +6 only inside oxo-anions).
FIXED_OXIDATION = {
    "Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Al": 3, "B": 3, "Si": 4, "Ge": 4,
    "P": 5, "As": 5, "O": -2, "F": -1, "Cl": -1, "N": -3, "Zr": 4, "La": 3, "Y": 3,
}  # fmt: skip
#: Highest practical oxidation state of each redox-active transition metal.
MAX_OXIDATION = {
    "Ti": 4, "V": 5, "Cr": 4, "Mn": 4, "Fe": 3, "Co": 4, "Ni": 4, "Cu": 3,
    "Nb": 5, "Mo": 6, "W": 6,
}  # fmt: skip
#: Couple voltage (V vs Li/Li+) per TM in phosphate (olivine-like) and oxide hosts.
PHOSPHATE_V = {"Fe": 3.45, "Mn": 4.1, "Co": 4.8, "Ni": 5.1, "V": 3.8, "Ti": 2.6, "Cr": 4.2,
               "Cu": 4.0, "Nb": 2.0, "Mo": 2.6, "W": 2.0}  # fmt: skip
OXIDE_V = {"Fe": 2.7, "Mn": 4.0, "Co": 3.9, "Ni": 3.8, "V": 2.8, "Ti": 1.6, "Cr": 3.5,
           "Cu": 3.3, "Nb": 1.6, "Mo": 2.5, "W": 2.0}  # fmt: skip
#: Shannon radii (Å, 6-coordinate, high spin) by oxidation state.
SHANNON_RADII = {
    "Fe": {2: 0.78, 3: 0.645}, "Mn": {2: 0.83, 3: 0.645, 4: 0.53},
    "Co": {2: 0.745, 3: 0.61, 4: 0.53}, "Ni": {2: 0.69, 3: 0.56, 4: 0.48},
    "V": {3: 0.64, 4: 0.58, 5: 0.54}, "Ti": {3: 0.67, 4: 0.605}, "Cr": {3: 0.615, 4: 0.55},
    "Cu": {2: 0.73, 3: 0.54}, "Nb": {4: 0.68, 5: 0.64}, "Mo": {4: 0.65, 5: 0.61, 6: 0.59},
    "W": {4: 0.66, 5: 0.62, 6: 0.60},
}  # fmt: skip
OXIDE_THERMAL_RISK = {"Ni": 0.9, "Co": 0.8, "Mn": 0.5, "Fe": 0.3}
LFP_FREE_VOLUME_A3 = 74.9  # Å³ per Li in LiFePO4 (299.6 Å³ cell / 4 Li)
LFP_STRAIN = (0.78 - 0.645) / 0.78
CATHODE_MASS_G = 6.9
UTILISATION = 0.95


class MaterialError(ValueError):
    """A structure the mapping cannot turn into a cell (message says why)."""

    exit_code = 2


@dataclass(frozen=True)
class MaterialProperties:
    """What the mapping derives from a structure (all figures documented above)."""

    formula: str
    mobile_ion: str
    family: str  # olivine, polyanion, layered, spinel, oxide, sulfide
    electrons_per_formula: float
    formula_mass_g_mol: float
    capacity_mAh_g: float
    average_voltage_V: float
    redox_metals: dict[str, float]  # TM -> mean oxidation state
    resistance_factor: float
    fade_factor: float
    sei_factor: float
    thermal_risk: float
    flat_plateau: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def material_properties(structure: dict[str, Any]) -> MaterialProperties:
    """Derive the material properties of a pymatgen ``Structure.as_dict()``."""
    from pymatgen.core import Structure

    try:
        struct = Structure.from_dict(structure)
    except Exception as exc:  # pymatgen raises many kinds for malformed dicts
        raise MaterialError(f"not a pymatgen Structure dict: {exc}") from None
    comp = struct.composition.reduced_composition
    amounts = {el.symbol: float(n) for el, n in comp.items()}
    ion = next((i for i in MOBILE_IONS if i in amounts), None)
    if ion is None:
        raise MaterialError(f"{comp.reduced_formula}: no mobile ion (Li, Na or K)")
    metals = {el: n for el, n in amounts.items() if el in MAX_OXIDATION}
    if not metals:
        raise MaterialError(f"{comp.reduced_formula}: no redox-active transition metal")
    has_o = "O" in amounts
    oxo = has_o and any(e in amounts for e in ("P", "Si", "B", "S", "As", "Ge"))
    charge = 0.0
    for el, n in amounts.items():
        if el in metals:
            continue
        if el == "S":
            charge += n * (6 if oxo else -2)
        elif el in FIXED_OXIDATION:
            charge += n * FIXED_OXIDATION[el]
        else:
            raise MaterialError(f"{comp.reduced_formula}: no oxidation-state rule for {el}")
    mean_ox = -charge / sum(metals.values())
    ox = {el: mean_ox for el in metals}
    electrons = sum(n * max(0.0, MAX_OXIDATION[el] - mean_ox) for el, n in metals.items())
    n = min(amounts[ion], electrons)
    if n <= 0:
        raise MaterialError(f"{comp.reduced_formula}: transition metals already fully oxidised")
    mass = float(comp.weight)
    capacity = n * FARADAY / (3.6 * mass)
    family = _family(amounts, ion, metals, oxo, has_o)
    weights = {el: amount * max(0.0, MAX_OXIDATION[el] - mean_ox) for el, amount in metals.items()}
    total_w = sum(weights.values()) or 1.0
    table = PHOSPHATE_V if family in ("olivine", "polyanion") else OXIDE_V
    voltage = sum(w * table[el] for el, w in weights.items()) / total_w
    if family == "spinel" and "Mn" in metals:
        voltage += 0.1 * weights["Mn"] / total_w
    if oxo and ("Si" in amounts or "B" in amounts):
        voltage -= 0.6
    if oxo and "S" in amounts:
        voltage += 0.15
    if oxo and "F" in amounts:
        voltage += 0.3
    if family == "sulfide":
        voltage = 2.0
    if ion == "Na":
        voltage -= 0.3
    elif ion == "K":
        voltage -= 0.1
    free_volume = struct.volume / max(struct.composition[ion], 1e-9)
    base = {"olivine": 1.0, "polyanion": 1.2, "layered": 0.7, "spinel": 0.6}.get(family, 0.8)
    resistance = base * (LFP_FREE_VOLUME_A3 / free_volume) ** 0.5 * (1.3 if ion == "Na" else 1.0)
    strain = np.mean([_strain(el, ox[el]) for el in metals])
    fade = strain / LFP_STRAIN
    if has_o and not oxo and "Mn" in metals and ox["Mn"] < 3.999:
        fade *= 1.5  # Jahn-Teller Mn3+
    fade /= 1.0 + 0.25 * (len(metals) - 1)
    sei = float(np.clip(np.exp((voltage - 3.45) / 0.6), 0.5, 5.0))
    if family == "sulfide":
        risk = 0.3
    elif oxo:
        risk = 0.1 if "P" in amounts else 0.15
    else:
        risk = sum(w * OXIDE_THERMAL_RISK.get(el, 0.4) for el, w in weights.items()) / total_w
    return MaterialProperties(
        formula=comp.reduced_formula,
        mobile_ion=ion,
        family=family,
        electrons_per_formula=float(n),
        formula_mass_g_mol=mass,
        capacity_mAh_g=float(capacity),
        average_voltage_V=float(voltage),
        redox_metals={el: float(v) for el, v in ox.items()},
        resistance_factor=float(resistance),
        fade_factor=float(max(fade, 0.2)),
        sei_factor=sei,
        thermal_risk=float(risk),
        flat_plateau=family == "olivine",
    )


def _family(
    amounts: dict[str, float], ion: str, metals: dict[str, float], oxo: bool, has_o: bool
) -> str:
    if oxo:
        olivine = "P" in amounts and abs(amounts.get("O", 0) / amounts["P"] - 4) < 1e-6
        return (
            "olivine"
            if olivine and abs(amounts[ion] - sum(metals.values())) < 1e-6
            else "polyanion"
        )
    if not has_o:
        return "sulfide" if "S" in amounts else "other"
    ratio = amounts[ion] / sum(metals.values())
    return "spinel" if ratio < 0.75 else "layered"


def _strain(el: str, mean_ox: float) -> float:
    radii = SHANNON_RADII.get(el)
    if not radii:
        return LFP_STRAIN
    lo = int(np.floor(mean_ox + 1e-9))
    lo = min(max(lo, min(radii)), max(radii) - 1) if len(radii) > 1 else lo
    if lo not in radii or lo + 1 not in radii:
        return LFP_STRAIN
    return (radii[lo] - radii[lo + 1]) / radii[lo]


def chemistry_from_properties(props: MaterialProperties) -> Chemistry:
    """A 18650-format cell with a graphite anode around the given cathode."""
    ref = LFP_GRAPHITE_18650
    c_pos = CATHODE_MASS_G * props.capacity_mAh_g * UTILISATION / 1000.0
    v = props.average_voltage_V
    span = 0.05 if props.flat_plateau else 0.6
    d = ref.degradation
    fade = props.fade_factor
    degradation = DegradationParams(
        sei_k_Ah2_per_s=d.sei_k_Ah2_per_s * props.sei_factor * (c_pos / ref.c_pos_Ah) ** 2,
        crack_sei_per_Ah=d.crack_sei_per_Ah * fade,
        lam_k_per_Ah=d.lam_k_per_Ah * fade,
        plating_k_A=d.plating_k_A * c_pos / ref.c_pos_Ah,
    )
    r = props.resistance_factor
    nominal = round(0.92 * c_pos, 3)
    return Chemistry(
        name=f"material:{props.formula}:{props.family}",
        description=f"{props.formula} ({props.family}, {props.mobile_ion}) / graphite 18650",
        u_pos=sloped_cathode_ocp(v, span, props.flat_plateau),
        u_neg=graphite_ocp_chen2020,
        nominal_capacity_Ah=nominal,
        min_voltage_V=round(max(1.5, v - (1.35 if props.flat_plateau else span / 2 + 0.8)), 2),
        max_voltage_V=round(v - 0.08 + (0.25 if props.flat_plateau else span / 2), 2),
        c_pos_Ah=c_pos,
        c_neg_Ah=1.08 * c_pos,
        n_li_Ah=0.975 * c_pos,
        r0_ohm=ref.r0_ohm * r * ref.nominal_capacity_Ah / nominal,
        r1_ohm=ref.r1_ohm * r * ref.nominal_capacity_Ah / nominal,
        tau1_s=ref.tau1_s,
        r2_ohm=ref.r2_ohm * r * ref.nominal_capacity_Ah / nominal,
        tau2_s=ref.tau2_s,
        hysteresis_V=0.010 if props.flat_plateau else 0.003,
        side_heat_V=0.05 * props.thermal_risk,
        degradation=degradation,
        variation=DEFAULT_VARIATION,
    )


@functools.lru_cache(maxsize=512)
def _mapping_cached(key: str) -> Chemistry:
    return chemistry_from_properties(material_properties(json.loads(key)))


def default_mapping(structure: dict[str, Any]) -> Chemistry:
    """The built-in :class:`~voltloop.drivers.sim.plugins.MaterialMapping`.

    Cached per structure, so the same material is the same chemistry object.
    """
    return _mapping_cached(json.dumps(structure, sort_keys=True, default=str))
