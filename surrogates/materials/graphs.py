"""Crystal graphs: pymatgen ``Structure`` → torch-geometric ``Data`` (CGCNN convention).

Nodes are the sites of the unit cell; a directed edge ``i → j`` joins site ``i`` to each
of its neighbours ``j`` within ``cutoff`` Å *under periodic boundaries* (neighbours in
image cells count, so a one-atom cubic cell has its six face neighbours through the
boundary), keeping the ``max_neighbours`` nearest (CGCNN: 8 Å, 12). Neighbours come from
``Structure.get_neighbor_list`` (the fast C path; ~50× faster than
``get_all_neighbors``, field notes).

``Data`` fields (``n`` sites, ``E`` edges, ``F`` = :data:`NODE_FEATURES`,
``G`` = ``settings.gaussians``):

- ``z``: ``n`` atomic numbers (embedding index, long)
- ``x``: ``n × F`` element descriptors (electronegativity, atomic mass, atomic radius,
  group, period, valence-electron count), scaled to O(1)
- ``edge_index``: ``2 × E`` (row 0 = centre site, row 1 = neighbour)
- ``edge_attr``: ``E × G`` Gaussian expansion of the distance
- ``edge_length``: ``E`` distances (Å)

:class:`GraphFeaturiser` caches graphs by :func:`structure_hash` in memory and,
optionally, on disk as tensor-only ``torch.save`` files read back with
``weights_only=True`` (never pickle).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

#: Element descriptors in ``Data.x`` (column order).
NODE_FEATURES = (
    "electronegativity",
    "atomic_mass",
    "atomic_radius",
    "group",
    "period",
    "valence_electrons",
)
#: Largest atomic number the embedding table covers.
MAX_Z = 100


@dataclass(frozen=True)
class GraphSettings:
    """Graph construction parameters (CGCNN defaults)."""

    cutoff: float = 8.0
    max_neighbours: int = 12
    gaussians: int = 40
    gaussian_width: float = 0.2

    def key(self) -> str:
        return f"r{self.cutoff:g}-k{self.max_neighbours}-g{self.gaussians}-w{self.gaussian_width:g}"


@functools.lru_cache(maxsize=MAX_Z + 1)
def element_features(z: int) -> tuple[float, ...]:
    """Scaled descriptors of element ``z`` (NaN-free; unknown values become 0)."""
    from pymatgen.core import Element

    el = Element.from_Z(z)

    def safe(value: object) -> float:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0
        return v if np.isfinite(v) else 0.0

    try:
        outer = el.full_electronic_structure
        n_max = max(n for n, _, _ in outer)
        valence = sum(
            c for n, orb, c in outer if n == n_max or orb in ("d", "f") and n >= n_max - 1
        )
    except (ValueError, AttributeError):
        valence = 0
    return (
        safe(el.X) / 4.0,
        safe(el.atomic_mass) / 100.0,
        safe(el.atomic_radius) / 2.0,
        safe(el.group) / 18.0,
        safe(el.row) / 7.0,
        float(valence) / 10.0,
    )


def structure_hash(structure) -> str:
    """SHA-256 of the structure's lattice, species and fractional coordinates (rounded).

    Two structures with the same sites in the same order hash equal; the hash keys the
    graph cache and the ``material.structure_hash`` column.
    """
    lattice = np.round(structure.lattice.matrix, 5).tolist()
    sites = [
        (site.species_string, np.round(np.mod(site.frac_coords, 1.0), 5).tolist())
        for site in structure
    ]
    payload = json.dumps({"lattice": lattice, "sites": sites}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def gaussian_expansion(distances: np.ndarray, settings: GraphSettings) -> np.ndarray:
    """``E`` distances → ``E × G`` Gaussians centred evenly on ``[0, cutoff]``."""
    centres = np.linspace(0.0, settings.cutoff, settings.gaussians)
    return np.exp(-((distances[:, None] - centres[None, :]) ** 2) / settings.gaussian_width**2)


def structure_to_graph(structure, settings: GraphSettings | None = None) -> Data:
    """Build the crystal graph of ``structure`` (see the module docstring for fields)."""
    settings = settings or GraphSettings()
    if len(structure) == 0:
        raise ValueError("cannot build a graph of an empty structure")
    if not structure.is_ordered:
        raise ValueError(
            f"{structure.composition.reduced_formula}: disordered structure; order it first "
            "(e.g. an ordered supercell substitution)"
        )
    centres, neighbours, _images, distances = structure.get_neighbor_list(
        settings.cutoff, numerical_tol=1e-8, exclude_self=True
    )
    order = np.lexsort((distances, centres))
    centres, neighbours, distances = centres[order], neighbours[order], distances[order]
    # rank of each edge within its centre's (distance-sorted) group → keep the k nearest
    starts = np.searchsorted(centres, centres, side="left")
    keep = (np.arange(len(centres)) - starts) < settings.max_neighbours
    centres, neighbours, distances = centres[keep], neighbours[keep], distances[keep]
    z = np.array([site.specie.Z for site in structure], dtype=np.int64)
    x = np.array([element_features(int(zz)) for zz in z], dtype=np.float32)
    return Data(
        x=torch.from_numpy(x),
        z=torch.from_numpy(z),
        edge_index=torch.from_numpy(np.stack([centres, neighbours]).astype(np.int64)),
        edge_attr=torch.from_numpy(gaussian_expansion(distances, settings).astype(np.float32)),
        edge_length=torch.from_numpy(distances.astype(np.float32)),
        num_nodes=len(structure),
    )


_FIELDS = ("x", "z", "edge_index", "edge_attr", "edge_length")


class GraphFeaturiser:
    """Structure → graph with a cache keyed by (settings, structure hash).

    ``cache_dir`` (optional) stores each graph as a tensor-only ``.pt`` file loaded with
    ``weights_only=True``; the in-memory cache always applies.
    """

    def __init__(self, settings: GraphSettings | None = None, cache_dir: Path | None = None):
        self.settings = settings or GraphSettings()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, Data] = {}
        self.hits = 0
        self.misses = 0

    def _key(self, structure) -> str:
        return f"{self.settings.key()}-{structure_hash(structure)}"

    def __call__(self, structure) -> Data:
        key = self._key(structure)
        graph = self._memory.get(key)
        if graph is not None:
            self.hits += 1
            return graph
        path = self.cache_dir / f"{key}.pt" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            tensors = torch.load(path, weights_only=True)
            graph = Data(**tensors, num_nodes=int(tensors["z"].numel()))
            self.hits += 1
        else:
            graph = structure_to_graph(structure, self.settings)
            self.misses += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save({f: getattr(graph, f) for f in _FIELDS}, tmp)
                tmp.replace(path)
        self._memory[key] = graph
        return graph

    def many(self, structures) -> list[Data]:
        """Graphs of ``structures`` in order."""
        return [self(s) for s in structures]
