"""Exports through unicycler say what each format cannot carry."""

from __future__ import annotations

import json
import xml.dom.minidom

import pytest

from voltloop.drivers.protocol_export import ProtocolExportError, export_protocol
from voltloop.drivers.protocols import CompiledProtocol, compile_candidate, compile_material_test

CANDIDATE = {"CC1": 5.2, "CC2": 5.2, "CC3": 4.8}


def test_pybamm_omits_eis_and_says_so(attia_spec) -> None:
    result = export_protocol(compile_candidate(attia_spec, CANDIDATE), "pybamm")
    assert result.omitted_steps == [2, 19]
    assert any("cannot express EIS: 2 impedance_spectroscopy" in n for n in result.notes)
    lines = [line for line in result.content.splitlines() if not line.startswith("#")]
    assert sum(line.startswith("Discharge at 4.0C") for line in lines) == 100
    assert lines[4] == "Charge at 5.2C for 138.46153846153845 seconds or until 3.6 V"
    assert "# note: PyBaMM cannot express EIS" in result.content


def test_pybamm_refuses_to_unroll_huge_protocols(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE, cycles=3000)
    with pytest.raises(ProtocolExportError, match=r"27244 steps over 3000 cycles.*--cycles"):
        export_protocol(compiled, "pybamm")


def test_neware_xml_is_valid_and_carries_notes(attia_spec) -> None:
    result = export_protocol(compile_candidate(attia_spec, CANDIDATE), "neware")
    document = xml.dom.minidom.parseString(result.content)
    assert document.documentElement.tagName == "root"
    assert "voltloop notes" in result.content and "cannot express EIS" in result.content
    step_info = document.getElementsByTagName("Step_Info")[0]
    assert int(step_info.getAttribute("Num")) == 23 - 2 - 2 + 1  # no tags, no EIS, + end step


def test_biologic_refuses_currents_above_its_ranges(attia_spec) -> None:
    with pytest.raises(
        ProtocolExportError, match=r"method\[7\] constant_current 'CC1' needs 5720 mA"
    ):
        export_protocol(compile_candidate(attia_spec, CANDIDATE), "biologic")


def test_biologic_carries_eis_for_a_coin_cell(materials_spec) -> None:
    result = export_protocol(compile_material_test(materials_spec, "LiFePO4"), "biologic")
    assert result.encoding == "cp1252"
    assert "PEIS" in result.content and "Modulo Bat" in result.content
    assert result.omitted_steps == []
    assert "no cell-temperature limit" in result.notes[0]


def test_json_formats(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    full = export_protocol(compiled, "voltloop-json")
    assert CompiledProtocol.from_json(full.content) == compiled
    plain = json.loads(export_protocol(compiled, "unicycler-json").content)
    assert "max_temperature_C" not in json.dumps(plain)
    assert plain["sample"]["capacity_mAh"] == pytest.approx(1100.0)
