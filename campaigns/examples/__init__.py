"""Example campaign files shipped with voltloop (``voltloop init`` copies them).

- ``protocol.toml`` — the Attia et al. (2020) ten-minute fast-charge loop:
  4 rounds × 48 channels, early prediction at cycle 100, EIS every 50 cycles.
- ``materials.toml`` — substituted olivine (LiFePO4, Fe → Mn/Co/Ni) and layered
  (LiCoO2, Co → Ni/Mn) cathodes with one fixed test protocol.
- ``protocol-ci.toml`` — the Attia space on 4 channels for 2 rounds (CI, quick dry runs).
- ``materials-ci.toml`` — the materials pool, 2 rounds × 4 cells of 20 cycles (CI).

Instrument URLs are ``sim://NAME`` placeholders that ``voltloop dry-run`` points at
the simulated instruments it starts.
"""

from __future__ import annotations

from importlib import resources

#: Example name → file name.
EXAMPLES: dict[str, str] = {
    "protocol": "protocol.toml",
    "materials": "materials.toml",
    "protocol-ci": "protocol-ci.toml",
    "materials-ci": "materials-ci.toml",
}


def example_text(name: str) -> str:
    """The TOML text of example ``name`` (a key of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise KeyError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    return resources.files(__name__).joinpath(EXAMPLES[name]).read_text(encoding="utf-8")
