"""User-supplied physics for the simulated lab, named by a Python import path.

A campaign (``[simulator] cell_model = "mylab.cells:make_chemistry"``) or ``voltloop
sim serve --cell-model ...`` may name:

* a **cell model** — a callable ``(CellSpec) -> Chemistry | None``: given what the
  loader puts in a channel, return the chemistry (OCV curves, circuit, thermal and
  ageing parameters) of that cell, or None to fall back to the built-in cell types;
* a **material mapping** — a callable ``(structure: dict) -> Chemistry``: turn a
  pymatgen ``Structure.as_dict()`` into a chemistry (the default is
  materials_mapping.default_mapping).

Both return a :class:`~voltloop.drivers.sim.chemistry.Chemistry`; the vectorised
cell bank, the executor and the instruments stay the same, so user physics runs at
full speed and speaks the same bytes. The import path has the form
``"package.module:attribute"``; :func:`load_plugin` raises :class:`PluginError`
(``exit_code`` 2) naming the path and what is wrong.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from voltloop.drivers.sim.chemistry import Chemistry
from voltloop.drivers.sim.virtual_lab import CellSpec


@runtime_checkable
class CellModelFactory(Protocol):
    """``(CellSpec) -> Chemistry | None``: a custom cell type for a loaded cell."""

    def __call__(self, spec: CellSpec) -> Chemistry | None: ...


@runtime_checkable
class MaterialMapping(Protocol):
    """``(pymatgen Structure dict) -> Chemistry``: cell parameters from a material."""

    def __call__(self, structure: dict[str, Any]) -> Chemistry: ...


class PluginError(ValueError):
    """A plugin import path that cannot be used (message names the path)."""

    exit_code = 2


def load_plugin(path: str, what: str = "plugin") -> Any:
    """Import ``"package.module:attribute"`` and return the (callable) attribute."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise PluginError(f"bad {what} import path {path!r}: expected 'package.module:attribute'")
    module_name, attr = path.split(":")
    if not module_name or not attr:
        raise PluginError(f"bad {what} import path {path!r}: expected 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"cannot import module {module_name!r} for {what} {path!r}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PluginError(f"{what} {path!r} is not callable (got {type(obj).__name__})")
    return obj


def load_cell_model(path: str) -> CellModelFactory:
    return load_plugin(path, "cell model")


def load_material_mapping(path: str) -> MaterialMapping:
    return load_plugin(path, "material mapping")
