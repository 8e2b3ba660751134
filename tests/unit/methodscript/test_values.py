"""Value encoding: SI prefixes, the 28-bit offset, NaN; property tests round-trip values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voltloop.drivers import methodscript as ms


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8000000 ", 0.0),
        ("8000001m", 1e-3),
        ("7FFFFFFu", -1e-6),
        ("0000000 ", -(2**27)),
        ("FFFFFFF ", 2**27 - 1),
        ("8000064k", 100e3),
        ("80003E8i", 1000.0),
        ("8000005a", 5e-18),
        ("8000002E", 2e18),
    ],
)
def test_decode_known_values(text: str, value: float) -> None:
    assert ms.decode_value(text) == pytest.approx(value, rel=1e-12)


def test_nan_field() -> None:
    assert math.isnan(ms.decode_value("     nan"))
    assert ms.encode_value(float("nan")) == "     nan"


def test_infinite_and_huge_values_are_refused() -> None:
    with pytest.raises(ValueError):
        ms.encode_value(float("inf"))
    with pytest.raises(ValueError):
        ms.encode_value(1e30)


@given(
    mantissa=st.integers(min_value=ms.MANTISSA_MIN, max_value=ms.MANTISSA_MAX),
    prefix=st.sampled_from([p for p in ms.SI_PREFIXES if p != "i"]),
)
def test_every_wire_value_round_trips_exactly_through_decode_encode(
    mantissa: int, prefix: str
) -> None:
    """Any value the device can send decodes, re-encodes and decodes to the same float."""
    text = f"{mantissa + ms.VALUE_OFFSET:07X}{prefix}"
    value = ms.decode_value(text)
    assert ms.decode_value(ms.encode_value(value)) == pytest.approx(value, rel=1e-9, abs=0)


@given(
    st.floats(min_value=1e-17, max_value=1e25, allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -1.0]),
)
def test_encode_decode_round_trips_within_quantisation(magnitude: float, sign: float) -> None:
    """The finest fitting prefix keeps the relative error below 2**-27 * 1000."""
    value = sign * magnitude
    decoded = ms.decode_value(ms.encode_value(value))
    assert decoded == pytest.approx(value, rel=7.5e-6)


@given(st.floats(min_value=1e-15, max_value=1e15).map(lambda x: float(f"{x:.6g}")))
def test_script_literals_round_trip(value: float) -> None:
    literal = ms.format_literal(value)
    assert "." not in literal
    assert ms.parse_literal(literal) == pytest.approx(value, rel=1e-8)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (0.01, "10m"),
        (1e4, "10k"),
        (5e-3, "5m"),
        (3.3, "3300m"),
        (0, "0"),
        (-0.2, "-200m"),
        (1e6, "1M"),
    ],
)
def test_format_literal_examples(value: float, literal: str) -> None:
    assert ms.format_literal(value) == literal


def test_integer_literal() -> None:
    assert ms.format_literal(61, integer=True) == "61i"
    assert ms.parse_literal("61i") == 61
    with pytest.raises(ValueError):
        ms.format_literal(6.5, integer=True)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dc", "cc", "cd", "ba", "da", "ab", "zz"]),
            st.floats(min_value=-1e6, max_value=1e6) | st.just(float("nan")),
            st.none() | st.integers(min_value=0, max_value=15),
            st.none() | st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_package_encode_parse_round_trip(fields: list) -> None:
    variables = tuple(
        ms.Variable(code, value, None if s is None else ms.StatusFlag(s), r)
        for code, value, s, r in fields
    )
    (parsed,) = ms.parse_line(ms.DataPackage(variables).encode())
    for original, got in zip(variables, parsed.variables, strict=True):
        assert got.type_code == original.type_code
        assert got.status == original.status and got.range_code == original.range_code
        if math.isnan(original.value):
            assert math.isnan(got.value)
        else:
            assert got.value == pytest.approx(original.value, rel=7.5e-6, abs=1e-17)
