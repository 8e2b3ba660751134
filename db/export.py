"""``voltloop db export``: a campaign's tables and raw series as Parquet or CSV files.

One file per table (campaign, round, candidate, material, channel, experiment,
cycle, cycle_series, eis_spectrum, eis_point, model_version, prediction, event).
``cycle_series`` and ``eis_point`` are long format: one row per sample/point
with its experiment id and cycle index. JSON columns are written as JSON text,
timestamps as UTC. Everything is written into a temporary sibling directory
that is renamed to the target only when complete, so a failure leaves nothing
half-written. Needs pyarrow (imported here only).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from .blobs import decode_arrays
from .cycles import SERIES_DTYPES, SUMMARY_FIELDS
from .engine import read_session
from .errors import InvalidRecordError
from .models import (
    Campaign,
    Candidate,
    Channel,
    Cycle,
    CycleSeries,
    EisSpectrum,
    Event,
    Experiment,
    Instrument,
    Material,
    ModelVersion,
    Prediction,
    Round,
)
from .queries import resolve_campaign


class ExportFormat(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    directory: Path
    rows: dict[str, int]  # table name -> rows written


def export_campaign(
    engine: Engine, campaign: str, out_dir: Path, fmt: ExportFormat | str
) -> ExportResult:
    """Write campaign ``campaign`` into ``out_dir`` (which must not exist or be empty)."""
    fmt = ExportFormat(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidRecordError(f"export target {out_dir} exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with read_session(engine) as session:
            rows = _write_all(session, resolve_campaign(session, campaign).id, staging, fmt)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out_dir, rows)


def _write_all(session: Session, campaign_id: int, staging: Path, fmt: ExportFormat) -> dict:
    import pyarrow as pa

    experiments = select(Experiment.id).where(Experiment.campaign_id == campaign_id)
    candidates = select(Candidate.material_id).where(Candidate.campaign_id == campaign_id)
    channels = select(Experiment.channel_id).where(Experiment.campaign_id == campaign_id)
    plain_tables: dict[str, Select] = {
        "campaign": select(Campaign.__table__).where(Campaign.id == campaign_id),
        "round": select(Round.__table__)
        .where(Round.campaign_id == campaign_id)
        .order_by(Round.round_index),
        "candidate": select(Candidate.__table__)
        .where(Candidate.campaign_id == campaign_id)
        .order_by(Candidate.id),
        "material": select(Material.__table__)
        .where(Material.id.in_(candidates))
        .order_by(Material.id),
        "channel": select(
            Channel.id,
            Channel.channel_index,
            Channel.state,
            Instrument.kind,
            Instrument.url,
            Instrument.identity,
        )
        .join(Instrument, Instrument.id == Channel.instrument_id)
        .where(Channel.id.in_(channels))
        .order_by(Channel.id),
        "experiment": select(Experiment.__table__)
        .where(Experiment.campaign_id == campaign_id)
        .order_by(Experiment.created_at, Experiment.id),
        "cycle": select(
            *(Cycle.__table__.c[n] for n in ("experiment_id", "cycle_index", *SUMMARY_FIELDS))
        )
        .where(Cycle.experiment_id.in_(experiments))
        .order_by(Cycle.experiment_id, Cycle.cycle_index),
        "eis_spectrum": select(*(c for c in EisSpectrum.__table__.c if c.name != "data"))
        .where(EisSpectrum.experiment_id.in_(experiments))
        .order_by(EisSpectrum.experiment_id, EisSpectrum.cycle_index),
        "model_version": select(*(c for c in ModelVersion.__table__.c if c.name != "artifact"))
        .where(ModelVersion.campaign_id == campaign_id)
        .order_by(ModelVersion.id),
        "prediction": select(Prediction.__table__)
        .where(Prediction.experiment_id.in_(experiments))
        .order_by(Prediction.id),
        "event": select(Event.__table__)
        .where(Event.campaign_id == campaign_id)
        .order_by(Event.created_at, Event.id),
    }
    counts: dict[str, int] = {}
    for name, statement in plain_tables.items():
        result = session.execute(statement)
        columns = list(result.keys())
        rows = result.all()
        data = {column: [_cell(row[i]) for row in rows] for i, column in enumerate(columns)}
        _write_table(pa.table(data) if rows else _empty(columns), staging / name, fmt)
        counts[name] = len(rows)
    experiment_ids = list(session.scalars(experiments.order_by(Experiment.id)))
    counts["cycle_series"] = _write_batches(
        _series_batches(session, experiment_ids), staging / "cycle_series", fmt, _series_schema()
    )
    counts["eis_point"] = _write_batches(
        _eis_batches(session, experiment_ids), staging / "eis_point", fmt, _eis_schema()
    )
    return counts


def _cell(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _empty(columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.table({c: pa.array([], type=pa.string()) for c in columns})


def _write_table(table: Any, stem: Path, fmt: ExportFormat) -> None:
    if fmt == ExportFormat.PARQUET:
        import pyarrow.parquet as pq

        pq.write_table(table, stem.with_suffix(".parquet"))
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, stem.with_suffix(".csv"))


def _series_schema() -> Any:
    import pyarrow as pa

    fields = [pa.field("experiment_id", pa.string()), pa.field("cycle_index", pa.int32())]
    fields += [pa.field(name, pa.from_numpy_dtype(dtype)) for name, dtype in SERIES_DTYPES.items()]
    return pa.schema(fields)


def _eis_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("experiment_id", pa.string()),
            ("cycle_index", pa.int32()),
            ("frequency_Hz", pa.float64()),
            ("z_real_ohm", pa.float64()),
            ("z_imag_ohm", pa.float64()),
        ]
    )


def _series_batches(session: Session, experiment_ids: list[str]) -> Iterator[dict[str, Any]]:
    table = Cycle.__table__
    stored = CycleSeries.__table__
    for experiment_id in experiment_ids:
        result = (
            session.connection()
            .execution_options(yield_per=200)
            .execute(
                select(table.c.cycle_index, stored.c.data)
                .join(stored, stored.c.cycle_id == table.c.id)
                .where(table.c.experiment_id == experiment_id)
                .order_by(table.c.cycle_index)
            )
        )
        for partition in result.partitions():
            pieces: dict[str, list[np.ndarray]] = {name: [] for name in SERIES_DTYPES}
            ids: list[int] = []
            counts: list[int] = []
            for cycle_index, blob in partition:
                series = decode_arrays(blob)
                n = len(series["t_s"])
                ids.append(cycle_index)
                counts.append(n)
                for name, dtype in SERIES_DTYPES.items():
                    values = series.get(name)
                    if values is None:  # column not kept for this cycle
                        fill = np.nan if dtype.kind == "f" else -1
                        values = np.full(n, fill, dtype=dtype)
                    pieces[name].append(values.astype(dtype, copy=False))
            total = int(sum(counts))
            batch: dict[str, Any] = {
                "experiment_id": [experiment_id] * total,
                "cycle_index": np.repeat(np.asarray(ids, dtype=np.int32), counts),
            }
            batch.update({name: np.concatenate(parts) for name, parts in pieces.items()})
            yield batch


def _eis_batches(session: Session, experiment_ids: list[str]) -> Iterator[dict[str, Any]]:
    for experiment_id in experiment_ids:
        rows = session.execute(
            select(EisSpectrum.cycle_index, EisSpectrum.data)
            .where(EisSpectrum.experiment_id == experiment_id)
            .order_by(EisSpectrum.cycle_index)
        ).all()
        for cycle_index, blob in rows:
            arrays = decode_arrays(blob)
            n = len(arrays["frequency_Hz"])
            yield {
                "experiment_id": [experiment_id] * n,
                "cycle_index": np.full(n, cycle_index, dtype=np.int32),
                **arrays,
            }


def _write_batches(
    batches: Iterator[dict[str, Any]], stem: Path, fmt: ExportFormat, schema: Any
) -> int:
    import pyarrow as pa

    if fmt == ExportFormat.PARQUET:
        import pyarrow.parquet as pq

        writer: Any = pq.ParquetWriter(stem.with_suffix(".parquet"), schema)
    else:
        import pyarrow.csv as pcsv

        writer = pcsv.CSVWriter(stem.with_suffix(".csv"), schema)
    written = 0
    try:
        for batch in batches:
            table = pa.table(batch, schema=schema)
            writer.write_table(table)
            written += table.num_rows
    finally:
        writer.close()
    return written
