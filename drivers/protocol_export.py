"""Export compiled protocols through aurora_unicycler, saying what each format drops.

- ``voltloop-json``: everything (unicycler protocol, safety block, parameters,
  checkpoints); the lossless form.
- ``unicycler-json``: the unicycler protocol (steps, loops, record, V/I safety); not the
  cell temperature limit.
- ``pybamm``: CC / CV / rest steps with loops unrolled, one line per executed step; not
  EIS steps, the temperature limit or the V/I safety limits.
- ``neware``: CC / CV / rest / loop steps and V/I/capacity protection; not EIS steps or
  the temperature limit.
- ``biologic``: every step including PEIS (Modulo Bat); not the temperature limit, and
  currents above 1 A are refused (unicycler's writer has no booster ranges).

Nothing is dropped silently: a step a format cannot express is either omitted with
a note naming it, or — where omitting it would change the cell's history (a current
step) — the export is refused with :class:`ProtocolExportError`.
"""

from __future__ import annotations

import enum

from aurora_unicycler import ConstantCurrent, CyclingProtocol, ImpedanceSpectroscopy
from pydantic import BaseModel, ConfigDict, Field

from voltloop.drivers.protocols import CompiledProtocol
from voltloop.drivers.safety import step_current_A, step_label

#: Largest current unicycler's BioLogic writer has a range for (Modulo Bat without booster).
BIOLOGIC_MAX_CURRENT_mA = 1000.0  # noqa: N816
#: unicycler's PyBaMM writer refuses to unroll loops past this many executed steps.
PYBAMM_MAX_STEPS = 10_000


class ExportFormat(enum.StrEnum):
    VOLTLOOP_JSON = "voltloop-json"
    UNICYCLER_JSON = "unicycler-json"
    PYBAMM = "pybamm"
    NEWARE = "neware"
    BIOLOGIC = "biologic"


#: File suffix for each format.
SUFFIXES = {
    ExportFormat.VOLTLOOP_JSON: ".json",
    ExportFormat.UNICYCLER_JSON: ".json",
    ExportFormat.PYBAMM: ".txt",
    ExportFormat.NEWARE: ".xml",
    ExportFormat.BIOLOGIC: ".mps",
}


class ProtocolExportError(ValueError):
    """A protocol that a format cannot express without changing what the cell sees."""

    exit_code = 2


class ExportResult(BaseModel):
    """The exported text, its encoding, and what the format could not carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: ExportFormat
    content: str
    encoding: str = "utf-8"
    notes: list[str] = Field(default_factory=list)
    omitted_steps: list[int] = Field(default_factory=list, description="method indices")


def _temperature_note(compiled: CompiledProtocol, fmt: str) -> str:
    safety = compiled.safety
    return (
        f"{fmt} has no cell-temperature limit: voltloop's stop limit "
        f"{safety.max_temperature_C:g} °C ({safety.temperature_limit_source}) is not in this "
        "file; set it on the instrument or keep voltloop's monitoring on"
    )


def _without_eis(protocol: CyclingProtocol) -> tuple[CyclingProtocol, list[int]]:
    """A copy without ImpedanceSpectroscopy steps, and their method indices."""
    dropped = [i for i, s in enumerate(protocol.method) if isinstance(s, ImpedanceSpectroscopy)]
    if not dropped:
        return protocol, []
    kept = [s for i, s in enumerate(protocol.method) if i not in dropped]
    return protocol.model_copy(update={"method": kept}, deep=True), dropped


def _eis_note(protocol: CyclingProtocol, dropped: list[int], fmt: str) -> str:
    where = ", ".join(step_label(i, protocol.method[i]) for i in dropped[:3])
    more = f" and {len(dropped) - 3} more" if len(dropped) > 3 else ""
    return (
        f"{fmt} cannot express EIS: {len(dropped)} impedance_spectroscopy step(s) omitted "
        f"({where}{more}); the SOC setting and rests around them are kept"
    )


def export_protocol(compiled: CompiledProtocol, fmt: ExportFormat | str) -> ExportResult:
    """``compiled`` in format ``fmt``; raises ProtocolExportError where it cannot be done."""
    fmt = ExportFormat(fmt)
    protocol = compiled.protocol
    if fmt is ExportFormat.VOLTLOOP_JSON:
        return ExportResult(format=fmt, content=compiled.model_dump_json(indent=2) + "\n")
    if fmt is ExportFormat.UNICYCLER_JSON:
        return ExportResult(
            format=fmt,
            content=protocol.model_dump_json(indent=2) + "\n",
            notes=[_temperature_note(compiled, "unicycler JSON")],
        )
    if fmt is ExportFormat.PYBAMM:
        return _pybamm(compiled)
    if fmt is ExportFormat.NEWARE:
        stripped, dropped = _without_eis(protocol)
        notes = [_temperature_note(compiled, "Neware XML")]
        if dropped:
            notes.insert(0, _eis_note(protocol, dropped, "Neware XML"))
        try:
            xml = stripped.to_neware_xml()
        except (ValueError, NotImplementedError) as exc:
            raise ProtocolExportError(f"Neware export failed: {exc}") from None
        return ExportResult(
            format=fmt, content=_xml_with_notes(xml, notes), notes=notes, omitted_steps=dropped
        )
    return _biologic(compiled)


def _pybamm(compiled: CompiledProtocol) -> ExportResult:
    stripped, dropped = _without_eis(compiled.protocol)
    executed = _executed_steps(stripped)
    if executed > PYBAMM_MAX_STEPS:
        raise ProtocolExportError(
            f"PyBaMM experiments list every executed step (loops unrolled): this protocol runs "
            f"{executed} steps over {compiled.cycles} cycles, above unicycler's limit of "
            f"{PYBAMM_MAX_STEPS}; export fewer cycles (--cycles)"
        )
    notes = []
    if dropped:
        notes.append(_eis_note(compiled.protocol, dropped, "PyBaMM"))
    notes.append(_temperature_note(compiled, "A PyBaMM experiment"))
    notes.append("loops are unrolled: one line per executed step")
    try:
        lines = stripped.to_pybamm_experiment()
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        raise ProtocolExportError(f"PyBaMM export failed: {exc}") from None
    header = [f"# voltloop: {compiled.protocol.sample.name}"] + [f"# note: {n}" for n in notes]
    content = "\n".join([*header, *lines]) + "\n"
    return ExportResult(format=ExportFormat.PYBAMM, content=content, notes=notes,
                        omitted_steps=dropped)  # fmt: skip


def _biologic(compiled: CompiledProtocol) -> ExportResult:
    protocol = compiled.protocol
    capacity_Ah = (protocol.sample.capacity_mAh or 0.0) / 1000.0 or None
    too_big = []
    for i, step in enumerate(protocol.method):
        if isinstance(step, ConstantCurrent):
            current_mA = abs(step_current_A(step, capacity_Ah)) * 1000.0
            if current_mA > BIOLOGIC_MAX_CURRENT_mA:
                too_big.append(f"{step_label(i, step)} needs {current_mA:.0f} mA")
    if too_big:
        raise ProtocolExportError(
            "BioLogic export refused: unicycler's Modulo Bat writer has current ranges up to "
            f"{BIOLOGIC_MAX_CURRENT_mA:.0f} mA (no booster), and "
            + "; ".join(too_big[:4])
            + (f"; and {len(too_big) - 4} more" if len(too_big) > 4 else "")
        )
    top = max(compiled.safety.max_voltage_V + 0.5, 5.0)
    try:
        mps = protocol.to_biologic_mps(range_V=(0.0, top))
    except (ValueError, NotImplementedError) as exc:
        raise ProtocolExportError(f"BioLogic export failed: {exc}") from None
    return ExportResult(
        format=ExportFormat.BIOLOGIC,
        content=mps,
        encoding="cp1252",
        notes=[_temperature_note(compiled, "BioLogic MPS")],
    )


def _xml_with_notes(xml: str, notes: list[str]) -> str:
    """Put the notes in an XML comment after the declaration (``--`` is not allowed)."""
    comment = "<!-- voltloop notes:\n" + "\n".join(
        "  " + n.replace("--", "- -") for n in notes
    ) + "\n-->"  # fmt: skip
    head, sep, rest = xml.partition("\n")
    if head.startswith("<?xml"):
        return f"{head}{sep}{comment}\n{rest}"
    return f"{comment}\n{xml}"


def _executed_steps(protocol: CyclingProtocol) -> int:
    """How many steps run when every loop is unrolled (tags and loops not counted)."""
    method = list(protocol.method)
    tags = {s.tag: i for i, s in enumerate(method) if s.step == "tag"}

    def run(start: int, end: int) -> int:
        total = 0
        i = start
        while i < end:
            step = method[i]
            if step.step == "loop":
                i += 1
                continue
            # a loop closing later whose target is i: count its body once per pass
            closing = [
                j for j in range(i + 1, end)
                if method[j].step == "loop"
                and (tags.get(method[j].loop_to) if isinstance(method[j].loop_to, str)
                     else method[j].loop_to - 1) == i
            ]  # fmt: skip
            if closing and step.step == "tag":
                j = max(closing)
                total += method[j].cycle_count * run(i + 1, j)
                i = j + 1
                continue
            total += 0 if step.step == "tag" else 1
            i += 1
        return total

    return run(0, len(method))
