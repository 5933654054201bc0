"""Grafana dashboards as the tests read them: panels, their queries, and the SQL a PostgreSQL panel sends.

Grafana cannot run here, so the tests expand a panel's SQL the way Grafana's PostgreSQL data source does
before it reaches the database, and run it:

- `$__timeFilter(expr)` -> `expr BETWEEN '<from>' AND '<to>'` (RFC 3339 UTC timestamps, as Grafana writes
  them); `$__timeFrom()` -> `'<from>'`; `$__timeTo()` -> `'<to>'`.
- A template variable `$name` / `${name}`: single-valued (custom) -> its value as is; multi-valued -> each
  selected value as a quoted SQL literal, comma-separated (`'a','b'`); "All" with a custom all value ->
  that value verbatim (Grafana does not quote custom all values: the dashboards' all value is `'__all'`).
- Any other `$` left in the SQL is a macro these tests do not know: `render_sql` refuses it, so a panel
  cannot use something the tests never ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[2] / "config" / "grafana" / "dashboards"


@dataclass(frozen=True)
class Query:
    panel: str
    kind: str  # "sql" or "promql"
    text: str
    format: str = ""


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "rawSql" in target:
                found.append(Query(panel["title"], "sql", target["rawSql"], target.get("format", "")))
            elif "expr" in target:
                found.append(Query(panel["title"], "promql", target["expr"]))
    return found


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def _timestamp(moment: datetime) -> str:
    return "'" + moment.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_sql(
    sql: str,
    time_from: datetime,
    time_to: datetime,
    values: Mapping[str, str | Sequence[str] | None],
    dashboard_variables: Mapping[str, Mapping[str, Any]],
) -> str:
    """`values[name]`: a string for single-valued variables; a list of values, or None for "All", for
    multi-valued ones."""
    out = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1).strip()} BETWEEN {_timestamp(time_from)} AND {_timestamp(time_to)}",
        sql,
    )
    out = out.replace("$__timeFrom()", _timestamp(time_from)).replace("$__timeTo()", _timestamp(time_to))

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in dashboard_variables:
            raise AssertionError(f"${name} is not a variable of the dashboard (or a macro the tests do not expand)")
        value = values[name]
        if not dashboard_variables[name].get("multi"):
            assert isinstance(value, str), name
            return value
        if value is None:
            return dashboard_variables[name]["allValue"]
        return ",".join(_literal(v) for v in value)

    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, out)
    assert "$" not in out, out
    return out


# -- PromQL --------------------------------------------------------------------------------------------

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: what is left once strings, label matchers, ranges, grouping
    clauses, function names, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if word.lower() in _KEYWORDS or following.startswith("("):
            continue
        names.add(word)
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for every matcher inside a selector's braces."""
    return [
        (metric, label, op, value)
        for metric, body in _SELECTOR.findall(expr)
        for label, op, value in _MATCHER.findall(body)
    ]
