"""The registry writes model_version rows into a migrated SQLite database."""

from __future__ import annotations

import torch

from voltloop.surrogates.registry import ModelRegistry, SqlModelStore


def test_model_versions_round_trip_through_sqlite(tmp_path) -> None:
    from voltloop.db.migrate import init_database, open_database

    url = f"sqlite:///{tmp_path / 'voltloop.db'}"
    init_database(url)
    engine = open_database(url)
    try:
        registry = ModelRegistry(SqlModelStore(engine))
        state = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.zeros(3)}
        first = registry.register(
            kind="materials_gnn",
            name="olivine-ensemble",
            state=state,
            training_hash="abc",
            hyperparameters={"hidden": 32},
            metrics={"coverage90": 0.9},
        )
        second = registry.register(
            kind="materials_gnn", name="olivine-ensemble", state=state, training_hash="def"
        )
        assert (first.version, second.version) == (1, 2)
        loaded = registry.load_state("olivine-ensemble", version=1)
        assert torch.equal(loaded["weight"], state["weight"])
        record = registry.store.get("olivine-ensemble")
        assert record.version == 2 and record.training_set_hash == "def"
        assert registry.store.get("olivine-ensemble", 1).metrics == {"coverage90": 0.9}
    finally:
        engine.dispose()
