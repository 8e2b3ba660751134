"""The Attia et al. (2020) ten-minute space: 224 protocols of 432."""

from __future__ import annotations

import itertools
import math

import pytest

from voltloop.campaigns import attia


def test_value_lists_match_the_paper() -> None:
    assert attia.CC1_VALUES == (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0)
    assert attia.CC2_VALUES == (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0)
    assert attia.CC3_VALUES == (3.6, 4.0, 4.4, 4.8, 5.2, 5.6)
    total = len(attia.CC1_VALUES) * len(attia.CC2_VALUES) * len(attia.CC3_VALUES)
    assert total == 432


def test_exactly_224_protocols_and_225_with_the_baseline() -> None:
    protocols = attia.enumerate_protocols()
    assert len(protocols) == attia.SPACE_SIZE == 224
    with_baseline = attia.enumerate_protocols(include_baseline=True)
    assert len(with_baseline) == 225
    assert [p for p in with_baseline if p not in protocols] == [
        attia.AttiaProtocol(4.8, 4.8, 4.8, pytest.approx(4.8))
    ]


def test_every_protocol_charges_to_80_percent_in_ten_minutes() -> None:
    for p in attia.enumerate_protocols():
        assert attia.charge_time_min(*p) == pytest.approx(10.0, abs=1e-9)
        assert attia.CC4_MIN <= p.CC4 <= attia.CC4_MAX


def test_rejected_combinations_really_violate_the_cc4_range() -> None:
    kept = {(p.CC1, p.CC2, p.CC3) for p in attia.enumerate_protocols(include_baseline=True)}
    for combo in itertools.product(attia.CC1_VALUES, attia.CC2_VALUES, attia.CC3_VALUES):
        if combo in kept:
            continue
        cc4 = attia.derive_cc4(*combo)
        assert cc4 > attia.CC4_MAX or cc4 < attia.CC4_MIN


def test_derive_cc4_formula_and_impossible_budget() -> None:
    assert attia.derive_cc4(5.2, 5.2, 4.8) == pytest.approx(
        0.2 / (1 / 6 - 0.2 / 5.2 * 2 - 0.2 / 4.8)
    )
    # three steps at 3.6 C take 10 min already: no time left for a fourth
    assert math.isinf(attia.derive_cc4(3.6, 3.6, 3.6))
    with pytest.raises(ValueError, match="positive"):
        attia.derive_cc4(0.0, 4.0, 4.0)


def test_protocol_array_shape() -> None:
    array = attia.protocol_array()
    assert array.shape == (224, 4)
    assert array[:, 3].max() <= attia.CC4_MAX
