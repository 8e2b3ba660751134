"""SCPI element lists: quoted strings with commas and doubled quotes round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voltloop.drivers.scpi import _split_fields_loop, quote, split_fields

_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(st.lists(_TEXT, min_size=1, max_size=8))
def test_quoted_strings_round_trip(texts: list[str]) -> None:
    assert split_fields(",".join(quote(t) for t in texts)) == texts


@given(st.text(st.sampled_from(list("ab1, \t")), max_size=30))
def test_lists_without_strings_split_as_element_by_element(text: str) -> None:
    """The one-split path for lists without strings (a FETC? query's channels and
    indices) gives what the element-by-element loop gives."""
    assert split_fields(text) == _split_fields_loop(text)


def test_mixed_elements() -> None:
    assert split_fields('running,"a,b",3') == ["running", "a,b", "3"]
    assert split_fields(' "say ""hi""" , 7') == ['say "hi"', "7"]
    assert split_fields('"",""""') == ["", '"']


@pytest.mark.parametrize("text", ['"abc', '"ab""', 'x,"a""b'])
def test_unterminated_string(text: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_fields(text)


def test_text_after_a_string() -> None:
    with pytest.raises(ValueError, match="text after string"):
        split_fields('"a"b,1')
