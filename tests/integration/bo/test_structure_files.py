"""Structure files and the on-disk graph cache (real files in a temporary folder)."""

from __future__ import annotations

import json

import pytest
import torch

from voltloop.surrogates.materials.graphs import GraphFeaturiser
from voltloop.surrogates.materials.pools import (
    StructureReadError,
    example_structure,
    read_structure_file,
    read_structure_files,
)


def test_cif_and_json_files_read_back_the_same_structure(tmp_path) -> None:
    lfp = example_structure("LiFePO4")
    cif = tmp_path / "LiFePO4.cif"
    lfp.to(filename=str(cif))
    as_json = tmp_path / "LiFePO4.json"
    as_json.write_text(json.dumps(lfp.as_dict()))
    from_cif, from_json = read_structure_files([cif, as_json])
    assert from_cif.composition == from_json.composition == lfp.composition
    assert len(from_cif) == 28


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.cif", "data_x\n_cell_length_a 1\nthis is not a cif\n"),
        ("broken.json", '{"lattice": 3}'),
        ("empty.cif", ""),
    ],
)
def test_an_unreadable_structure_names_the_file(tmp_path, name, content) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(StructureReadError, match=name) as err:
        read_structure_file(path)
    assert err.value.exit_code == 2


def test_a_missing_file_names_the_file(tmp_path) -> None:
    with pytest.raises(StructureReadError, match="nowhere.cif"):
        read_structure_file(tmp_path / "nowhere.cif")


def test_the_disk_cache_stores_tensors_only_and_hits_across_featurisers(tmp_path) -> None:
    lfp = example_structure("LiFePO4")
    first = GraphFeaturiser(cache_dir=tmp_path)
    graph = first(lfp)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and first.misses == 1
    stored = torch.load(files[0], weights_only=True)  # tensor-only: loads safely
    assert set(stored) == {"x", "z", "edge_index", "edge_attr", "edge_length"}
    second = GraphFeaturiser(cache_dir=tmp_path)
    again = second(lfp)
    assert (second.hits, second.misses) == (1, 0)
    assert torch.equal(again.edge_index, graph.edge_index)
    assert torch.allclose(again.edge_attr, graph.edge_attr)
