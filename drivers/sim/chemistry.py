# ruff: noqa: N802, N815 - unit-suffixed physics names (capacity_Ah, temperature_K, passed_Ah)
"""Cell chemistries: half-cell open-circuit potentials and per-chemistry parameters.

A full-cell open-circuit voltage is built from two half-cell potentials and an
electrode *alignment* (docs/simulator.md, "Electrode alignment"):

    x = q / C_n                      graphite lithiation (0..1)
    y = (n_Li - q) / C_p             cathode lithiation (0..1, 1 = discharged)
    OCV(q) = U_p(y) - U_n(x)

with ``q`` the charge stored in the negative electrode (Ah), ``C_n``/``C_p`` the
electrode capacities (Ah) and ``n_Li`` the cyclable lithium inventory (Ah). Loss of
lithium inventory (LLI) lowers ``n_Li``; loss of active material (LAM) lowers
``C_n`` or ``C_p``. They shift and stretch the discharge curve V(Q) differently,
which is what the Severson ΔQ(V) feature sees.

Half-cell curves are tabulated once on a fine uniform grid and read by direct
indexing for all cells at once. Several chemistries share one concatenated table
(``OcpTable``), so one lookup serves a bank of mixed cells and both electrodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

#: Faraday constant, C/mol; gas constant, J/(mol K).
FARADAY = 96485.33212
GAS_CONSTANT = 8.314462618
KELVIN = 273.15

OcpFunction = Callable[[np.ndarray], np.ndarray]


def graphite_ocp_chen2020(x: np.ndarray) -> np.ndarray:
    """Graphite potential vs Li/Li+ (V) at lithiation ``x`` (shape any).

    Chen et al., J. Electrochem. Soc. 167 (2020) 080534 (LG M50 graphite), plus a
    saturation term ``-0.09 exp(-(1-x)/0.015)`` so the potential falls towards 0 V as
    the graphite fills (the lithium-plating condition needs that edge).
    """
    x = np.asarray(x, dtype=float)
    u = (
        1.9793 * np.exp(-39.3631 * x)
        + 0.2482
        - 0.0909 * np.tanh(29.8538 * (x - 0.1234))
        - 0.04478 * np.tanh(14.9159 * (x - 0.2769))
        - 0.0205 * np.tanh(30.4444 * (x - 0.6103))
    )
    return u - 0.09 * np.exp(-(1.0 - x) / 0.015)


def lfp_ocp_prada2013(y: np.ndarray) -> np.ndarray:
    """LiFePO4 potential vs Li/Li+ (V) at lithiation ``y`` (1 = fully lithiated).

    Prada et al., J. Electrochem. Soc. 160 (2013) A616 (the form used by
    Safari & Delacourt 2011 and PyBaMM), with a 15 mV/unit plateau slope added so
    the plateau is not perfectly flat (measured A123 cells show a few mV of slope).
    """
    s = 1.0 - np.asarray(y, dtype=float)
    return (
        3.4323
        - 0.015 * (0.5 - s)
        - 0.8428 * np.exp(-80.2493 * s**1.3198)
        - 3.2474e-6 * np.exp(20.2645 * s**3.8003)
        + 3.2482e-6 * np.exp(20.2646 * s**3.7995)
    )


def nmc811_ocp_chen2020(y: np.ndarray) -> np.ndarray:
    """NMC811 potential vs Li/Li+ (V) at lithiation ``y`` (Chen et al. 2020, LG M50)."""
    y = np.asarray(y, dtype=float)
    return (
        -0.8090 * y
        + 4.4875
        - 0.0428 * np.tanh(18.5138 * (y - 0.5542))
        - 17.7326 * np.tanh(15.7890 * (y - 0.3117))
        + 17.5842 * np.tanh(15.9308 * (y - 0.3120))
    )


def sloped_cathode_ocp(average_V: float, span_V: float, flat: bool) -> OcpFunction:
    """A generic cathode curve around ``average_V`` for material-derived cells.

    ``flat`` gives a two-phase plateau (olivines, like LFP: 30 mV of slope);
    otherwise a solid-solution slope of ``span_V`` across the lithiation range
    (layered/spinel oxides). Both end in steep walls: +0.5 exp(-y/0.02) when fully
    delithiated and -0.6 exp(-(1-y)/0.03) when fully lithiated.
    """

    def ocp(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        slope = (0.03 if flat else span_V) * (0.5 - y)
        walls = 0.5 * np.exp(-y / 0.02) - 0.6 * np.exp(-(1.0 - y) / 0.03)
        return average_V + slope + walls

    return ocp


@dataclass(frozen=True)
class DegradationParams:
    """Rate constants of the ageing mechanisms (degradation.py, docs/simulator.md)."""

    sei_k_Ah2_per_s: float = 0.3e-10  # parabolic SEI constant: dQ/dt = k / (Q_sei + Q0)
    sei_q0_Ah: float = 0.002  # initial SEI equivalent (sets the early rate)
    sei_ea_J_mol: float = 50_000.0  # Arrhenius activation energy of SEI growth
    sei_soc_gain: float = 1.0  # rate multiplier per unit graphite lithiation
    crack_sei_per_Ah: float = 0.66e-6  # SEI on cracked surface: Ah per Ah of C_n per hour at 1C
    plating_k_A: float = 1.5e-3  # plating current scale (A)
    plating_phi0_V: float = 0.006  # softness of the plating onset (V)
    plating_threshold_V: float = 0.030  # mean graphite potential where plating sets in
    plating_dead_fraction: float = 1.0  # plated lithium lost irreversibly
    lam_k_per_Ah: float = 1.08e-6  # graphite LAM per hour at 1C, fraction of C_n
    lam_rate_exponent: float = 3.5  # cracking stress grows as |C-rate|^p
    lam_ea_J_mol: float = -10_000.0  # cracking worsens when cold (negative = faster cold)
    lam_plating_per_Ah: float = 1.0  # LAM_NE (Ah) per Ah of plated lithium (pore clogging)
    film_ohm_per_Ah: float = 0.05  # film resistance per Ah of SEI
    film_plating_ohm_per_Ah: float = 0.04  # film resistance per Ah of plated lithium
    lam_p_per_Ah: float = 4.0e-7  # cathode LAM per Ah throughput


@dataclass(frozen=True)
class Chemistry:
    """Everything a cell type needs: electrodes, circuit, thermal and ageing parameters.

    Resistances are at the reference temperature ``t_ref_C`` and mid SOC.
    """

    name: str
    description: str
    u_pos: OcpFunction
    u_neg: OcpFunction
    nominal_capacity_Ah: float
    min_voltage_V: float
    max_voltage_V: float
    c_pos_Ah: float  # cathode capacity
    c_neg_Ah: float  # graphite capacity
    n_li_Ah: float  # cyclable lithium (Ah) in the fresh cell
    r0_ohm: float  # ohmic (electrolyte, contacts)
    r1_ohm: float  # charge transfer (fast arc)
    tau1_s: float
    r2_ohm: float  # solid diffusion (slow)
    tau2_s: float
    r0_ea_J_mol: float = 15_000.0
    r1_ea_J_mol: float = 45_000.0
    r2_ea_J_mol: float = 30_000.0
    anode_share: float = 0.7  # share of the RC overpotential sitting at the graphite
    hysteresis_V: float = 0.010  # half of the charge/discharge OCV gap
    hysteresis_gamma: float = 40.0  # approach rate per unit SOC moved
    mass_kg: float = 0.039
    heat_capacity_J_kgK: float = 1000.0
    h_area_W_K: float = 0.090  # convection to the chamber, h*A
    entropic_mV_K: tuple[float, float] = (-0.10, 0.15)  # dU/dT at empty / full (linear)
    t_ref_C: float = 30.0
    side_heat_V: float = 0.0  # parasitic heat per ampere (W/A), from thermal risk
    degradation: DegradationParams = field(default_factory=DegradationParams)
    variation: dict[str, float] = field(default_factory=dict)  # relative sd per parameter

    def with_(self, **changes: object) -> Chemistry:
        """A copy with some fields changed (dataclasses.replace)."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: Cell-to-cell variation (relative standard deviation) of the default cells.
DEFAULT_VARIATION = {
    "c_pos_Ah": 0.006,
    "c_neg_Ah": 0.006,
    "n_li_Ah": 0.005,
    "r0_ohm": 0.03,
    "r1_ohm": 0.03,
    "r2_ohm": 0.03,
    "sei_k": 0.08,
    "plating_k": 0.08,
    "lam_k": 0.08,
    "h_area_W_K": 0.03,
}

LFP_GRAPHITE_18650 = Chemistry(
    name="lfp_graphite_18650",
    description="LFP/graphite 18650, 1.1 Ah, 2.0-3.6 V (like the A123 APR18650M1A)",
    u_pos=lfp_ocp_prada2013,
    u_neg=graphite_ocp_chen2020,
    nominal_capacity_Ah=1.1,
    min_voltage_V=2.0,
    max_voltage_V=3.6,
    c_pos_Ah=1.20,
    c_neg_Ah=1.30,
    n_li_Ah=1.170,
    r0_ohm=0.013,
    r1_ohm=0.006,
    tau1_s=2.0,
    r2_ohm=0.009,
    tau2_s=120.0,
    variation=DEFAULT_VARIATION,
)

NMC_GRAPHITE_18650 = Chemistry(
    name="nmc_graphite_18650",
    description="NMC811/graphite 18650, 2.5 Ah, 2.5-4.2 V (LG M50-like electrodes)",
    u_pos=nmc811_ocp_chen2020,
    u_neg=graphite_ocp_chen2020,
    nominal_capacity_Ah=2.5,
    min_voltage_V=2.5,
    max_voltage_V=4.2,
    c_pos_Ah=4.00,  # NMC811 cycles between y ~ 0.27 (4.2 V) and ~0.93
    c_neg_Ah=2.95,
    n_li_Ah=3.72,
    r0_ohm=0.012,
    r1_ohm=0.006,
    tau1_s=2.0,
    r2_ohm=0.008,
    tau2_s=150.0,
    hysteresis_V=0.002,
    mass_kg=0.046,
    entropic_mV_K=(-0.2, 0.05),
    # capacity-scaled LFP constants, more electrolyte oxidation at 4.2 V, cathode LAM
    degradation=DegradationParams(sei_k_Ah2_per_s=7.0e-10, plating_k_A=5.7e-3, lam_p_per_Ah=2.0e-6),
    variation=DEFAULT_VARIATION,
)

CHEMISTRIES: dict[str, Chemistry] = {c.name: c for c in (LFP_GRAPHITE_18650, NMC_GRAPHITE_18650)}


def get_chemistry(kind: str) -> Chemistry:
    """The registered chemistry called ``kind``; ``ValueError`` names the known ones."""
    try:
        return CHEMISTRIES[kind]
    except KeyError:
        known = ", ".join(sorted(CHEMISTRIES))
        raise ValueError(f"unknown cell kind {kind!r}; known kinds: {known}") from None


GRID_POINTS = 4001
OVERRANGE_V_PER_UNIT = 20.0
_STOICH = np.linspace(0.0, 1.0, GRID_POINTS)


class OcpTable:
    """Concatenated half-cell tables of several chemistries, read by direct indexing.

    The tables are uniform in stoichiometry (``GRID_POINTS`` points on 0..1), so a
    lookup is an index computation and one linear interpolation — several times
    cheaper than ``np.interp``'s binary search. Chemistry ``k`` (registration order)
    owns two blocks of one flat table: its cathode curve at rows
    ``[2k*GRID_POINTS, (2k+1)*GRID_POINTS)`` and its graphite curve right after, so a
    cell stores ``chem_off = 2k*GRID_POINTS`` and one lookup can read both electrodes
    (``lookup`` with offsets ``chem_off`` and ``chem_off + GRID_POINTS``).
    """

    def __init__(self) -> None:
        self._chemistries: list[Chemistry] = []
        self._index: dict[int, int] = {}
        self.table = np.empty(0)  # potentials, V
        self.diff = np.empty(0)  # forward differences, V per grid step

    def index_of(self, chemistry: Chemistry) -> int:
        """Register ``chemistry`` if new; its table offset ``2k*GRID_POINTS``."""
        key = id(chemistry)
        if key not in self._index:
            self._index[key] = len(self._chemistries)
            self._chemistries.append(chemistry)
            up = chemistry.u_pos(_STOICH)
            un = chemistry.u_neg(_STOICH)
            self.table = np.concatenate([self.table, up, un])
            self.diff = np.concatenate([self.diff, np.diff(up), [0.0], np.diff(un), [0.0]])
        return self._index[key] * 2 * GRID_POINTS

    def lookup(self, s: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(potential, clipped stoichiometry) at stoichiometry ``s`` of the curve starting
        at row ``offset`` (broadcasting). Outside 0..1 the potential continues with a
        steep ``OVERRANGE_V_PER_UNIT`` slope, so over-charge and over-discharge drive
        the voltage out of range."""
        table, diff = self.table, self.diff
        sc = np.minimum(np.maximum(s, 0.0), 1.0)
        pos = sc * (GRID_POINTS - 1) + offset
        i = pos.astype(np.intp)
        pos -= i
        u = table.take(i)
        u += pos * diff.take(i)
        u += OVERRANGE_V_PER_UNIT * (sc - s)
        return u, sc

    def u_pos(self, y: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Cathode potential (V) at lithiation ``y``; broadcasts with ``offset``."""
        return self.lookup(y, offset)[0]

    def u_neg(self, x: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Graphite potential (V) vs Li/Li+ (same over-range continuation)."""
        return self.lookup(x, offset + GRID_POINTS)[0]
