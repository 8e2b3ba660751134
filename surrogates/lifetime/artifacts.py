"""Safe model artifacts: one ``.npz`` blob of plain arrays plus JSON metadata.

No pickle anywhere: ``numpy.load(..., allow_pickle=False)`` refuses object arrays,
torch weights travel as a state dict loaded with ``torch.load(weights_only=True)``
and scikit-learn estimators that are not plain coefficient arrays (the SVMs)
travel through skops with an explicit list of trusted types. Each of those byte
strings is stored as a ``uint8`` array inside the same ``.npz``.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from voltloop.surrogates.lifetime.dataset import LifetimeDataError

META_KEY = "__meta__"
FORMAT = "voltloop-lifetime-artifact/1"


class ArtifactError(LifetimeDataError):
    """An artifact blob that is corrupt, of another format, or unsafe to load."""


def pack(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """Arrays (any numeric/bool/str dtype, no objects) and JSON metadata → bytes."""
    if META_KEY in arrays:
        raise ArtifactError(f"array name {META_KEY!r} is reserved")
    body = json.dumps({"format": FORMAT, **meta}, sort_keys=True, default=float)
    buffer = io.BytesIO()
    try:
        np.savez_compressed(
            buffer,
            allow_pickle=False,
            **{META_KEY: np.frombuffer(body.encode(), dtype=np.uint8)},
            **{k: np.asarray(v) for k, v in arrays.items()},
        )
    except ValueError as exc:  # object arrays would need pickle
        raise ArtifactError(f"cannot store artifact safely: {exc}") from None
    return buffer.getvalue()


def unpack(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`pack`; never unpickles."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"not a readable model artifact: {exc}") from None
    raw = arrays.pop(META_KEY, None)
    if raw is None:
        raise ArtifactError("model artifact has no metadata")
    meta = json.loads(raw.tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"unknown artifact format {meta.get('format')!r}")
    return arrays, meta


def bytes_to_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).copy()


def torch_state_to_array(state_dict: dict) -> np.ndarray:
    """A torch ``state_dict`` as a uint8 array (torch.save of tensors only)."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return bytes_to_array(buffer.getvalue())


def torch_state_from_array(data: np.ndarray) -> dict:
    """Inverse of :func:`torch_state_to_array`, with ``weights_only=True``."""
    import torch

    try:
        return torch.load(io.BytesIO(np.asarray(data, np.uint8).tobytes()), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable artifact
        raise ArtifactError(f"torch weights could not be loaded safely: {exc}") from None


#: scikit-learn types the health models serialise; nothing else is accepted on load.
SKOPS_TRUSTED = [
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.OneClassSVM",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.pipeline.Pipeline",
]


def sklearn_to_array(estimator: Any) -> np.ndarray:
    import skops.io as sio

    return bytes_to_array(sio.dumps(estimator))


def sklearn_from_array(data: np.ndarray) -> Any:
    """Load a skops blob, refusing any type outside :data:`SKOPS_TRUSTED`."""
    import skops.io as sio

    blob = np.asarray(data, np.uint8).tobytes()
    untrusted = set(sio.get_untrusted_types(data=blob)) - set(SKOPS_TRUSTED)
    if untrusted:
        raise ArtifactError(f"artifact contains untrusted types: {sorted(untrusted)}")
    return sio.loads(blob, trusted=SKOPS_TRUSTED)
