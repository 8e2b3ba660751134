"""Read a campaign spec from TOML, with errors a person can act on.

:func:`load_campaign` returns a :class:`ProtocolCampaign` or
:class:`MaterialsCampaign` (chosen by the file's ``kind``). Everything that can be
wrong with the file — it is missing, it is not valid TOML, a field is misspelt, has
the wrong type, is out of range, is missing, or two fields disagree — becomes one
:class:`CampaignSpecError` (``exit_code = 2``) whose message names the file, each
bad field by its path (``space.parameters[1].bounds``), the bad value and what is
allowed, and fits on one screen.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from voltloop.campaigns.base import SpecFieldError
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.campaigns.protocol_campaign import ProtocolCampaign
from voltloop.campaigns.spec import validate_spec

#: At most this many problems are listed; the rest are counted.
MAX_PROBLEMS_SHOWN = 12
_VALUE_WIDTH = 60
_KINDS = {"protocol": ProtocolCampaign, "materials": MaterialsCampaign}
#: Segments pydantic adds to error locations for union members and tags.
_TAG_SEGMENTS = {"protocol", "materials", "cc", "cv", "rest"}
#: Allowed values of each discriminator field (for "missing" messages).
_TAG_CHOICES = {"step": "'cc', 'cv', 'rest'", "kind": "'protocol', 'materials'"}
_TYPE_SEGMENTS = {"float", "int", "str", "bool", "dict", "list", "tuple", "none", "constrained-str"}


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a campaign file."""

    field: str  # dotted path, e.g. space.parameters[1].bounds ("" for the whole file)
    value: str  # the offending value, shortened ("" if not meaningful)
    message: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        where = self.field or "(file)"
        shown = f" = {self.value}" if self.value else ""
        return f"{where}{shown}: {self.message}"


class CampaignSpecError(ValueError):
    """A campaign file that cannot be used; the message lists every problem."""

    exit_code = 2

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"invalid campaign file {source} ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if count > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {count - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(lines))


def load_campaign(path: str | Path) -> ProtocolCampaign | MaterialsCampaign:
    """Read and validate the campaign TOML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignSpecError(str(path), [SpecProblem("", "", "no such file")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        problem = SpecProblem("", "", f"cannot read it as UTF-8 text ({exc.__class__.__name__})")
        raise CampaignSpecError(str(path), [problem]) from None
    spec = parse_campaign(text, source=str(path))
    if isinstance(spec, MaterialsCampaign):
        spec = spec.with_source_dir(path.parent)
        check_structure_files(spec, source=str(path))
    return spec


def parse_campaign(text: str, source: str = "<text>") -> ProtocolCampaign | MaterialsCampaign:
    """Validate campaign TOML given as text; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignSpecError(source, [_toml_problem(text, exc)]) from None
    return validate_campaign_data(data, source)


def validate_campaign_data(
    data: dict[str, Any], source: str = "<data>"
) -> ProtocolCampaign | MaterialsCampaign:
    """Validate an already-parsed mapping, with the same error messages."""
    kind = data.get("kind")
    if kind not in _KINDS:
        shown = _show(kind) if "kind" in data else ""
        message = "missing; " if "kind" not in data else ""
        raise CampaignSpecError(
            source,
            [SpecProblem("kind", shown, message + "must be 'protocol' or 'materials'")],
        )
    try:
        return validate_spec(data)
    except ValidationError as exc:
        raise CampaignSpecError(source, _problems(exc, data, _KINDS[kind])) from None


def check_structure_files(spec: MaterialsCampaign, source: str) -> None:
    """Every structure file and prototype file the pool names must exist."""
    problems = []
    for i, pattern in enumerate(spec.pool.structures):
        base = Path(pattern) if Path(pattern).is_absolute() else spec.source_dir / pattern
        if any(ch in pattern for ch in "*?["):
            if not list(base.parent.glob(base.name)):
                problems.append(
                    SpecProblem(
                        f"pool.structures[{i}]",
                        _show(pattern),
                        f"the pattern matches no file (looked in {base.parent})",
                    )
                )
        elif not base.is_file():
            problems.append(
                SpecProblem(
                    f"pool.structures[{i}]",
                    _show(pattern),
                    f"no such file (paths are relative to the campaign file: {spec.source_dir})",
                )
            )
    for i, rule in enumerate(spec.pool.substitutions):
        prototype = str(rule.prototype)
        if prototype.lower().endswith((".cif", ".json")):
            full = Path(prototype)
            full = full if full.is_absolute() else spec.source_dir / full
            if not full.is_file():
                problems.append(
                    SpecProblem(
                        f"pool.substitutions[{i}].prototype",
                        _show(prototype),
                        f"no such file (relative to {spec.source_dir})",
                    )
                )
    if problems:
        raise CampaignSpecError(source, problems)


# --- formatting -------------------------------------------------------------------------


def _toml_problem(text: str, exc: tomllib.TOMLDecodeError) -> SpecProblem:
    """A TOML syntax error with its line and column and the line's text."""
    message = str(exc)
    lineno = getattr(exc, "lineno", None)
    if lineno is None and "(at line " in message:
        try:
            lineno = int(message.split("(at line ")[1].split(",")[0])
        except (IndexError, ValueError):
            lineno = None
    where = ""
    if lineno:
        lines = text.splitlines()
        if 0 < lineno <= len(lines):
            where = f"; line {lineno} reads: {lines[lineno - 1].strip()[:_VALUE_WIDTH]!r}"
    return SpecProblem("", "", f"not valid TOML: {message}{where}")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, seg in enumerate(loc):
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
            continue
        seg = str(seg)
        previous = loc[i - 1] if i > 0 else None
        if seg in _TAG_SEGMENTS and (i == 0 or isinstance(previous, int)):
            continue
        if seg in _TYPE_SEGMENTS or "[" in seg or seg.startswith("function-"):
            continue
        parts.append(("." if parts else "") + seg)
    return "".join(parts)


def _problems(
    exc: ValidationError, data: dict[str, Any], model: type[BaseModel]
) -> list[SpecProblem]:
    merged: dict[tuple[str, str], list[str]] = {}
    for error in exc.errors(include_url=False):
        field = _path(tuple(error["loc"]))
        kind = error["type"]
        value = ""
        if kind == "missing":
            message = "required field is missing"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            ctx = error.get("ctx") or {}
            tag = str(ctx.get("discriminator", "")).strip("'")
            field = f"{field}.{tag}" if field else tag
            allowed = ctx.get("expected_tags") or _TAG_CHOICES.get(tag, "a documented kind")
            if kind == "union_tag_not_found":
                message = f"required field is missing; must be one of {allowed}"
            else:
                value = _show(ctx.get("tag"))
                message = f"must be one of {allowed}"
        elif kind == "extra_forbidden":
            message = _unknown_field_message(model, tuple(error["loc"]))
            value = _show(error.get("input"))
        elif isinstance((error.get("ctx") or {}).get("error"), SpecFieldError):
            rule: SpecFieldError = error["ctx"]["error"]
            joiner = "" if not field or rule.field.startswith("[") else "."
            field = f"{field}{joiner}{rule.field}"
            value = "" if rule.value is None else _show(rule.value)
            message = rule.message
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            raw = error.get("input")
            if not isinstance(raw, dict):
                value = _show(raw)
            message = _explain(kind, error, message)
        merged.setdefault((field, value), []).append(message)
    problems = []
    for (field, value), messages in merged.items():
        unique = list(dict.fromkeys(messages))
        problems.append(SpecProblem(field, value, " or ".join(unique)))
    return problems


def _explain(kind: str, error: dict[str, Any], message: str) -> str:
    """Say what is allowed in the user's terms where pydantic's text is terse."""
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return "must be a name of letters, digits and _ (starting with a letter)"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        bound = next(iter(ctx.values()), "")
        sign = {"greater_than_equal": "≥", "greater_than": ">", "less_than_equal": "≤",
                "less_than": "<"}[kind]  # fmt: skip
        return f"must be {sign} {bound}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '')}"
    return message


def _unknown_field_message(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    allowed = _fields_at(model, loc[:-1])
    name = str(loc[-1])
    if not allowed:
        return "unknown field"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field{hint}; allowed here: {', '.join(sorted(allowed))}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model(s) reached by following ``loc`` from ``model``."""
    current: list[type[BaseModel]] = [model]
    for seg in loc:
        if isinstance(seg, int) or seg in _TAG_SEGMENTS:
            continue
        following: list[type[BaseModel]] = []
        for cls in current:
            info = cls.model_fields.get(str(seg))
            if info is not None:
                following += _models_in(info.annotation)
        if not following:
            return []
        current = following
    names: list[str] = []
    for cls in current:
        names += [n for n in cls.model_fields if n not in names]
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    found: list[type[BaseModel]] = []
    if origin in (typing.Union, types.UnionType, list, tuple, dict) or args:
        for arg in args:
            found += _models_in(arg)
    return found
