"""Build a materials campaign's candidate pool as pymatgen structures.

Sources, in this order: the structure files of ``pool.structures`` (CIF or pymatgen
JSON, globs expanded, relative to the campaign file), then each substitution rule of
``pool.substitutions`` applied to its prototype. Duplicates (same structure) are
kept once, first source wins. pymatgen is imported inside the functions.

Prototypes:
- ``olivine-LiFePO4``: pymatgen's example LiFePO4 structure
  (``pymatgen/util/structures/LiFePO4.json``; 4 formula units, 4 Fe sites).
- ``layered-LiCoO2``: alpha-NaFeO2 type, R-3m, hexagonal a = 2.816 Å, c = 14.05 Å,
  Li 3b (0, 0, ½), Co 3a (0, 0, 0), O 6c (0, 0, 0.2396); 3 formula units, 3 Co sites.

Substitution is ordered and deterministic: fraction f of n ``site`` atoms replaces the
first round(f·n) of them (in the structure's site order) by the substituent; f·n
must be within 0.05 of a whole number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voltloop.campaigns.materials_campaign import MaterialsCampaign, Prototype, SubstitutionRule

if TYPE_CHECKING:
    from pymatgen.core import Structure

_FRACTION_TOL = 0.05


class PoolError(ValueError):
    """A pool that cannot be built (unreadable file, impossible fraction, too large)."""

    exit_code = 2


@dataclass(frozen=True)
class PoolCandidate:
    """One material of the pool.

    ``structure`` is the pymatgen ``Structure.as_dict()``; ``structure_hash`` is a
    SHA-256 of its canonical JSON; ``label`` is a per-formula-unit formula such as
    ``LiMn0.25Fe0.75PO4`` (made unique within the pool).
    """

    label: str
    formula: str
    source: str
    structure_hash: str
    structure: dict[str, Any] = field(repr=False)


def prototype_structure(prototype: Prototype) -> Structure:
    """The built-in prototype as a pymatgen Structure."""
    from pymatgen.core import Lattice, Structure

    if prototype is Prototype.OLIVINE_LIFEPO4:
        path = resources.files("pymatgen.util").joinpath("structures/LiFePO4.json")
        return Structure.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if prototype is Prototype.LAYERED_LICOO2:
        return Structure.from_spacegroup(
            "R-3m",
            Lattice.hexagonal(2.816, 14.05),
            ["Li", "Co", "O"],
            [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.2396]],
        )
    raise PoolError(f"unknown prototype {prototype!r}")


def read_structure(path: Path) -> Structure:
    """A structure from a CIF or pymatgen JSON file; PoolError names the file."""
    from pymatgen.core import Structure

    try:
        if path.suffix.lower() == ".json":
            return Structure.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return Structure.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds; report the file
        raise PoolError(f"cannot read structure file {path}: {exc}") from None


def substitute(structure: Structure, site: str, substituent: str, fraction: float) -> Structure:
    """Replace ``fraction`` of the ``site`` atoms (the first ones, in order)."""
    indices = [i for i, s in enumerate(structure) if s.specie.symbol == site]
    if not indices:
        raise PoolError(f"the prototype {structure.composition.reduced_formula} has no {site}")
    exact = fraction * len(indices)
    count = round(exact)
    if abs(exact - count) > _FRACTION_TOL or count == 0:
        step = 1 / len(indices)
        raise PoolError(
            f"fraction {fraction} of {len(indices)} {site} sites is not a whole number of "
            f"sites; use multiples of {step:.4g}"
        )
    result = structure.copy()
    for index in indices[:count]:
        result.replace(index, substituent)
    return result


def structure_hash(structure: Structure) -> str:
    """SHA-256 of the structure's canonical JSON (lattice and sites rounded)."""
    sites = sorted(
        (s.specie.symbol, *(round(float(x), 5) % 1.0 for x in s.frac_coords)) for s in structure
    )
    lattice = [round(float(x), 5) for x in structure.lattice.parameters]
    return hashlib.sha256(json.dumps([lattice, sites]).encode()).hexdigest()


def per_formula_unit(structure: Structure, formula_units: int) -> str:
    """``LiMn0.25Fe0.75PO4``: the composition divided by ``formula_units``."""
    order: list[str] = []
    for s in structure:
        if s.specie.symbol not in order:
            order.append(s.specie.symbol)
    amounts = structure.composition.get_el_amt_dict()
    parts = []
    for element in order:
        amount = amounts[element] / formula_units
        text = "" if abs(amount - 1) < 1e-9 else f"{amount:.4g}"
        parts.append(f"{element}{text}")
    return "".join(parts)


def _formula_units(structure: Structure) -> int:
    return int(round(structure.composition.get_reduced_formula_and_factor()[1]))


def _rule_candidates(rule: SubstitutionRule, base_dir: Path) -> list[tuple[str, Structure]]:
    builtin = rule.builtin_prototype
    if builtin is not None:
        prototype = prototype_structure(builtin)
    else:
        path = Path(rule.prototype)
        prototype = read_structure(path if path.is_absolute() else base_dir / path)
    name = rule.prototype
    out: list[tuple[str, Structure]] = []
    if rule.include_prototype:
        out.append((f"prototype {name}", prototype))
    for substituent in rule.substituents:
        for fraction in rule.fractions:
            source = f"{name}: {rule.site} -> {substituent} {fraction:g}"
            out.append((source, substitute(prototype, rule.site, substituent, fraction)))
    return out


def build_pool(spec: MaterialsCampaign) -> list[PoolCandidate]:
    """Every candidate of ``spec.pool``, deduplicated, in a stable order."""
    sources: list[tuple[str, Structure]] = []
    for path in spec.structure_paths():
        sources.append((f"file {path.name}", read_structure(path)))
    for rule in spec.pool.substitutions:
        sources += _rule_candidates(rule, spec.source_dir)
    pool: list[PoolCandidate] = []
    seen: set[str] = set()
    labels: dict[str, int] = {}
    for source, structure in sources:
        digest = structure_hash(structure)
        if digest in seen:
            continue
        seen.add(digest)
        formula = structure.composition.reduced_formula
        base = per_formula_unit(structure, _formula_units_for_label(structure))
        labels[base] = labels.get(base, 0) + 1
        label = base if labels[base] == 1 else f"{base}#{labels[base]}"
        pool.append(PoolCandidate(label, formula, source, digest, structure.as_dict()))
        if len(pool) > spec.pool.max_size:
            raise PoolError(
                f"the pool has more than pool.max_size = {spec.pool.max_size} candidates; "
                "raise max_size or narrow the rules"
            )
    return pool


def _formula_units_for_label(structure: Structure) -> int:
    """Formula units: from the count of Li (cathodes), else the reduction factor."""
    amounts = structure.composition.get_el_amt_dict()
    lithium = amounts.get("Li")
    if lithium and abs(lithium - round(lithium)) < 1e-9 and lithium >= 1:
        return int(round(lithium))
    return _formula_units(structure)
