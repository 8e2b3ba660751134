"""Artifacts never pickle and refuse what they cannot load safely."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from voltloop.surrogates.lifetime import artifacts


def test_pack_unpack_round_trip() -> None:
    blob = artifacts.pack({"w": np.arange(6.0).reshape(2, 3)}, {"kind": "x", "n": 3})
    arrays, meta = artifacts.unpack(blob)
    assert np.array_equal(arrays["w"], np.arange(6.0).reshape(2, 3))
    assert meta["kind"] == "x" and meta["format"] == artifacts.FORMAT


def test_object_arrays_are_refused() -> None:
    with pytest.raises(artifacts.ArtifactError, match="safely"):
        artifacts.pack({"bad": np.array([{"a": 1}], dtype=object)}, {})


def test_garbage_is_refused() -> None:
    with pytest.raises(artifacts.ArtifactError):
        artifacts.unpack(b"not a zip")


def test_torch_state_round_trip_with_weights_only() -> None:
    layer = torch.nn.Linear(3, 2)
    data = artifacts.torch_state_to_array(layer.state_dict())
    state = artifacts.torch_state_from_array(data)
    assert torch.equal(state["weight"], layer.weight.detach())


def test_torch_blob_with_arbitrary_objects_is_refused() -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1), "evil": io.StringIO}, buffer)  # a class, not a tensor
    with pytest.raises(artifacts.ArtifactError, match="safely"):
        artifacts.torch_state_from_array(np.frombuffer(buffer.getvalue(), np.uint8))
