"""The installed distribution matches the source tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_PACKAGES = ("orchestrator", "drivers", "surrogates", "campaigns", "db", "benchmarks")


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_source_package_is_declared() -> None:
    """A sub-package missing from pyproject's list would be absent from a wheel."""
    on_disk = {
        "voltloop." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_PACKAGES
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == _declared_packages()


def test_layers_do_not_import_each_other() -> None:
    """design.md: drivers and surrogates never import each other; db imports no voltloop part."""
    forbidden = {
        "drivers": ("voltloop.surrogates", "voltloop.orchestrator"),
        "surrogates": ("voltloop.drivers", "voltloop.orchestrator"),
        "db": ("voltloop.",),
        "campaigns": ("voltloop.orchestrator",),
    }
    offenders = []
    for package, prefixes in forbidden.items():
        for source in (ROOT / package).rglob("*.py"):
            for lineno, line in enumerate(source.read_text().splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")) and any(
                    f" {p}" in stripped for p in prefixes
                ):
                    offenders.append(f"{source.relative_to(ROOT)}:{lineno}: {stripped}")
    assert not offenders, "\n".join(offenders)
