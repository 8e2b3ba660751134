"""``voltloop report``: one self-contained HTML page about a campaign, and loading sheets.

:func:`load_report` reads a campaign read-only (``report_data``), :func:`render_html`
turns it into one page — inline SVG figures (``report_plots``) and the tables
behind them, plain CSS, no scripts and no external assets — and
:func:`write_report` / :func:`write_loading_sheet` write files atomically (a
temporary file in the target folder, then a rename), so a reader never sees
half a page. See docs/report.md and docs/decisions/0080–0082.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from voltloop.orchestrator.report_model import (
    ExperimentRow,
    LoadingSheetRow,
    ReportData,
    loading_sheet,
)


class ReportError(ValueError):
    """Bad input to the report command (unknown round, unwritable output)."""

    exit_code = 2


def load_report(
    url: str, campaign: str, *, event_limit: int = 200, spectra_experiments: int = 6
) -> ReportData:
    """Open ``url`` read-only and gather ``campaign`` (database errors propagate)."""
    from voltloop.db.engine import mask_url, read_session
    from voltloop.db.migrate import open_database
    from voltloop.orchestrator.report_data import gather_report

    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            return gather_report(
                session,
                campaign,
                database=mask_url(url),
                event_limit=event_limit,
                spectra_experiments=spectra_experiments,
            )
    finally:
        db.dispose()


# --- formatting -------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _time(value: dt.datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _params(parameters: dict[str, Any] | None) -> str:
    if not parameters:
        return "–"
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in parameters.items()
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "") -> str:
    """An HTML table; cells are given already escaped (or as trusted markup)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cls = ""
        if isinstance(row, _Row):
            cls = f' class="{row.css}"'
            row = row.cells
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    if not body:
        return '<p class="note">Nothing to list.</p>'
    return (
        f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


class _Row:
    """A table row with a CSS class (e.g. an event's level)."""

    def __init__(self, cells: Sequence[str], css: str) -> None:
        self.cells, self.css = cells, css


def _status(status: str) -> str:
    return f'<span class="st st-{_e(status)}">{_e(status)}</span>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


# --- sections ---------------------------------------------------------------------------
def _summary(data: ReportData) -> str:
    cycles = sum(e.cycles_stored for e in data.experiments)
    hours = sum(e.channel_hours for e in data.experiments)
    observed = [c.observed_life for c in data.candidates if c.observed_life is not None]
    cards = [
        ("status", _status(data.status)),
        ("rounds", f"{sum(r.status == 'completed' for r in data.rounds)} / {len(data.rounds)}"),
        ("candidates", str(len(data.candidates))),
        ("experiments", str(len(data.experiments))),
        ("cycles stored", f"{cycles:,}"),
        ("channel time", f"{hours:,.0f} h"),
    ]
    rec = data.recommendation
    if data.kind == "materials":
        metric = (rec.metric if rec else None) or "objective"
        best = _num(rec.objective) if rec and rec.objective is not None else "–"
        cards.append((f"recommended {metric}", best))
    else:
        cards.append(("best observed life", _num(max(observed)) if observed else "–"))
    items = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>'
                    for k, v in cards)  # fmt: skip
    objectives = ", ".join(f"{o.direction} {o.metric}" for o in data.objectives) or "–"
    facts = [
        ("kind", _e(data.kind)),
        ("objectives", _e(objectives)),
        ("seed", _e(data.seed)),
        ("end of life", f"{_num(data.eol_threshold_ah, 3)} Ah" if data.eol_threshold_ah else "–"),
        ("created", _time(data.created_at)),
        ("updated", _time(data.updated_at)),
        ("database", f"<code>{_e(data.database)}</code>"),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return f'<div class="cards">{items}</div><table class="facts">{rows}</table>'


def _recommendation(data: ReportData) -> str:
    rec = data.recommendation
    if rec is None:
        return '<p class="note">No recommendation yet: the campaign has not been finalised.</p>'
    if rec.candidate_id is None:
        return f'<p class="note">{_e(rec.message)}</p>'
    candidate = data.candidate(rec.candidate_id)
    rows = [("candidate", _e(rec.candidate_id))]
    if rec.label or rec.formula:
        rows.append(("material", _e(" ".join(x for x in (rec.label, rec.formula and
                                                         f"({rec.formula})") if x))))  # fmt: skip
    else:
        rows.append(("parameters", _e(_params(rec.parameters))))
    rows.append((rec.metric or "objective", _num(rec.objective)))
    if candidate is not None and data.kind == "materials":
        rows += [
            ("round", _e(candidate.round_index)),
            ("cells", _e(", ".join(e.cell_id or e.id for e in data.experiments
                                    if e.candidate_id == candidate.id))),
        ]  # fmt: skip
    elif candidate is not None:
        source = candidate.observed_source or "–"
        rows += [
            ("observed life", f"{_num(candidate.observed_life)} ({_e(source)})"),
            ("round", _e(candidate.round_index)),
            ("surrogate prediction", "–" if candidate.predicted_mean is None else
                                     f"{_num(candidate.predicted_mean)} ± "
                                     f"{_num(candidate.predicted_std)}"),
            ("cells", _e(", ".join(e.cell_id or e.id for e in data.experiments
                                    if e.candidate_id == candidate.id))),
        ]  # fmt: skip
    if rec.rule:
        rows.append(("chosen as", _e(rec.rule)))
    rows.append(("recorded", _time(rec.created_at)))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts rec">{body}</table>' + _confirmed(rec)


def _confirmed(rec: Any) -> str:
    """The confirmation round's protocols: measured lives against the posterior mean
    each was chosen with, longest mean measured life first."""
    if not rec.confirmed:
        return ""
    order = sorted(rec.confirmed, key=lambda c: -(c.get("mean_life") or float("-inf")))
    rows = []
    for c in order:
        chosen = c.get("parameters") == rec.parameters
        predicted = c.get("predicted_mean")
        rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in (
            ("<b>" if chosen else "") + _e(_params(c.get("parameters") or {}))
            + ("</b>" if chosen else ""),
            _e(", ".join([str(life) for life in c.get("lives") or []]
                         + [f"≥ {ran}" for ran in c.get("censored") or []]) or "–"),
            _num(c.get("mean_life")),
            "–" if predicted is None else
            f"{_num(predicted)} ± {_num(c.get('predicted_std'))}",
            _num(c.get("peak_temperature_C"), 1),
            _e(c.get("unfinished", 0)),
        )) + "</tr>")  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in (
        "confirmed protocol", "measured lives", "mean", "posterior mean when chosen",
        "peak °C", "cells without end of life",
    ))  # fmt: skip
    return (
        "<h3>Confirmation round</h3><table><thead><tr>" + head + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )  # fmt: skip


def _figure(fig: Any) -> str:
    if fig.svg is None:
        return f'<div class="fig"><h3>{_e(fig.title)}</h3><p class="note">{_e(fig.note)}</p></div>'
    return (f'<figure class="fig" id="fig-{fig.key}"><h3>{_e(fig.title)}</h3>{fig.svg}'
            f"<figcaption>{_e(fig.caption)}</figcaption></figure>")  # fmt: skip


def _rounds(data: ReportData) -> str:
    statuses = sorted({e.status for e in data.experiments})
    rows = []
    for r in data.rounds:
        counts = [sum(e.round_index == r.index and e.status == s for e in data.experiments)
                  for s in statuses]  # fmt: skip
        rows.append([_e(r.index), _status(r.status), _e(r.candidates), _time(r.started_at),
                     _time(r.ended_at), _duration(r.duration_s),
                     _e(", ".join(map(str, r.model_version_ids)) or "–"),
                     *(str(c) if c else "" for c in counts)])  # fmt: skip
    totals = data.experiments_by_status()
    rows.append(["<b>all</b>", "", _e(len(data.candidates)), "", "", "", "",
                 *(f"<b>{totals.get(s, 0)}</b>" for s in statuses)])  # fmt: skip
    headers = ["round", "status", "candidates", "started", "ended", "took", "model versions",
               *statuses]  # fmt: skip
    return _table(headers, rows, css="num")


def _loading_sheets(data: ReportData) -> str:
    names = data.parameter_names
    parts = []
    for r in data.rounds:
        sheet = loading_sheet(data, r.index)
        rows = [[f"<code>{_e(s.cell_id)}</code>", _e(s.candidate_id), _e(s.cycler_url or "–"),
                 _e("–" if s.channel is None else s.channel), _status(s.status),
                 *(_e(_fmt_param(s.parameters.get(n))) for n in names),
                 *([_e(s.material_text or "–")] if any(x.material for x in sheet) else []),
                 f"<code>{_e(s.experiment_id[:8])}</code>"] for s in sheet]  # fmt: skip
        material = ["material"] if any(x.material for x in sheet) else []
        headers = ["cell id", "candidate", "cycler", "channel", "status", *names, *material,
                   "experiment"]  # fmt: skip
        parts.append(f"<h3>Round {r.index}</h3>" + _table(headers, rows))
    if not parts:
        return '<p class="note">No rounds yet, so no loading sheets.</p>'
    hint = ('<p class="hint">Export a round as CSV: <code>voltloop report '
            f"{_e(data.name)} --loading-sheet ROUND --out sheet.csv</code></p>")  # fmt: skip
    return hint + "".join(parts)


def _fmt_param(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else ("–" if value is None else str(value))


def _candidates(data: ReportData) -> str:
    names = data.parameter_names
    extra = sorted({m for c in data.candidates for m in c.metrics if m != "cycle_life"})
    rows = []
    for c in data.candidates:
        mine = [e for e in data.experiments if e.candidate_id == c.id]
        predictions = [e.prediction for e in mine if e.prediction is not None]
        measured = [e.measured_life for e in mine if e.measured_life is not None]
        rows.append([_e(c.id), _e(c.round_index),
                     *(_e(_fmt_param(c.parameters.get(n))) for n in names),
                     *([_e(c.material_text or "–")] if any(x.material for x in data.candidates)
                       else []),
                     _num(c.acquisition_value, 3), _num(c.predicted_mean), _num(c.predicted_std),
                     _e(", ".join(f"{p.predicted_life:.0f} ± {p.std or 0:.0f} @{p.cycles_seen}"
                                  for p in predictions) or "–"),
                     _e(", ".join(str(m) for m in measured) or "–"),
                     _num(c.observed_life) + (f" <small>({_e(c.observed_source)})</small>"
                                               if c.observed_source else ""),
                     *(_metric(m, c.metrics.get(m)) for m in extra),
                     _status(c.status)])  # fmt: skip
    headers = ["id", "round", *names,
               *(["material"] if any(x.material for x in data.candidates) else []),
               "acquisition", "surrogate mean", "surrogate std", "predicted life ± σ @cycles",
               "measured EOL", "observed life", *extra, "status"]  # fmt: skip
    return _table(headers, rows, css="num")


def _metric(metric: str, value: float | None) -> str:
    """A metric value with the precision its unit deserves."""
    digits = {"capacity_retention": 3, "discharge_capacity": 3, "thermal_risk": 2}.get(metric, 1)
    return _num(value, digits)


def _prediction(e: ExperimentRow) -> str:
    p = e.prediction
    if p is None:
        return "–"
    sigma = f" ± {p.std:.0f}" if p.std is not None else ""
    return f"{p.predicted_life:.0f}{sigma} @{p.cycles_seen} <small>({_e(p.model)})</small>"


def _experiments(data: ReportData) -> str:
    rows = [[f"<code>{_e(e.cell_id or e.id)}</code>", _e(e.round_index), _e(e.candidate_id),
             _e("–" if e.channel is None else e.channel), _status(e.status),
             _e(e.end_reason or "–"), _e(e.cycles_stored), _num(e.measured_life),
             _prediction(e), _num(e.peak_temperature_c, 1), _num(e.channel_hours, 1),
             _time(e.started_at), _time(e.ended_at)]
            for e in data.experiments]  # fmt: skip
    headers = ["cell", "round", "candidate", "channel", "status", "end reason", "cycles",
               "measured EOL", "prediction @cycles (model)", "peak T (°C)", "channel h",
               "started", "ended"]  # fmt: skip
    return _table(headers, rows, css="num")


def _events(data: ReportData) -> str:
    counts = ", ".join(f"{_e(k)} {v}" for k, v in sorted(data.event_counts.items()))
    levels = " ".join(f'<span class="lv lv-{_e(k)}">{_e(k)} {v}</span>'
                      for k, v in sorted(data.event_levels.items()))  # fmt: skip
    head = (f"<p>{data.events_total} events in all ({levels}); by kind: {counts or '–'}. "
            f"Showing the last {len(data.events)}, newest last.</p>")  # fmt: skip
    rows = [_Row([_time(e.created_at), f'<span class="lv lv-{_e(e.level)}">{_e(e.level)}</span>',
                  _e(e.kind), _e(e.cell_id or (e.experiment_id or "")[:8] or "–"), _e(e.message)],
                 f"ev-{e.level}") for e in data.events]  # fmt: skip
    return head + _table(["time (UTC)", "level", "kind", "cell", "message"], rows, css="events")


def _spec(data: ReportData) -> str:
    text = json.dumps(data.spec, indent=2, sort_keys=False, default=str)
    return f"<details><summary>campaign spec (JSON)</summary><pre>{_e(text)}</pre></details>"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;
margin:0 auto;max-width:1280px;padding:0 24px 48px;background:#fff}
header{border-bottom:3px solid #2b6cb0;margin-bottom:8px;padding:18px 0 8px}
h1{margin:0;font-size:24px}h2{border-bottom:1px solid #d5dbe1;padding-bottom:4px;margin-top:32px;
font-size:19px}h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:14px;color:#2b6cb0;text-decoration:none}
.sub{color:#5a6570}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #d5dbe1;border-radius:6px;padding:8px 14px;min-width:110px;
background:#f7f9fb}
.card .k{color:#5a6570;font-size:12px}.card .v{font-size:19px;font-weight:600}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e3e7eb;padding:3px 9px;text-align:left;vertical-align:top}
thead th{background:#eef2f6;position:sticky;top:0}
table.num td{font-variant-numeric:tabular-nums}
table.facts th{color:#5a6570;font-weight:500;padding-right:18px}
table.rec{border:2px solid #2f855a;border-radius:6px}
.fig{margin:10px 0 22px}.fig svg{max-width:100%;height:auto}
figcaption,.note,.hint{color:#5a6570;font-size:13px}.note{font-style:italic;background:#fbf8ec;
border-left:4px solid #d69e2e;padding:6px 10px}
.st{border-radius:4px;padding:0 6px;font-size:12px;background:#edf2f7}
.st-completed,.st-observed{background:#c6f6d5}.st-failed,.st-aborted{background:#fed7d7}
.st-safety_stopped{background:#feebc8}.st-running,.st-early_predicted{background:#bee3f8}
.lv{border-radius:4px;padding:0 5px;font-size:12px}.lv-warning{background:#feebc8}
.lv-error,.lv-critical{background:#fed7d7}.lv-info{background:#e2e8f0}.lv-debug{color:#718096}
tr.ev-error td,tr.ev-critical td{background:#fff5f5}tr.ev-warning td{background:#fffaf0}
pre{background:#f7f9fb;padding:10px;overflow:auto;font-size:12px}
code{font-size:12px;white-space:nowrap}
"""


def render_html(data: ReportData) -> str:
    """The whole page as one string: no scripts, no external URLs."""
    from voltloop.orchestrator.report_plots import all_figures

    figures = all_figures(data)
    sections = [
        ("summary", "Summary", _summary(data)),
        ("recommendation", "Recommendation", _recommendation(data)),
        ("plots", "Plots", "".join(_figure(f) for f in figures)),
        ("rounds", "Rounds and experiments by status", _rounds(data)),
        ("loading", "Loading sheets", _loading_sheets(data)),
        ("candidates", "Candidates", _candidates(data)),
        ("experiments", "Experiments", _experiments(data)),
        ("events", "Events", _events(data)),
        ("spec", "Campaign spec", _spec(data)),
    ]
    nav = "".join(f'<a href="#{a}">{_e(t.split(" ")[0])}</a>' for a, t, _ in sections)
    body = "".join(_section(a, t, b) for a, t, b in sections)
    description = f'<p class="sub">{_e(data.description)}</p>' if data.description else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>voltloop report: {_e(data.name)}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
        f"</head><body><header><h1>Campaign {_e(data.name)}</h1>{description}"
        f'<p class="sub">generated {_time(data.generated_at)} UTC by voltloop</p><nav>{nav}</nav>'
        f"</header>{body}</body></html>\n"
    )


# --- files ------------------------------------------------------------------------------
def check_output(path: Path) -> None:
    """Refuse early (before reading the database) an output whose folder does not exist."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise ReportError(f"cannot write {path}: folder {folder} does not exist")


def _readable_mode() -> int:
    """0666 less the process umask: the mode ``open()`` would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, text: str, *, newline: str | None = None) -> None:
    check_output(path)
    folder = path.resolve().parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _readable_mode())  # mkstemp makes 0600; a report is for sharing
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_report(data: ReportData, out: Path) -> int:
    """Write the page to ``out`` atomically; returns its size in bytes."""
    page = render_html(data)
    _atomic_write(Path(out), page)
    return len(page.encode("utf-8"))


def loading_sheet_csv(data: ReportData, round_index: int) -> str:
    """A round's loading sheet as CSV text (one column per parameter)."""
    known = [r.index for r in data.rounds]
    if round_index not in known:
        listing = ", ".join(map(str, known)) or "none yet"
        raise ReportError(
            f"campaign {data.name!r} has no round {round_index}; its rounds: {listing}"
        )
    rows: list[LoadingSheetRow] = loading_sheet(data, round_index)
    names = list(data.parameter_names)
    for row in rows:
        names += [n for n in row.parameters if n not in names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["round", "cell_id", "candidate_id", "cycler_url", "channel", "experiment_id",
                     "status", "material", "material_label", *names])  # fmt: skip
    for r in rows:
        writer.writerow([r.round_index, r.cell_id, r.candidate_id, r.cycler_url or "",
                         "" if r.channel is None else r.channel, r.experiment_id, r.status,
                         r.material or "", r.material_label or "",
                         *(_csv_value(r.parameters.get(n)) for n in names)])  # fmt: skip
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def write_loading_sheet(data: ReportData, round_index: int, out: Path) -> int:
    """Write one round's loading sheet as CSV to ``out`` atomically; returns the row count."""
    text = loading_sheet_csv(data, round_index)
    _atomic_write(Path(out), text, newline="")
    return text.count("\n") - 1


def check_csv_folder(folder: Path) -> None:
    if not Path(folder).is_dir():
        raise ReportError(f"--csv folder {folder} does not exist")


def write_loading_sheets(data: ReportData, folder: Path) -> list[Path]:
    """Every round's loading sheet as ``loading-sheet-round-N.csv`` in ``folder``."""
    folder = Path(folder)
    check_csv_folder(folder)
    paths = []
    for r in data.rounds:
        path = folder / f"loading-sheet-round-{r.index}.csv"
        write_loading_sheet(data, r.index, path)
        paths.append(path)
    return paths
