"""``voltloop models list|show|evaluate`` against a database with stored versions."""

from __future__ import annotations

import json

import pytest

from voltloop.db.engine import write_session
from voltloop.orchestrator.cli import main
from voltloop.surrogates.lifetime import synthetic, training

from .conftest import add_campaign, add_cell

KW = {"curve_cycles": (10, 100), "eis_every": 0}


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    out, err = capsys.readouterr()
    return int(stop.value.code or 0), out, err


def test_list_show_evaluate(engine, capsys) -> None:
    url = str(engine.url)
    history = [c.to_dict() for c in synthetic.make_cells(12, seed=8, low=300, high=700, **KW)]
    cid = add_campaign(engine)
    for i, life in enumerate((330.0, 450.0, 620.0)):
        add_cell(engine, cid, synthetic.make_cell(life, 300 + i, **KW))
    with write_session(engine) as session:
        version = training.pretrain(session, history)

    code, out, _ = _run(capsys, "models", "list", "--db", url, "--json")
    assert code == 0
    listed = json.loads(out)["model_versions"]
    assert [v["id"] for v in listed] == [version]
    assert listed[0]["kind"] == "lifetime" and listed[0]["metrics"]["n_cells"] == 12

    code, out, _ = _run(capsys, "models", "show", str(version), "--db", url, "--json")
    shown = json.loads(out)
    assert code == 0 and "log_var_dq" in shown["coefficients_per_std"]

    code, out, _ = _run(
        capsys,
        "models",
        "evaluate",
        str(version),
        "--campaign",
        "fastcharge",
        "--db",
        url,
        "--json",
    )
    figures = json.loads(out)
    assert code == 0 and figures["n_cells"] == 3 and figures["mape"] < 0.15

    code, _, err = _run(capsys, "models", "show", "999", "--db", url)
    assert code == 2 and "no model version 999" in err
