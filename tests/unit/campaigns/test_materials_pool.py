"""The materials pool: substitution rules on built-in prototypes."""

from __future__ import annotations

import pytest

from voltloop.campaigns.loading import parse_campaign
from voltloop.campaigns.materials_pool import PoolError, build_pool


def test_olivine_substitutions(materials_toml: str) -> None:
    pool = build_pool(parse_campaign(materials_toml))
    labels = [c.label for c in pool]
    # prototype + 3 substituents x 3 fractions (0.25, 0.5, 1.0)
    assert len(pool) == 10
    assert labels[0] == "LiFePO4"
    assert "LiMn0.25Fe0.75PO4" in labels and "LiNiPO4" in labels
    mn_quarter = pool[labels.index("LiMn0.25Fe0.75PO4")]
    assert mn_quarter.formula == "Li4MnFe3(PO4)4"
    assert mn_quarter.source == "olivine-LiFePO4: Fe -> Mn 0.25"
    assert len({c.structure_hash for c in pool}) == len(pool)
    assert mn_quarter.structure["@class"] == "Structure"


def test_fractions_must_fit_the_sites(materials_toml: str) -> None:
    spec = parse_campaign(materials_toml.replace("[0.25, 0.5, 1.0]", "[0.3]"))
    with pytest.raises(PoolError, match=r"fraction 0.3 of 4 Fe sites .* multiples of 0.25"):
        build_pool(spec)


def test_layered_prototype_and_size_limit(materials_toml: str) -> None:
    layered = (
        materials_toml.replace('"olivine-LiFePO4"', '"layered-LiCoO2"')
        .replace('site = "Fe"', 'site = "Co"')
        .replace('["Mn", "Co", "Ni"]', '["Ni", "Mn"]')
        .replace("[0.25, 0.5, 1.0]", "[0.333, 1.0]")
    )
    pool = build_pool(parse_campaign(layered))
    assert [c.label for c in pool] == [
        "LiCoO2", "LiNi0.3333Co0.6667O2", "LiNiO2", "LiMn0.3333Co0.6667O2", "LiMnO2"
    ]  # fmt: skip
    small = parse_campaign(layered.replace("[pool]", "[pool]\nmax_size = 3"))
    with pytest.raises(PoolError, match="more than pool.max_size = 3"):
        build_pool(small)
