"""Crystal graphs: periodic neighbours, the k-nearest cap, features, hashing and the cache."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from voltloop.surrogates.materials.graphs import (
    NODE_FEATURES,
    GraphFeaturiser,
    GraphSettings,
    structure_hash,
    structure_to_graph,
)
from voltloop.surrogates.materials.pools import example_structure


def test_one_atom_cubic_cell_has_neighbours_through_the_boundary() -> None:
    cell = Structure(Lattice.cubic(3.0), ["Cu"], [[0.0, 0.0, 0.0]])
    graph = structure_to_graph(cell, GraphSettings(cutoff=3.1, max_neighbours=12))
    # the six face neighbours are periodic images of the atom itself
    assert graph.edge_index.shape == (2, 6)
    assert (graph.edge_index == 0).all()
    assert np.allclose(graph.edge_length.numpy(), 3.0)


def test_neighbours_are_capped_at_the_k_nearest() -> None:
    lfp = example_structure("LiFePO4")
    graph = structure_to_graph(lfp)  # CGCNN: 8 Å, 12 neighbours
    counts = np.bincount(graph.edge_index[0].numpy(), minlength=len(lfp))
    assert (counts == 12).all()
    # the kept neighbours are the nearest: no kept edge is longer than a dropped one
    centres, _, _, dist = lfp.get_neighbor_list(8.0)
    for site in (0, 5):
        kept = graph.edge_length[graph.edge_index[0] == site].numpy()
        assert kept.max() <= np.sort(dist[centres == site])[11] + 1e-6


def test_node_and_edge_features() -> None:
    graph = structure_to_graph(example_structure("LiFePO4"), GraphSettings(gaussians=20))
    assert graph.x.shape == (28, len(NODE_FEATURES))
    assert graph.edge_attr.shape == (graph.edge_index.shape[1], 20)
    assert np.isfinite(graph.x.numpy()).all()
    assert set(graph.z.tolist()) == {3, 8, 15, 26}
    # Gaussian expansion peaks near the edge's distance
    centres = np.linspace(0, 8.0, 20)
    peak = centres[graph.edge_attr[0].argmax().item()]
    assert abs(peak - graph.edge_length[0].item()) <= 8.0 / 19


def test_structure_hash_and_the_memory_cache() -> None:
    lfp = example_structure("LiFePO4")
    other = lfp.copy()
    other.replace(4, "Mn") if other[4].species_string == "Fe" else other.replace(
        [i for i, s in enumerate(other) if s.species_string == "Fe"][0], "Mn"
    )
    assert structure_hash(lfp) == structure_hash(lfp.copy())
    assert structure_hash(lfp) != structure_hash(other)
    featuriser = GraphFeaturiser()
    first = featuriser(lfp)
    again = featuriser(lfp.copy())
    assert again is first
    assert (featuriser.hits, featuriser.misses) == (1, 1)
    featuriser(other)
    assert featuriser.misses == 2


def test_disordered_structures_are_refused() -> None:
    disordered = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Mn": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="disordered"):
        structure_to_graph(disordered)
