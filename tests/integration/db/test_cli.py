"""``voltloop db ...`` and ``voltloop status`` end to end, on both engines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, text

from voltloop.db.engine import make_engine, mask_url
from voltloop.db.migrate import head_revision
from voltloop.db.testing import free_port
from voltloop.orchestrator.cli import main

from .conftest import populate

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_init_then_query_campaigns_as_json(empty_db_url: str, capsys) -> None:
    code, _, err = cli(capsys, "db", "init", "--db", empty_db_url)
    assert code == 0 and "created the voltloop schema" in err
    code, _, err = cli(capsys, "db", "init", "--db", empty_db_url)
    assert code == 0 and "already initialised and up to date" in err
    code, out, _ = cli(capsys, "db", "query", "campaigns", "--format", "json", "--db", empty_db_url)
    assert code == 0
    assert json.loads(out) == {
        "query": "campaigns", "count": 0, "limit": 1000,
        "columns": ["name", "kind", "status", "seed", "rounds", "experiments", "created_at",
                    "updated_at"],
        "rows": [],
    }  # fmt: skip
    code, out, _ = cli(capsys, "db", "upgrade", "--json", "--db", empty_db_url)
    assert code == 0 and json.loads(out)["upgraded"] is False


def test_query_formats_and_errors(db_url: str, engine: Engine, capsys) -> None:
    ids = populate(engine)
    code, out, _ = cli(capsys, "db", "query", "experiments", "--campaign", "fastcharge",
                       "--round", "0", "--format", "csv", "--db", db_url)  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["experiment"] for r in rows} == set(ids["fastcharge"][:2])
    code, out, _ = cli(capsys, "db", "query", "rounds", "--db", db_url)
    assert code == 0 and "rounds (3)" in out and "running" in out
    hostile = "x'; DROP TABLE campaign; --"
    code, out, err = cli(capsys, "db", "query", "rounds", "--campaign", hostile, "--db", db_url)
    assert code == 2 and "unknown campaign" in err and "fastcharge" in err and out == ""
    assert "Traceback" not in err
    code, _, err = cli(capsys, "db", "query", "cycles", "--experiment", "nope", "--db", db_url)
    assert code == 2 and "not a UUID" in err
    code, out, _ = cli(capsys, "db", "query", "campaigns", "-f", "json", "--db", db_url)
    assert json.loads(out)["count"] == 2


def test_db_sql_reads_and_refuses_writes(db_url: str, engine: Engine, capsys) -> None:
    populate(engine)
    code, out, _ = cli(capsys, "db", "sql", "SELECT count(*) AS n FROM experiment",
                       "--format", "json", "--db", db_url)  # fmt: skip
    assert code == 0 and json.loads(out)["rows"] == [[5]]
    code, out, err = cli(capsys, "db", "sql", "DELETE FROM experiment", "--db", db_url)
    assert code == 2 and "read-only" in err and out == ""
    code, _, err = cli(capsys, "db", "sql",
                       "WITH x AS (SELECT 1) DELETE FROM experiment", "--db", db_url)  # fmt: skip
    assert code == 2 and "read-only" in err
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM experiment")).scalar() == 5


def test_status_all_and_one(db_url: str, engine: Engine, capsys) -> None:
    populate(engine)
    code, out, _ = cli(capsys, "status", "--json", "--db", db_url)
    overview = json.loads(out)
    assert code == 0 and [c["name"] for c in overview["campaigns"]] == ["fastcharge", "cathodes"]
    code, out, _ = cli(capsys, "status", "fastcharge", "--db", db_url)
    assert code == 0 and "rounds" in out and "completed 2" in out
    code, _, err = cli(capsys, "status", "nope", "--db", db_url)
    assert code == 2 and "known campaigns: cathodes, fastcharge" in err


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_every_table(
    db_url: str, engine: Engine, tmp_path: Path, capsys, fmt: str
) -> None:
    ids = populate(engine)
    out_dir = tmp_path / "export"
    code, out, _ = cli(capsys, "db", "export", "fastcharge", "--format", fmt, "--out",
                       str(out_dir), "--json", "--db", db_url)  # fmt: skip
    assert code == 0
    rows = json.loads(out)["rows"]
    assert rows["experiment"] == 4 and rows["cycle"] == 3 and rows["cycle_series"] == 3 * 40
    assert rows["eis_point"] == 9 and rows["prediction"] == 1 and rows["campaign"] == 1
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted(f"{name}.{fmt}" for name in rows)
    read = pq.read_table if fmt == "parquet" else pcsv.read_csv
    series = read(out_dir / f"cycle_series.{fmt}")
    assert series.column("experiment_id").to_pylist() == [ids["fastcharge"][0]] * 120
    assert series.column("cycle_index").to_pylist()[::40] == [0, 1, 2]
    assert 2.0 < min(series.column("voltage_V").to_pylist()) < 4.0
    campaign = read(out_dir / f"campaign.{fmt}")
    assert json.loads(campaign.column("spec")[0].as_py()) == {"rounds": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.")]


def test_export_refusals_and_failures_leave_nothing(
    db_url: str, engine: Engine, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(engine)
    exports = tmp_path / "exports"
    exports.mkdir()
    code, _, err = cli(capsys, "db", "export", "nope", "--out", str(exports / "x"),
                       "--db", db_url)  # fmt: skip
    assert code == 2 and "unknown campaign" in err
    busy = exports / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "db", "export", "fastcharge", "--out", str(busy), "--db", db_url)
    assert code == 2 and "not an empty directory" in err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]

    import voltloop.db.export as export_module

    def disk_full(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "_write_batches", disk_full)
    with pytest.raises(OSError, match="No space"):
        main(["db", "export", "fastcharge", "--out", str(exports / "y"), "--db", db_url])
    assert sorted(p.name for p in exports.iterdir()) == ["busy"]


def test_database_errors_are_one_line_messages(tmp_path: Path, capsys, sqlite_db_url: str) -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/voltloop"
    code, _, err = cli(capsys, "db", "query", "campaigns", "--db", url)
    assert code == 1 and "cannot open database" in err and "s3cret" not in err
    assert "Traceback" not in err
    code, _, err = cli(capsys, "status", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code != 0 and "voltloop db init" in err
    code, _, err = cli(capsys, "db", "query", "campaigns", "--db", "bogus://x")
    assert code == 2 and "unsupported database" in err
    engine = make_engine(sqlite_db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    code, _, err = cli(capsys, "status", "--db", sqlite_db_url)
    assert code == 1 and "migration mismatch" in err
    assert f"code expects {head_revision()}" in err
    # the URL as given, not the read-only engine's file:...?mode=ro form
    assert "mode=ro" not in err and mask_url(sqlite_db_url) in err
