"""Read the report page back: its tables (as text cells) per section, for assertions."""

from __future__ import annotations

from html.parser import HTMLParser


class ReportPage(HTMLParser):
    """``tables[section_id]`` = list of tables, each a list of rows of cell texts;
    ``row_classes[section_id]`` = the CSS class of each body row, in order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.row_classes: dict[str, list[str | None]] = {}
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_svg = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "svg":
            self._in_svg += 1
        if tag == "section":
            self._section = attributes.get("id")
        elif tag == "table":
            self.tables.setdefault(self._section, []).append([])
        elif tag == "tr":
            self._row = []
            self.row_classes.setdefault(self._section, []).append(attributes.get("class"))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._in_svg -= 1
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._section][-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None and not self._in_svg:
            self._cell.append(data)

    def table(self, section: str, index: int = 0) -> list[dict[str, str]]:
        """A table as dicts keyed by its header row."""
        rows = self.tables[section][index]
        header, body = rows[0], rows[1:]
        return [dict(zip(header, row, strict=True)) for row in body]
