"""A materials campaign's loading sheet on a real SQLite database with a fake cycler:
every cell names the material to build it from — in the ``loading_sheet`` event, the
printed sheet and the CSV — and a material missing from the pool event is named by
its formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from voltloop.campaigns.loading import load_campaign
from voltloop.campaigns.materials_pool import build_pool
from voltloop.db.engine import read_session, write_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Event
from voltloop.orchestrator.context import EngineContext, EngineSettings
from voltloop.orchestrator.engine import CampaignEngine, register_campaign
from voltloop.orchestrator.materials_run import register_pool, sheet_materials
from voltloop.orchestrator.operator_desk import LoadingDesk, OperatorSettings
from voltloop.orchestrator.ports import Proposal, ProposalBatch
from voltloop.orchestrator.testing import FakeCycler

from .conftest import HandClock

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "materials-ci.toml"


class PoolOrderProposer:
    """Proposes the pool's materials in order (no model)."""

    def __init__(self, material_ids: list[int]) -> None:
        self.material_ids = material_ids

    def propose(self, *, observations, pending, tested, q, seed) -> ProposalBatch:
        seen = {int(p["material_id"]) for p in [*pending, *tested]}
        picks = [m for m in self.material_ids if m not in seen][:q]
        return ProposalBatch(
            [Proposal({"material_id": float(m)}, material_id=m) for m in picks], reason="order"
        )


def test_every_cell_of_a_materials_sheet_names_its_material(sqlite_db_url, tmp_path) -> None:
    spec = load_campaign(EXAMPLE).model_copy(update={"eis": None})
    db = open_database(sqlite_db_url)
    try:
        campaign_id = register_campaign(db, spec)
        pool = register_pool(db, campaign_id, build_pool(spec))
        cfg = spec.instruments.cyclers[0]
        cycler = FakeCycler(cfg.url, cfg.channels)
        announced: list[str] = []
        settings = OperatorSettings(reminder_every_s=600, timeout_s=3600, sheet_dir=tmp_path)
        desk = LoadingDesk(
            db, campaign_id, spec.name, settings, announce=announced.append, now=HandClock()
        )
        engine = CampaignEngine(
            EngineContext(
                db=db,
                campaign_id=campaign_id,
                campaign_name=spec.name,
                spec=spec,
                cyclers={cfg.url: cycler},
                potentiostat=None,
                proposer=PoolOrderProposer([m.material_id for m in pool]),
                predictor=None,
                operator=desk,
                compile_protocol=lambda parameters, run_on: {
                    "protocol": {"max_cycles": 20, "life": 500},
                    "safety": {"max_temperature_C": 55.0},
                },
                settings=EngineSettings(heartbeat_s=0.0),
            )
        )
        for _ in range(20):
            engine.step()
            sheet = desk.pending()
            if sheet is not None:
                break
        else:
            raise AssertionError("no loading sheet was issued")

        expected = pool[: spec.batch_size]
        # the event (and so the Prefect form, which prints it): label and formula first
        assert [c.parameters for c in sheet.cells] == [
            {"material_label": m.label, "formula": m.formula, "material_id": float(m.material_id)}
            for m in expected
        ]
        printed = "\n".join(announced)
        for cell, member in zip(sheet.cells, expected, strict=True):
            line = next(x for x in printed.splitlines() if cell.cell_id in x)
            assert f"material_label={member.label}, formula={member.formula}" in line
        # the CSV: the material's formula, then its label, then the candidate's parameters
        rows = list(csv.DictReader(io.StringIO(Path(sheet.path).read_text())))
        header = list(rows[0])
        assert header[header.index("material") : header.index("material") + 3] == [
            "material",
            "material_label",
            "material_id",
        ]
        assert [(r["material"], r["material_label"], r["material_id"]) for r in rows] == [
            (m.formula, m.label, str(m.material_id)) for m in expected
        ]

        # a material the pool event does not label is named by its formula
        with write_session(db) as session:
            event = session.scalar(select(Event).where(Event.kind == "materials_pool"))
            payload = dict(event.payload)
            payload["labels"] = ["?"] + payload["labels"][1:]
            payload["material_ids"] = [-1] + payload["material_ids"][1:]
            event.payload = payload
        with read_session(db) as session:
            found = sheet_materials(session, campaign_id, [c.experiment_id for c in sheet.cells])
        first = found[sheet.cells[0].experiment_id]
        assert (first.material_id, first.label) == (expected[0].material_id, expected[0].formula)
        assert found[sheet.cells[1].experiment_id].label == expected[1].label
        with read_session(db) as session:
            assert sheet_materials(session, campaign_id, []) == {}
    finally:
        db.dispose()
