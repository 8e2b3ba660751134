"""Benchmarks run by ``voltloop bench NAME``.

Each benchmark is a module ``voltloop.benchmarks.NAME`` with a docstring (its
first line is the summary ``voltloop bench --list`` shows) and a function
``run(quick: bool = False) -> dict`` returning JSON-serialisable figures.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


class UnknownBenchmarkError(LookupError):
    """A benchmark name that has no module."""

    exit_code = 2


def available() -> dict[str, str]:
    """Benchmark names and their one-line summaries."""
    names: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        doc = (module.__doc__ or "").strip().splitlines()
        names[info.name] = doc[0] if doc else ""
    return dict(sorted(names.items()))


def load(name: str) -> ModuleType:
    """The benchmark module called ``name``; raises UnknownBenchmarkError."""
    known = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    if name not in known:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; available: {', '.join(sorted(known)) or 'none'}"
        )
    return importlib.import_module(f"{__name__}.{name}")
