"""MethodSCRIPT output parsing: PalmSens' documented sample, line kinds, streaming, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voltloop.drivers import methodscript as ms
from voltloop.drivers.errors import ProtocolError

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocols" / "methodscript.md"


def test_palmsens_documentation_package_decoded_by_hand() -> None:
    """``Pda7F85F3Fu;ba48D503Dp,10,288`` from PalmSens' MethodSCRIPT documentation."""
    (package,) = ms.parse_line("Pda7F85F3Fu;ba48D503Dp,10,288")
    assert isinstance(package, ms.DataPackage)
    da, ba = package.variables
    # 0x7F85F3F = 133717823; - 0x8000000 (134217728) = -499905 micro-volts
    assert da.type_code == "da" and da.var_type is ms.VarType.SET_POTENTIAL
    assert da.value == pytest.approx(-0.499905, abs=1e-12)
    assert da.status is None and da.range_code is None
    # 0x48D503D = 76369981; - 134217728 = -57847747 pico-amperes
    assert ba.var_type is ms.VarType.WE_CURRENT
    assert ba.value == pytest.approx(-57847747e-12, rel=1e-12)
    assert ba.status is ms.StatusFlag.OK
    assert ba.range_code == 0x88  # EmStat Pico: 1 mA, high-speed mode


def test_doc_example_exchange_decodes_to_the_stated_values() -> None:
    """The EIS exchange in docs/protocols/methodscript.md is consistent with the encoder."""
    text = DOC.read_text()
    lines = re.findall(r"device ← (P[^\\]+)\\n", text)
    assert len(lines) == 3
    stated = [(1000, 0.0251, -0.0004), (100, 0.0268, -0.0011), (10, 0.0319, -0.0042)]
    for line, (f, zr, zi) in zip(lines, stated, strict=True):
        (package,) = ms.parse_line(line)
        assert package.get("dc").value == pytest.approx(f, rel=1e-9)
        assert package.get("cc").value == pytest.approx(zr, rel=1e-9)
        assert package.get("cd").value == pytest.approx(zi, rel=1e-9)
        assert package.get("cc").range_code == 0x1B
        assert package.encode() == line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("e", [ms.ScriptAccepted()]),
        ("M0000", [ms.LoopBegin(ms.LoopKind.MEASUREMENT, "0000")]),
        ("eM0007", [ms.ScriptAccepted(), ms.LoopBegin(ms.LoopKind.MEASUREMENT, "0007")]),
        ("*", [ms.LoopEnd(ms.LoopKind.MEASUREMENT)]),
        ("L", [ms.LoopBegin(ms.LoopKind.LOOP)]),
        ("+", [ms.LoopEnd(ms.LoopKind.LOOP)]),
        ("C0001", [ms.LoopBegin(ms.LoopKind.SCAN, "0001")]),
        ("-", [ms.LoopEnd(ms.LoopKind.SCAN)]),
        ("Thello world", [ms.TextLine("hello world")]),
        ("Z", [ms.AbortAcknowledged()]),
        ("Z!0006", [ms.ErrorReply(6, "", "Z")]),
        ("e!4003: Line 7, Col 1", [ms.ErrorReply(0x4003, "Line 7, Col 1", "e")]),
        ("!7001", [ms.ErrorReply(0x7001)]),
        ("", [ms.ScriptEnd()]),
    ],
)
def test_line_kinds(line: str, expected: list) -> None:
    assert ms.parse_line(line) == expected


def test_nan_and_metadata() -> None:
    (package,) = ms.parse_line("Pdc80F4240m;cc     nan,12,21B;cd7F9E580n,1A,4FF")
    f, zr, zi = package.variables
    assert f.value == pytest.approx(1000.0)
    assert math.isnan(zr.value)
    assert zr.status is ms.StatusFlag.OVERLOAD and zr.range_code == 0x1B
    assert zi.status == ms.StatusFlag.OVERLOAD | ms.StatusFlag.OVERLOAD_WARNING
    assert zi.other_metadata == ("4FF",)


@pytest.mark.parametrize(
    "line",
    [
        "Pda7F85F3Fx",  # unknown SI prefix
        "Pda7F85GGFu",  # non-hex digit
        "Pda7F85F3",  # truncated value
        "PDA7F85F3Fu",  # type must be two lowercase letters
        "Pda7F85F3Fu,1",  # status without its nibble
        "Pda7F85F3Fu,2X8",  # range not hex
        "Pda7F85F3Fu#",  # junk after the value
        "P",  # empty package
        "M00",  # short loop id
        "**",
        "!12",  # short error code
        "Q123",  # unknown line kind
        "P\x01da",  # control character
    ],
)
def test_garbled_lines_raise_protocol_error(line: str) -> None:
    with pytest.raises(ProtocolError):
        ms.parse_line(line)


EIS_OUTPUT = (
    b"eM0007\n"
    b"Pdc80F4240m;cc97EFEE0n,10,21B;cd7F9E580n,10\n"
    b"PdcDF5E100u;cc998EF80n,10,21B;cd7EF3720n,10\n"
    b"*\n"
    b"\n"
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_streaming_parser_gives_the_same_events_for_any_split(chunk: int) -> None:
    whole = ms.parse_output(EIS_OUTPUT)
    parser = ms.OutputParser()
    events = []
    for i in range(0, len(EIS_OUTPUT), chunk):
        events.extend(parser.feed(EIS_OUTPUT[i : i + chunk]))
    parser.finish()
    assert events == whole
    assert [type(e).__name__ for e in whole] == [
        "ScriptAccepted",
        "LoopBegin",
        "DataPackage",
        "DataPackage",
        "LoopEnd",
        "ScriptEnd",
    ]


def test_partial_line_at_end_is_a_protocol_error() -> None:
    parser = ms.OutputParser()
    parser.feed(EIS_OUTPUT[:30])
    with pytest.raises(ProtocolError, match="partial line"):
        parser.finish()


def test_missing_end_line_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="without the empty"):
        ms.parse_output(b"e\nM0000\n*\n")


def test_loop_nesting_is_checked() -> None:
    with pytest.raises(ProtocolError, match="does not match"):
        ms.parse_output(b"e\nM0000\n+\n\n")
    with pytest.raises(ProtocolError, match="inside open loops"):
        ms.parse_output(b"e\nM0000\n\n")


def test_abort_or_error_may_end_inside_a_loop() -> None:
    events = ms.parse_output(b"eM0007\nZ\n\n")
    assert ms.AbortAcknowledged() in events
    events = ms.parse_output(b"eM0007\n!7001: no cell\n\n")
    assert events[-2] == ms.ErrorReply(0x7001, "no cell")


def test_output_after_the_end_is_a_protocol_error() -> None:
    parser = ms.OutputParser()
    parser.feed(b"e\n\n")
    with pytest.raises(ProtocolError, match="after the end"):
        parser.feed(b"Pda7F85F3Fu\n")


def test_non_ascii_and_runaway_lines() -> None:
    with pytest.raises(ProtocolError, match="non-ASCII"):
        ms.OutputParser().feed(b"e\n\xff\xfe\n")
    with pytest.raises(ProtocolError, match="no line end"):
        ms.OutputParser(max_line=100).feed(b"P" * 200)


def test_error_reply_becomes_instrument_error() -> None:
    (reply,) = ms.parse_line("e!4005: Line 12, Col 27")
    exc = reply.to_exception(url="socket://x:1")
    assert exc.code == 0x4005 and exc.command == "e"
    assert "Line 12" in str(exc) and "socket://x:1" in str(exc)


@given(
    values=st.lists(
        st.tuples(st.floats(min_value=1e-3, max_value=1e5), st.floats(-1, 1), st.floats(-1, 1)),
        min_size=1,
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_split_of_a_sweep_gives_the_same_packages(values: list, cuts: list[int]) -> None:
    """Property: bytes may arrive split anywhere; the parser's events never depend on it."""
    lines = [b"eM0007"]
    for f, zr, zi in values:
        package = ms.DataPackage(
            (
                ms.Variable("dc", f),
                ms.Variable("cc", zr, ms.StatusFlag.OK, 0x1B),
                ms.Variable("cd", zi),
            )
        )
        lines.append(package.encode().encode())
    output = b"\n".join([*lines, b"*", b"", b""])
    whole = ms.parse_output(output)
    parser = ms.OutputParser()
    events = []
    previous = 0
    for cut in sorted({c % (len(output) + 1) for c in cuts}) + [len(output)]:
        events.extend(parser.feed(output[previous:cut]))
        previous = cut
    parser.finish()
    assert events == whole
    packages = [e for e in events if isinstance(e, ms.DataPackage)]
    assert [p.get("dc").value for p in packages] == pytest.approx(
        [v[0] for v in values], rel=7.5e-6
    )
