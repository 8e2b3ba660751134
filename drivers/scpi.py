"""SCPI / IEEE 488.2 data elements shared by hosts and simulated instruments:
definite-length arbitrary blocks and comma-separated element lists with quoted strings."""

from __future__ import annotations


def encode_block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length arbitrary block: ``#<n><len><payload>``."""
    length = str(len(payload)).encode("ascii")
    if len(length) > 9:
        raise ValueError(f"block of {len(payload)} bytes is too long for a definite-length block")
    return b"#" + str(len(length)).encode("ascii") + length + payload


def quote(text: str) -> str:
    """A SCPI string element: double quotes, inner quotes doubled."""
    return '"' + text.replace('"', '""') + '"'


def split_fields(text: str) -> list[str]:
    """Split a comma-separated SCPI element list; quoted strings are unquoted.

    ``running,"a,b",3`` gives ``['running', 'a,b', '3']``; two quotes inside a string are one
    quote. An unterminated string raises ValueError.
    """
    if '"' not in text:  # no strings: what the loop gives, in one split
        return [field.strip() for field in text.split(",")]
    return _split_fields_loop(text)


def _split_fields_loop(text: str) -> list[str]:
    """:func:`split_fields` element by element (any text)."""
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            # the closing quote: the first one not doubled (str.find, not a character loop:
            # a 48-channel FETC? header holds 48 quoted experiment ids)
            j = text.find('"', i + 1)
            while j >= 0 and text.startswith('"', j + 1):
                j = text.find('"', j + 2)
            if j < 0:
                raise ValueError(f"unterminated string in {text!r}")
            fields.append(text[i + 1 : j].replace('""', '"'))
            i = j + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                raise ValueError(f"text after string in {text!r}")
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            fields.append(text[i:j].strip())
            i = j
        if i >= n:
            return fields
        i += 1  # skip the comma
