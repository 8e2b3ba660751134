"""Candidate pools: substitutions on prototypes and StructureMatcher de-duplication."""

from __future__ import annotations

import pytest

from voltloop.surrogates.materials.pools import (
    StructureReadError,
    deduplicate,
    example_structure,
    layered_limo2,
    ordered_substitutions,
)


def test_olivine_substitutions_enumerate_every_decoration() -> None:
    lfp = example_structure("LiFePO4")
    pool = ordered_substitutions(lfp, "Fe", ["Mn", "Co", "Ni"])
    assert len(pool) == 4**4
    formulas = {s.composition.reduced_formula for s in pool}
    assert {"LiFePO4", "LiMnPO4", "LiCoPO4", "LiNiPO4"} <= formulas
    assert all(len(s) == len(lfp) for s in pool)


def test_large_decoration_spaces_are_sampled_reproducibly() -> None:
    lfp = example_structure("LiFePO4")
    a = ordered_substitutions(
        lfp, "Fe", ["Mn", "Co", "Ni"], supercell=(2, 1, 1), max_candidates=20, seed=3
    )
    b = ordered_substitutions(
        lfp, "Fe", ["Mn", "Co", "Ni"], supercell=(2, 1, 1), max_candidates=20, seed=3
    )
    assert len(a) == 20 and len(a[0]) == 56
    assert [s.composition for s in a] == [s.composition for s in b]


def test_layered_limo2_duplicates_are_removed_by_the_structure_matcher() -> None:
    prototype = layered_limo2("Co")
    assert prototype.composition.reduced_formula == "LiCoO2"
    pool = ordered_substitutions(prototype, "Co", ["Ni", "Mn"])
    assert len(pool) == 27
    keep = deduplicate(pool)
    # 3 sites, 3 elements: the 27 decorations collapse to 10 distinct multisets of
    # metals, each a single symmetry class in this cell
    assert len(keep) == 10
    assert keep[0] == 0
    assert len({pool[i].composition.reduced_formula for i in keep}) == 10


def test_unknown_example_structure_names_the_known_ones() -> None:
    with pytest.raises(StructureReadError, match="LiFePO4"):
        example_structure("Unobtainium")


def test_site_element_must_exist() -> None:
    with pytest.raises(ValueError, match="no Mn site"):
        ordered_substitutions(example_structure("LiFePO4"), "Mn", ["Co"])
