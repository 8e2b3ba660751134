"""Candidate pools of crystal structures: from files and from substitution rules.

- :func:`read_structure_file` — a CIF or pymatgen-JSON file → ``Structure``; anything
  pymatgen cannot read raises :class:`StructureReadError` naming the file.
- :func:`example_structure` — pymatgen's shipped examples
  (``pymatgen/util/structures/*.json``: LiFePO4, NaFePO4, Li2O, ...), read as data files
  (``pymatgen.util.testing`` is never imported: it imports pytest).
- :func:`layered_limo2` — the α-NaFeO2-type layered LiMO2 prototype (R-3m).
- :func:`ordered_substitutions` — ordered supercell substitutions of one site element
  by a set of elements (olivine LiFePO4 with Fe → Mn/Co/Ni mixtures; LiMO2 with
  M → Ni/Mn/Co): every decoration of the sites if there are few, else a seeded sample.
- :func:`deduplicate` — symmetry-equivalent structures kept once (pymatgen's
  ``StructureMatcher``; exact duplicates removed first by hash).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from voltloop.surrogates.materials.graphs import structure_hash


class StructureReadError(ValueError):
    """A structure file pymatgen cannot read (the message names the file)."""

    exit_code = 2


def read_structure_file(path: str | Path):
    """Read one structure (CIF, or pymatgen JSON ``Structure.as_dict()``) from ``path``."""
    from pymatgen.core import Structure

    path = Path(path)
    if not path.is_file():
        raise StructureReadError(f"{path}: no such structure file")
    try:
        if path.suffix.lower() == ".json":
            return Structure.from_dict(json.loads(path.read_text()))
        return Structure.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds; report the file
        raise StructureReadError(
            f"{path}: pymatgen cannot read this structure ({type(exc).__name__}: {exc})"
        ) from exc


def read_structure_files(paths: Sequence[str | Path]) -> list:
    """Read every file; the first unreadable one raises :class:`StructureReadError`."""
    return [read_structure_file(p) for p in paths]


def example_structure(name: str):
    """One of pymatgen's example structures by file stem, e.g. ``"LiFePO4"``."""
    from pymatgen.core import Structure

    folder = resources.files("pymatgen.util") / "structures"
    entry = folder / f"{name}.json"
    if not entry.is_file():
        known = sorted(p.name.removesuffix(".json") for p in folder.iterdir())
        raise StructureReadError(f"no example structure {name!r}; known: {', '.join(known)}")
    return Structure.from_dict(json.loads(entry.read_text()))


def layered_limo2(metal: str = "Co", a: float = 2.816, c: float = 14.05, z_o: float = 0.2396):
    """Layered LiMO2 (α-NaFeO2 type, R-3m, hexagonal setting: 3 formula units)."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "R-3m",
        Lattice.hexagonal(a, c),
        ["Li", metal, "O"],
        [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, z_o]],
    )


def ordered_substitutions(
    prototype,
    site_element: str,
    substitutes: Sequence[str],
    *,
    supercell: Sequence[int] = (1, 1, 1),
    max_candidates: int = 512,
    seed: int = 0,
) -> list:
    """Ordered decorations of ``site_element`` sites by ``[site_element, *substitutes]``.

    All ``k^n`` decorations of the ``n`` sites of the (super)cell are produced when that
    is at most ``max_candidates``; otherwise ``max_candidates`` distinct decorations are
    drawn with ``seed``. The unsubstituted prototype is included. Symmetry duplicates
    remain: pass the result to :func:`deduplicate`.
    """
    base = prototype.copy()
    if tuple(supercell) != (1, 1, 1):
        base.make_supercell(list(supercell))
    sites = [i for i, s in enumerate(base) if s.species_string == site_element]
    if not sites:
        raise ValueError(f"{base.composition.reduced_formula} has no {site_element} site")
    choices = [site_element, *substitutes]
    total = len(choices) ** len(sites)
    if total <= max_candidates:
        decorations = list(itertools.product(range(len(choices)), repeat=len(sites)))
    else:
        rng = np.random.default_rng(seed)
        seen: set[tuple[int, ...]] = {tuple([0] * len(sites))}
        while len(seen) < max_candidates:
            seen.add(tuple(int(v) for v in rng.integers(len(choices), size=len(sites))))
        decorations = sorted(seen)
    out = []
    for decoration in decorations:
        structure = base.copy()
        for site_index, choice in zip(sites, decoration, strict=True):
            if choice:
                structure.replace(site_index, choices[choice])
        out.append(structure)
    return out


def deduplicate(structures: Sequence, *, use_matcher: bool = True) -> list[int]:
    """Indices of the structures to keep (first of each equivalence class, in order).

    Exact duplicates (same :func:`structure_hash`) go first; then pymatgen's
    ``StructureMatcher`` groups symmetry-equivalent structures of equal composition.
    """
    first_by_hash: dict[str, int] = {}
    for i, s in enumerate(structures):
        first_by_hash.setdefault(structure_hash(s), i)
    unique = sorted(first_by_hash.values())
    if not use_matcher or len(unique) < 2:
        return unique
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    by_formula: dict[str, list[int]] = {}
    for i in unique:
        by_formula.setdefault(structures[i].composition.reduced_formula, []).append(i)
    keep: list[int] = []
    for members in by_formula.values():
        representatives: list[int] = []
        for i in members:
            if not any(matcher.fit(structures[r], structures[i]) for r in representatives):
                representatives.append(i)
        keep.extend(representatives)
    return sorted(keep)
