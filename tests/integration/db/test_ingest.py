"""The ingest path: bulk, idempotent cycles; spectra, predictions, events; read-back."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from voltloop.db.cycles import CycleData, CycleSummary
from voltloop.db.engine import read_session, write_session
from voltloop.db.errors import InvalidRecordError, UnknownExperimentError
from voltloop.db.ingest import (
    append_cycles,
    count_cycles,
    record_event,
    store_eis_spectrum,
    store_prediction,
)
from voltloop.db.models import Cycle, CycleSeries, Event, Experiment, ModelVersion
from voltloop.db.readback import cycle_series, cycle_summaries, eis_spectra, iter_cycle_series
from voltloop.db.testing import synthetic_cycle_series

pytestmark = pytest.mark.integration


def _cycles(indexes: range, n_samples: int = 200) -> list[CycleData]:
    return [
        CycleData.from_series(i, synthetic_cycle_series(i, n_samples=n_samples)) for i in indexes
    ]


def test_append_then_read_back_summaries_and_series(engine: Engine, experiment_id: str) -> None:
    cycles = _cycles(range(5))
    with write_session(engine) as session:
        assert append_cycles(session, experiment_id, cycles, records_ingested=1000) == 5
    with read_session(engine) as session:
        summaries = cycle_summaries(session, experiment_id)
        series = cycle_series(session, experiment_id, 3)
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None and experiment.records_ingested == 1000
    np.testing.assert_array_equal(summaries["cycle_index"], np.arange(5))
    assert summaries["cycle_index"].dtype == np.int64
    expected = [c.summary.discharge_capacity_ah for c in cycles]
    np.testing.assert_allclose(summaries["discharge_capacity_ah"], expected)
    assert np.all(np.isnan(summaries["internal_resistance_ohm"]))
    assert set(series) == {"t_s", "voltage_V", "current_A", "temperature_C", "charge_Ah",
                           "discharge_Ah", "step"}  # fmt: skip
    for name, values in cycles[3].series.items():
        np.testing.assert_array_equal(series[name], values)
        assert series[name].dtype == values.dtype


def test_resending_cycles_never_duplicates(engine: Engine, experiment_id: str) -> None:
    with write_session(engine) as session:
        assert append_cycles(session, experiment_id, _cycles(range(0, 4))) == 4
    with write_session(engine) as session:
        # overlap 2..3, new 4..5, and a duplicate within the batch
        batch = _cycles(range(2, 6)) + _cycles(range(5, 6))
        assert append_cycles(session, experiment_id, batch) == 2
    with write_session(engine) as session:
        assert append_cycles(session, experiment_id, _cycles(range(0, 6))) == 0
    with read_session(engine) as session:
        assert count_cycles(session, experiment_id) == 6
        np.testing.assert_array_equal(
            cycle_summaries(session, experiment_id)["cycle_index"], np.arange(6)
        )


def test_a_failed_batch_stores_nothing(engine: Engine, experiment_id: str) -> None:
    good = _cycles(range(3))
    with pytest.raises(RuntimeError), write_session(engine) as session:
        append_cycles(session, experiment_id, good)
        raise RuntimeError("instrument fault in the middle of an ingest")
    with read_session(engine) as session:
        assert count_cycles(session, experiment_id) == 0


def test_concurrent_writers_of_the_same_cycles_store_each_once(
    engine: Engine, experiment_id: str
) -> None:
    cycles = _cycles(range(20), n_samples=50)
    counts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def ingest() -> None:
        try:
            barrier.wait(timeout=10)
            with write_session(engine) as session:
                counts.append(append_cycles(session, experiment_id, cycles))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(counts) == [0, 20]
    with read_session(engine) as session:
        assert count_cycles(session, experiment_id) == 20


def test_cycle_without_series_and_bad_input(engine: Engine, experiment_id: str) -> None:
    summary = CycleSummary(1.0, 0.99, 3.3, 3.1, 0.0, 3600.0, 0)
    with write_session(engine) as session:
        assert append_cycles(session, experiment_id, [CycleData(0, summary)]) == 1
    with read_session(engine) as session, pytest.raises(InvalidRecordError, match="no raw series"):
        cycle_series(session, experiment_id, 0)
    with read_session(engine) as session, pytest.raises(InvalidRecordError, match="no cycle 7"):
        cycle_series(session, experiment_id, 7)
    with pytest.raises(UnknownExperimentError), write_session(engine) as session:
        append_cycles(session, "00000000-0000-0000-0000-000000000000", [CycleData(0, summary)])
    with pytest.raises(InvalidRecordError, match="not finite"):
        CycleSummary(float("nan"), 0.99, 3.3, 3.1, 0.0, 3600.0, 0)
    with pytest.raises(InvalidRecordError, match="lacks required column"):
        CycleData(0, summary, {"t_s": np.zeros(3)})
    with pytest.raises(InvalidRecordError, match="unknown raw series column"):
        CycleData(0, summary, {**synthetic_cycle_series(0, n_samples=10), "pressure": [1] * 10})


def test_spectra_predictions_events(engine: Engine, experiment_id: str) -> None:
    frequency = np.logspace(4, -2, 61)
    impedance = 0.02 + 0.01 / (1 + 1j * frequency / 50.0) - 1j * 0.001 / np.sqrt(frequency)
    with write_session(engine) as session:
        assert store_eis_spectrum(
            session, experiment_id, 0, frequency, impedance,
            linkk_residual=0.004, circuit="R0-p(R1,C1)", circuit_parameters={"R0": 0.02},
        )  # fmt: skip
        assert not store_eis_spectrum(session, experiment_id, 0, frequency, impedance)
        assert store_eis_spectrum(session, experiment_id, 100, frequency, impedance * 1.1)
        model = ModelVersion(kind="lifetime", name="elasticnet", version=1, training_set_hash="h")
        session.add(model)
        session.flush()
        assert store_prediction(session, experiment_id, model.id, 100, 850.0, 120.0)
        assert not store_prediction(session, experiment_id, model.id, 100, 851.0, 120.0)
        event_id = record_event(
            session, "warning", "safety", "peak temperature 44.8 C",
            experiment_id=experiment_id, payload={"temperature_C": 44.8},
        )  # fmt: skip
        assert event_id > 0
    with read_session(engine) as session:
        spectra = eis_spectra(session, experiment_id)
        assert [s.cycle_index for s in spectra] == [0, 100]
        np.testing.assert_array_equal(spectra[0].frequency_hz, frequency)
        np.testing.assert_array_equal(spectra[1].impedance_ohm, impedance * 1.1)
        assert spectra[0].impedance_ohm.dtype == np.complex128
        assert spectra[0].circuit_parameters == {"R0": 0.02}
        event = session.scalars(select(Event)).one()
        assert event.payload == {"temperature_C": 44.8} and event.level == "warning"
    with pytest.raises(InvalidRecordError, match="equal length"), write_session(engine) as s:
        store_eis_spectrum(s, experiment_id, 5, frequency, impedance[:-1])


def test_iter_series_and_cascade_delete(engine: Engine, experiment_id: str) -> None:
    with write_session(engine) as session:
        append_cycles(session, experiment_id, _cycles(range(3), n_samples=30))
    with read_session(engine) as session:
        assert [i for i, _ in iter_cycle_series(session, experiment_id)] == [0, 1, 2]
    with write_session(engine) as session:
        session.delete(session.get(Experiment, experiment_id))
    with read_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Cycle)) == 0
        assert session.scalar(select(func.count()).select_from(CycleSeries)) == 0


def test_summaries_subset_empty_and_unknown_columns(engine: Engine, experiment_id: str) -> None:
    with read_session(engine) as session:
        empty = cycle_summaries(session, experiment_id, ["discharge_capacity_ah"])
        assert list(empty) == ["cycle_index", "discharge_capacity_ah"]
        assert empty["cycle_index"].shape == (0,) and empty["cycle_index"].dtype == np.int64
        with pytest.raises(InvalidRecordError, match="unknown cycle summary column"):
            cycle_summaries(session, experiment_id, ["discharge_capacity_ah; DROP TABLE cycle"])
    with write_session(engine) as session:
        append_cycles(session, experiment_id, _cycles(range(2), n_samples=20))
        # uncommitted rows of the same transaction are visible to the read
        got = cycle_summaries(session, experiment_id, ["sample_count", "cv_time_s"])
    np.testing.assert_array_equal(got["sample_count"], [20, 20])
    assert got["sample_count"].dtype == np.int64 and got["cv_time_s"].dtype == np.float64


def test_same_session_sees_new_experiment_and_ingest_position(engine: Engine) -> None:
    from voltloop.db.models import Campaign

    with write_session(engine) as session:
        campaign = Campaign(name="same-session", kind="protocol", spec={})
        session.add(campaign)
        session.flush()
        experiment = Experiment(campaign_id=campaign.id)
        session.add(experiment)  # not flushed: append_cycles must flush it first
        assert append_cycles(session, experiment.id, _cycles(range(2), n_samples=20),
                             records_ingested=40) == 2  # fmt: skip
        assert experiment.records_ingested == 40
