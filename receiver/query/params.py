"""Request parameters, declared once: `Param` both parses a request (400 naming the parameter) and
describes itself to the OpenAPI document, so the two cannot drift apart.

Pure: no I/O. Values come from aiohttp's query MultiDict (or any mapping with `getall`).
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from receiver.query.errors import BadParameter

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # projects.slug (migration 003)
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")


class MultiMapping(Protocol):
    def getall(self, key: str, default: Any = ...) -> list[str]: ...
    def keys(self) -> Any: ...


@dataclass(frozen=True)
class Param:
    """One query or path parameter. `kind` is one of: string, integer, number, time, date, enum,
    enum_list (comma-separated subset of `choices`), trace_id, project, attribute (key=value,
    repeatable), cursor."""

    name: str
    kind: str
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 512
    location: str = "query"

    @property
    def repeatable(self) -> bool:
        return self.kind == "attribute"

    def parse(self, raw: str) -> Any:
        """One raw value -> its Python value, or BadParameter naming this parameter."""
        if len(raw) > max(self.max_length, 4096):
            raise BadParameter(self.name, f"longer than {max(self.max_length, 4096)} characters")
        parser = _PARSERS.get(self.kind)
        if parser is None:
            raise AssertionError(f"unknown parameter kind {self.kind!r}")
        return parser(self, raw)

    @property
    def list_pattern(self) -> str:
        """What an enum_list accepts, for both the parser and the document: nothing (= left out), or
        choices separated by commas, with spaces around them (`model, provider`)."""
        choice = f"({'|'.join(re.escape(c) for c in self.choices)})"
        return f"( *{choice} *(, *{choice} *)*)?"

    def schema(self) -> dict[str, Any]:
        """The OpenAPI schema of this parameter's value."""
        schema: dict[str, Any]
        if self.kind == "integer":
            schema = {"type": "integer"}
        elif self.kind == "number":
            schema = {"type": "number"}
        elif self.kind == "time":
            schema = {"type": "string", "format": "date-time"}
        elif self.kind == "date":
            schema = {"type": "string", "format": "date"}
        elif self.kind == "enum":
            schema = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "enum_list":
            schema = {"type": "string", "pattern": f"^{self.list_pattern}$"}
        elif self.kind == "trace_id":
            uuid_form = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
            schema = {"type": "string", "pattern": f"^([0-9a-fA-F]{{32}}|{uuid_form})$"}
        elif self.kind == "attribute":
            schema = {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}}
        else:
            schema = {"type": "string", "maxLength": self.max_length}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        return schema

    def openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "description": self.doc,
            "schema": self.schema(),
        }
        if self.repeatable:
            doc["explode"] = True
        return doc


def _string(param: Param, raw: str) -> str:
    if raw == "":
        raise BadParameter(param.name, "must not be empty")
    if "\x00" in raw:
        raise BadParameter(param.name, "must not contain NUL characters")
    if len(raw) > param.max_length:
        raise BadParameter(param.name, f"longer than {param.max_length} characters")
    return raw


def _integer(param: Param, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadParameter(param.name, f"expected an integer, got {raw!r}") from None
    _check_range(param, value)
    return value


def _number(param: Param, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise BadParameter(param.name, f"expected a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadParameter(param.name, f"expected a finite number, got {raw!r}")
    _check_range(param, value)
    return value


def _check_range(param: Param, value: float) -> None:
    if param.minimum is not None and value < param.minimum:
        raise BadParameter(param.name, f"{value} is below the minimum {_num(param.minimum)}")
    if param.maximum is not None and value > param.maximum:
        raise BadParameter(param.name, f"{value} is above the maximum {_num(param.maximum)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_time(name: str, raw: str) -> datetime:
    """RFC 3339 with a UTC offset or Z (2026-11-30T10:00:00Z, 2026-11-30T11:00:00.5+01:00) -> aware UTC."""
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadParameter(name, f"expected an RFC 3339 time such as 2026-11-30T10:00:00Z, got {raw!r}") from None
    if value.tzinfo is None:
        raise BadParameter(name, f"{raw!r} has no UTC offset: add Z or +HH:MM")
    if "T" not in text.upper() and " " not in text:
        raise BadParameter(name, f"expected a date and a time (2026-11-30T10:00:00Z), got {raw!r}")
    return value.astimezone(UTC)


def _time(param: Param, raw: str) -> datetime:
    return parse_time(param.name, raw)


def _date(param: Param, raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise BadParameter(param.name, f"expected a date such as 2026-11-30, got {raw!r}") from None


def _enum(param: Param, raw: str) -> str:
    if raw not in param.choices:
        raise BadParameter(param.name, f"{raw!r} is not one of {', '.join(param.choices)}")
    return raw


def _enum_list(param: Param, raw: str) -> tuple[str, ...]:
    # Exactly what the document's pattern allows (it refused empty items and tabs that this once skipped).
    if not re.fullmatch(param.list_pattern, raw):
        bad = next((item for item in raw.split(",") if item.strip(" ") not in param.choices), raw)
        raise BadParameter(param.name, f"{bad!r} is not one of {', '.join(param.choices)} (comma-separated)")
    values: list[str] = []
    for part in raw.split(",") if raw else ():
        item = part.strip(" ")
        if item not in values:
            values.append(item)
    return tuple(values)


def parse_trace_id(name: str, raw: str) -> uuid.UUID:
    """An OTLP trace id: 32 hex digits (as OTLP/JSON and W3C traceparent write it) or the uuid form."""
    text = raw.strip()
    try:
        if _HEX_ID.match(text):
            value = uuid.UUID(hex=text)
        elif len(text) == 36:
            value = uuid.UUID(text)
        else:
            raise ValueError
    except ValueError:
        raise BadParameter(name, f"expected 32 hex digits (an OTLP trace id), got {raw!r}") from None
    return value  # the all-zero id is invalid in OTLP: no span has it, so it is simply not found


def _trace_id(param: Param, raw: str) -> uuid.UUID:
    return parse_trace_id(param.name, raw)


def _project(param: Param, raw: str) -> uuid.UUID | str:
    """A project id (uuid) or its slug."""
    text = raw.strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    if not SLUG.match(text):
        raise BadParameter(param.name, f"expected a project id (uuid) or slug ([a-z0-9][a-z0-9_-]*), got {raw!r}")
    return text


def _attribute(param: Param, raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise BadParameter(param.name, f"expected key=value (e.g. gen_ai.request.model=gpt-4o), got {raw!r}")
    if "\x00" in raw:
        raise BadParameter(param.name, "must not contain NUL characters")
    return key, value


def _cursor(param: Param, raw: str) -> str:
    return _string(param, raw)


_PARSERS = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "time": _time,
    "date": _date,
    "enum": _enum,
    "enum_list": _enum_list,
    "trace_id": _trace_id,
    "project": _project,
    "attribute": _attribute,
    "cursor": _cursor,
}


def parse_query(params: Sequence[Param], query: MultiMapping, max_repeats: int = 8) -> dict[str, Any]:
    """The query string -> {name: value} for every declared query parameter (defaults filled in).
    Unknown, repeated (unless repeatable) or missing required parameters are 400s naming them."""
    declared = {p.name: p for p in params if p.location == "query"}
    for name in dict.fromkeys(query.keys()):
        if name not in declared:
            hint = difflib.get_close_matches(name, declared, 1)
            known = ", ".join(declared) or "none"
            raise BadParameter(
                name, "unknown parameter" + (f" (did you mean {hint[0]!r}?)" if hint else f" (known: {known})")
            )
    values: dict[str, Any] = {}
    for name, param in declared.items():
        raws = query.getall(name, [])
        if not raws:
            if param.required:
                raise BadParameter(name, "is required")
            values[name] = [] if param.repeatable else param.default
            continue
        if param.repeatable:
            if len(raws) > max_repeats:
                raise BadParameter(name, f"given {len(raws)} times; at most {max_repeats}")
            values[name] = [param.parse(raw) for raw in raws]
            continue
        if len(raws) > 1:
            raise BadParameter(name, "given more than once")
        values[name] = param.parse(raws[0])
    return values


def parse_path(params: Sequence[Param], match_info: Mapping[str, str]) -> dict[str, Any]:
    return {p.name: p.parse(match_info[p.name]) for p in params if p.location == "path"}


class SqlArgs:
    """Positional arguments of one statement: `add(value)` returns its placeholder ($1, $2, ...)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def limit_literal(count: int) -> str:
    """A row limit written into the SQL, not passed as a parameter. The read API plans generically
    (plan_cache_mode in query/server.py), and a generic plan does not know a `LIMIT $n`: it then planned
    /spans without a time window as if most of the table were wanted (at 5M spans, 150-270 ms for what
    takes 2-10 ms with the limit known). Not for every query: /metrics' plan over a window was better
    without it (the name index and a sort rather than a walk in time order). Only validated integers."""
    if type(count) is not int or count < 0:
        raise ValueError(f"a row limit must be a non-negative int, not {count!r}")
    return str(count)


def project_condition(args: SqlArgs, project: uuid.UUID | str | None, column: str = "project_id") -> str | None:
    """The tenant filter every query carries: a project id, or a slug looked up in `projects`."""
    if project is None:
        return None
    if isinstance(project, uuid.UUID):
        return f"{column} = {args.add(project)}::uuid"
    return f"{column} = (SELECT id FROM projects WHERE slug = {args.add(project)})"


def check_window(values: dict[str, Any]) -> None:
    """`from` must come before `to` when both are given."""
    start, end = values.get("from"), values.get("to")
    if start is not None and end is not None and start >= end:
        raise BadParameter("from", f"{start.isoformat()} is not before to = {end.isoformat()}")
