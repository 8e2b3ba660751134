"""``voltloop init DIR --kind protocol|materials``: write an example campaign file.

Writes ``DIR/campaign.toml``, a heavily commented example (campaigns/examples/)
whose ``name`` is set to DIR's name when that is a valid campaign name. DIR is
created if needed; an existing ``campaign.toml`` is kept unless ``--force``. The
text is validated before anything is written, and written atomically.
"""

from __future__ import annotations

import enum
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import JsonOption, console, print_json

CAMPAIGN_FILE = "campaign.toml"
_NAME_LINE = re.compile(r'^name = "[^"]*"', re.MULTILINE)
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ExampleKind(enum.StrEnum):
    PROTOCOL = "protocol"
    MATERIALS = "materials"
    PROTOCOL_CI = "protocol-ci"


class InitError(Exception):
    """``voltloop init`` cannot write where asked."""

    exit_code = 2


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the campaign in.")],
    kind: Annotated[
        ExampleKind,
        typer.Option("--kind", help="protocol (Attia fast charge), materials, or protocol-ci."),
    ] = ExampleKind.PROTOCOL,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing campaign.toml.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a commented example campaign (TOML) into DIR."""
    target = write_example(directory, kind, force=force)
    if json_output:
        print_json({"path": str(target), "kind": kind.value})
        return
    console.print(f"wrote [bold]{target}[/] ({kind.value} campaign)", highlight=False)
    console.print(
        f"next: edit it, then [bold]voltloop dry-run {target}[/] "
        f"(or [bold]voltloop protocol show {target} --candidate ...[/])",
        highlight=False,
    )


def write_example(directory: Path, kind: ExampleKind | str, *, force: bool = False) -> Path:
    """Write example ``kind`` to ``directory/campaign.toml``; return the path written."""
    from voltloop.campaigns.examples import example_text
    from voltloop.campaigns.loading import parse_campaign

    kind = ExampleKind(kind)
    text = example_text(kind.value)
    if _VALID_NAME.match(directory.resolve().name):
        text = _NAME_LINE.sub(f'name = "{directory.resolve().name}"', text, count=1)
    parse_campaign(text, source=f"example {kind.value}")  # never write an invalid file
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a directory")
    target = directory / CAMPAIGN_FILE
    if target.exists() and not force:
        raise InitError(f"{target} already exists; use --force to overwrite it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".campaign-", suffix=".toml", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InitError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
