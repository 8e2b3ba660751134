"""fit/predict over a real (SQLite) database, model versions stored without pickle."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import ExperimentStatus
from voltloop.db.models import ModelVersion, Prediction
from voltloop.surrogates.lifetime import synthetic, training
from voltloop.surrogates.lifetime.dataset import MissingDataError

from .conftest import add_campaign, add_cell

KW = {"curve_cycles": (10, 100), "eis_every": 100}


def test_database_round_trip_gives_the_same_features(engine) -> None:
    cid = add_campaign(engine)
    cell = synthetic.make_cell(400.0, 1, **KW)
    eid = add_cell(engine, cid, cell)
    with read_session(engine) as session:
        back = training.cell_from_db(session, eid, (10, 100))
    assert back.end_of_life_cycle == cell.end_of_life_cycle
    assert back.nominal_capacity_Ah == pytest.approx(1.1)
    assert np.allclose(back.summary["discharge_capacity_Ah"], cell.summary["discharge_capacity_Ah"])
    from voltloop.surrogates.lifetime.features import severson_features

    a, b = severson_features(cell), severson_features(back)
    assert a["log_var_dq"] == pytest.approx(b["log_var_dq"], abs=1e-3)  # float32 series
    assert len(back.spectra) == len(cell.spectra)


def test_pretrain_fit_predict_cycle(engine) -> None:
    history = [c.to_dict() for c in synthetic.make_cells(24, seed=5, low=300, high=700, **KW)]
    cid = add_campaign(engine)
    with write_session(engine) as session:
        pretrained = training.pretrain(session, history)
        assert training.latest_version_id(session, cid) == pretrained
    live = synthetic.make_cell(500.0, 99, **KW)
    eid = add_cell(engine, cid, live, last_cycle=100, status=ExperimentStatus.EARLY_PREDICTED)
    with write_session(engine) as session:
        with pytest.raises(MissingDataError, match="has seen 60"):
            training.predict(session, eid, 60)
        result = training.predict(session, eid, 100)
    assert result.model_version_id == pretrained
    assert abs(result.life - live.end_of_life_cycle) / live.end_of_life_cycle < 0.1
    assert result.lower < result.life < result.upper and result.std > 0
    with read_session(engine) as session:
        rows = session.scalars(select(Prediction)).all()
        assert [(r.experiment_id, r.model_version_id, r.cycles_seen) for r in rows] == [
            (eid, pretrained, 100)
        ]
        version = session.get(ModelVersion, pretrained)
        assert version.artifact_format == "npz" and b"pickle" not in version.artifact[:100]
    # too few campaign cells: the pretrained version stays in use
    with write_session(engine) as session:
        report = training.fit(session, "fastcharge")
    assert not report.trained and report.model_version_id == pretrained
    for i, life in enumerate((350.0, 420.0, 480.0, 560.0, 610.0, 700.0)):
        add_cell(engine, cid, synthetic.make_cell(life, 200 + i, **KW))
    with write_session(engine) as session:
        report = training.fit(session, "fastcharge", history=history)
        assert report.trained and report.n_cells == 30
        assert training.latest_version_id(session, cid) == report.model_version_id
        again = training.predict(session, eid, 100)
    assert again.model_version_id == report.model_version_id
    assert abs(again.life - live.end_of_life_cycle) / live.end_of_life_cycle < 0.1


def test_no_model_yet_is_a_clear_error(engine) -> None:
    cid = add_campaign(engine)
    eid = add_cell(engine, cid, synthetic.make_cell(400.0, 3, **KW), last_cycle=100)
    with (
        write_session(engine) as session,
        pytest.raises(training.UnknownModelError, match="pretrain"),
    ):
        training.predict(session, eid, 100)


def test_sequence_version_round_trip(engine) -> None:
    from voltloop.surrogates.lifetime.sequence import SequenceConfig
    from voltloop.surrogates.lifetime.sequence_training import fit_sequence, predict_sequence

    history = [c.to_dict() for c in synthetic.make_cells(10, seed=6, low=300, high=600, **KW)]
    cid = add_campaign(engine)
    live = synthetic.make_cell(450.0, 77, **KW)
    eid = add_cell(engine, cid, live, last_cycle=100, status=ExperimentStatus.EARLY_PREDICTED)
    config = SequenceConfig(hybrid=True, stride=10, epochs=15, hidden=8)
    with write_session(engine) as session:
        version = fit_sequence(session, history=history, config=config)
        life, censored = predict_sequence(session, eid, 100, version)
        with pytest.raises(training.UnknownModelError):
            training.predict(session, eid, 100, model_version_id=version)  # not an elastic net
    assert np.isfinite(life) and 100 < life <= 3000
    with read_session(engine) as session:
        rows = session.scalars(select(Prediction)).all()
        assert len(rows) == (0 if censored else 1)
        assert session.get(ModelVersion, version).kind == "lifetime_sequence"
