"""The simulated-lab history generator emits consistent cells and caches them safely."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.sim.history import (
    HistoryConfig,
    generate_history,
    load_history,
    save_history,
)
from voltloop.surrogates.lifetime.dataset import CellHistory

CONFIG = HistoryConfig(n_cells=3, batch_size=3, max_cycles=40, record_cycles=12, seed=7)


@pytest.fixture(scope="module")
def cells() -> list[dict]:
    return generate_history(CONFIG)


def test_cells_are_consistent_with_their_capacities(cells: list[dict]) -> None:
    assert len(cells) == 3
    assert len({c["cell_id"] for c in cells}) == 3
    for cell in cells:
        q = cell["discharge_capacity_Ah"]
        assert q.shape == cell["cycle_index"].shape
        assert np.all(np.isfinite(q)) and np.all(q > 0)
        threshold = CONFIG.eol_fraction * cell["nominal_capacity_Ah"]
        eol = cell["end_of_life_cycle"]
        if eol is None:
            assert np.all(q[1:] >= threshold)
        else:
            assert q[eol] < threshold and np.all(q[1:eol] >= threshold)
        assert set(cell["protocol"]) == {"CC1", "CC2", "CC3", "CC4"}


def test_early_cycles_have_summaries_and_raw_curves_later_ones_nan(cells: list[dict]) -> None:
    for cell in cells:
        n = cell["cycle_index"].size
        early = min(n, CONFIG.record_cycles + 1)
        for key in ("charge_time_s", "temperature_max_C", "internal_resistance_ohm"):
            assert np.all(np.isfinite(cell[key][1:early])), key
            assert np.all(np.isnan(cell[key][early:])), key
        for c in range(1, early):
            curve = cell["discharge_curves"][c]
            assert curve["voltage_V"].size >= 10
            assert np.all(np.diff(curve["capacity_Ah"]) >= 0)
        history = CellHistory.from_dict(cell)
        assert history.n_cycles == n


def test_eis_checkpoints_are_measured(cells: list[dict]) -> None:
    spectra = cells[0]["spectra"]
    assert spectra, "the example campaign measures EIS at start of life"
    z = spectra[0]["impedance_ohm"]
    assert np.iscomplexobj(z) and np.all(np.isfinite(z)) and np.all(z.real > 0)


def test_cache_round_trip_without_pickle(cells: list[dict], tmp_path) -> None:
    path = tmp_path / "history.npz"
    save_history(cells, path, CONFIG)
    again, config = load_history(path)
    assert config["seed"] == CONFIG.seed
    for a, b in zip(cells, again, strict=True):
        assert a["cell_id"] == b["cell_id"] and a["end_of_life_cycle"] == b["end_of_life_cycle"]
        assert np.array_equal(a["discharge_capacity_Ah"], b["discharge_capacity_Ah"])
        assert sorted(a["discharge_curves"]) == sorted(b["discharge_curves"])
        assert len(a["spectra"]) == len(b["spectra"])
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
