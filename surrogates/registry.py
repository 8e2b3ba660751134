"""Model registry: every fitted surrogate becomes a versioned, safely stored record.

A :class:`ModelRecord` carries kind ("protocol_gp", "materials_gnn", ...), name,
version, campaign, the training-set hash (:func:`training_set_hash`), hyper-parameters,
metrics and the artifact: a *tensor-only* state dict written with ``torch.save`` and
read back with ``torch.load(..., weights_only=True)`` — never a pickled object
(:func:`encode_state` refuses anything that is not a tensor).

Storage is behind the small :class:`ModelStore` protocol so the registry does not care
where rows live: :class:`MemoryModelStore` (tests, dry runs) and
:class:`SqlModelStore`, which writes ``model_version`` rows through the db package's
ORM model (``voltloop.db.models.ModelVersion``) in a caller-supplied session factory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

#: ``model_version.artifact_format`` of a tensor-only ``torch.save`` state dict.
ARTIFACT_FORMAT = "torch_tensors"


class RegistryError(ValueError):
    """An artifact that is not tensor-only, or an unknown model version."""

    exit_code = 2


def training_set_hash(*arrays: np.ndarray | torch.Tensor) -> str:
    """SHA-256 over the arrays' shapes, dtypes and bytes (order matters)."""
    digest = hashlib.sha256()
    for array in arrays:
        a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        a = np.ascontiguousarray(a)
        digest.update(f"{a.shape}|{a.dtype.str}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def encode_state(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a tensor-only state dict (``torch.save`` to bytes)."""
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise RegistryError(f"artifact must hold tensors only; not tensors: {bad[:5]}")
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def decode_state(blob: bytes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_state`; ``weights_only=True`` refuses pickled objects."""
    return torch.load(io.BytesIO(blob), weights_only=True)


@dataclass(frozen=True)
class ModelRecord:
    kind: str
    name: str
    training_set_hash: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: bytes | None = None
    artifact_format: str = ARTIFACT_FORMAT
    campaign_id: int | None = None
    version: int = 0
    id: int | None = None
    created_at: dt.datetime | None = None


class ModelStore(Protocol):
    def next_version(self, name: str) -> int: ...

    def put(self, record: ModelRecord) -> int: ...

    def get(self, name: str, version: int | None = None) -> ModelRecord: ...


class MemoryModelStore:
    """Records kept in a list (tests and dry runs without a database)."""

    def __init__(self) -> None:
        self.records: list[ModelRecord] = []

    def next_version(self, name: str) -> int:
        return 1 + max((r.version for r in self.records if r.name == name), default=0)

    def put(self, record: ModelRecord) -> int:
        record = replace(record, id=len(self.records) + 1)
        self.records.append(record)
        return record.id  # type: ignore[return-value]

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        found = [r for r in self.records if r.name == name and version in (None, r.version)]
        if not found:
            raise RegistryError(f"no model {name!r} version {version or 'latest'} in the registry")
        return max(found, key=lambda r: r.version)


class SqlModelStore:
    """``model_version`` rows through the db package's ORM model, on a SQLAlchemy engine
    (``voltloop.db.migrate.open_database(url)`` gives one on a migrated database)."""

    def __init__(self, engine: Any):
        self.engine = engine

    def session_factory(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self.engine, expire_on_commit=False)

    def next_version(self, name: str) -> int:
        from sqlalchemy import func, select

        from voltloop.db.models import ModelVersion

        with self.session_factory() as session:
            current = session.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
            )
        return int(current or 0) + 1

    def put(self, record: ModelRecord) -> int:
        from voltloop.db.models import ModelVersion

        with self.session_factory() as session:
            row = ModelVersion(
                campaign_id=record.campaign_id,
                kind=record.kind,
                name=record.name,
                version=record.version,
                training_set_hash=record.training_set_hash,
                hyperparameters=record.hyperparameters,
                metrics=record.metrics,
                artifact_format=record.artifact_format,
                artifact=record.artifact,
            )
            with session.begin():
                session.add(row)
                session.flush()
                return int(row.id)

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        from sqlalchemy import select

        from voltloop.db.models import ModelVersion

        query = select(ModelVersion).where(ModelVersion.name == name)
        if version is not None:
            query = query.where(ModelVersion.version == version)
        with self.session_factory() as session:
            row = session.scalars(query.order_by(ModelVersion.version.desc()).limit(1)).first()
            if row is None:
                raise RegistryError(f"no model {name!r} version {version or 'latest'} stored")
            return ModelRecord(
                kind=row.kind,
                name=row.name,
                training_set_hash=row.training_set_hash,
                hyperparameters=dict(row.hyperparameters or {}),
                metrics=dict(row.metrics or {}),
                artifact=row.artifact,
                artifact_format=row.artifact_format or ARTIFACT_FORMAT,
                campaign_id=row.campaign_id,
                version=row.version,
                id=row.id,
                created_at=row.created_at,
            )


class ModelRegistry:
    """Register fitted models and load their state back."""

    def __init__(self, store: ModelStore | None = None):
        self.store: ModelStore = store or MemoryModelStore()

    def register(
        self,
        *,
        kind: str,
        name: str,
        state: Mapping[str, torch.Tensor],
        training_hash: str,
        hyperparameters: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        campaign_id: int | None = None,
    ) -> ModelRecord:
        """Store a new version of ``name``; returns the record with id and version."""
        artifact = encode_state(state)  # refuses non-tensors before anything is written
        record = ModelRecord(
            kind=kind,
            name=name,
            training_set_hash=training_hash,
            hyperparameters=dict(hyperparameters or {}),
            metrics=dict(metrics or {}),
            artifact=artifact,
            campaign_id=campaign_id,
            version=self.store.next_version(name),
        )
        record_id = self.store.put(record)
        return replace(record, id=record_id)

    def load_state(self, name: str, version: int | None = None) -> dict[str, torch.Tensor]:
        record = self.store.get(name, version)
        if record.artifact is None or record.artifact_format != ARTIFACT_FORMAT:
            raise RegistryError(
                f"model {name!r} v{record.version} has no {ARTIFACT_FORMAT} artifact"
            )
        return decode_state(record.artifact)
