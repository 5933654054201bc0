"""The read API's pure parts: parameters, cursors, trace trees, usage windows (no database needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from multidict import MultiDict

from receiver.query import spans, traces, usage
from receiver.query.cursor import CursorCodec, Position, query_digest
from receiver.query.errors import BadParameter
from receiver.query.params import parse_query, parse_time, parse_trace_id


def test_times_and_trace_ids_parse_to_one_form():
    assert parse_time("from", "2026-11-30T11:00:00.5+01:00") == datetime(2026, 11, 30, 10, 0, 0, 500000, UTC)
    assert parse_time("from", "2026-11-30T10:00:00z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    value = uuid.uuid4()
    assert parse_trace_id("t", value.hex.upper()) == parse_trace_id("t", str(value)) == value
    for bad in ("2026-11-30", "2026-11-30T10:00:00", "now"):
        with pytest.raises(BadParameter, match=r"^from: "):
            parse_time("from", bad)


def test_query_strings_are_checked_against_the_declared_parameters():
    values = parse_query(spans.PARAMS, MultiDict([("model", "gpt-4o"), ("attribute", "a=b=c"), ("attribute", "k=")]))
    assert values["model"] == "gpt-4o" and values["limit"] == 100
    assert values["attribute"] == [("a", "b=c"), ("k", "")]
    with pytest.raises(BadParameter, match="did you mean 'model'"):
        parse_query(spans.PARAMS, MultiDict([("modle", "x")]))
    with pytest.raises(BadParameter, match=r"^limit: 1001 is above the maximum 1000"):
        parse_query(spans.PARAMS, MultiDict([("limit", "1001")]))
    grouped = parse_query(usage.PARAMS, MultiDict([("group_by", "model, provider,model")]))
    assert grouped["group_by"] == ("model", "provider")
    assert parse_query(usage.PARAMS, MultiDict([("group_by", "")]))["group_by"] == ()
    for bad in ("model,,provider", "model,", "\tmodel", " "):  # what the document's pattern refuses
        with pytest.raises(BadParameter, match=r"^group_by: "):
            parse_query(usage.PARAMS, MultiDict([("group_by", bad)]))


def test_a_cursor_works_only_for_its_own_query_and_secret():
    codec = CursorCodec("secret")
    digest = query_digest("spans", ("service", "a"))
    position = Position(datetime(2026, 11, 30, 10, 0, 0, 123456, UTC), uuid.uuid4().bytes, "00f067aa0ba902b7")
    token = codec.encode(digest, position)
    assert codec.decode(digest, token) == position
    assert CursorCodec("secret").decode(digest, token) == position  # same secret: another receiver
    raw = bytearray(token.encode())
    raw[5] = ord("A") if raw[5] != ord("A") else ord("B")
    for bad_codec, bad_digest, bad_token in (
        (codec, query_digest("spans", ("service", "b")), token),  # other filters (or another project)
        (CursorCodec("other"), digest, token),  # another secret (a restart without query.cursor_secret)
        (codec, digest, raw.decode()),  # tampered
        (codec, digest, "not base64 !"),
        (codec, digest, ""),
    ):
        with pytest.raises(BadParameter, match=r"^cursor: "):
            bad_codec.decode(bad_digest, bad_token)


def _span(span_id: str, parent: str | None, start: int) -> dict:
    return {"span_id": span_id, "parent_span_id": parent, "start": start}


def test_trace_tree_depth_first_with_orphans_and_cycles_as_roots():
    spans_ = [
        _span("a", None, 0),
        _span("b", "a", 1),
        _span("c", "b", 2),
        _span("d", "a", 3),
        _span("e", "missing", 4),  # its parent was never sent: a root
        _span("x", "y", 5),  # x and y: a cycle, reachable from no root
        _span("y", "x", 6),
    ]
    roots = traces._tree_order(spans_)
    assert [s["span_id"] for s in spans_] == ["a", "b", "c", "d", "e", "x", "y"]
    assert [s["depth"] for s in spans_] == [0, 1, 2, 1, 0, 0, 1]
    assert roots == ["a", "e", "x"]
    assert spans_[0]["children"] == ["b", "d"]


def test_usage_windows_are_whole_buckets_and_bounded():
    now = datetime(2026, 11, 30, 10, 17, 42, tzinfo=UTC)
    query = usage.resolve({"bucket": "1h", "group_by": ("model",)}, None, now)
    assert (query.start, query.end) == (datetime(2026, 11, 29, 11, tzinfo=UTC), datetime(2026, 11, 30, 11, tzinfo=UTC))
    assert query.source == "llm_metrics_1hour"
    assert usage.resolve({"bucket": "1d", "group_by": ("user",)}, None, now).source == "cost_analysis_hourly"
    # By environment without the user: the small rollup of migration 016, not a row per user and hour.
    by_environment = usage.resolve({"bucket": "1d", "group_by": ("environment", "model")}, None, now)
    assert by_environment.source == "usage_environment_hourly"
    assert usage.resolve({"bucket": "1h", "environment": "prod"}, None, now).source == "usage_environment_hourly"
    both = usage.resolve({"bucket": "1h", "group_by": ("environment",), "user_id": "u1"}, None, now)
    assert both.source == "cost_analysis_hourly"
    with pytest.raises(BadParameter, match=r"^bucket: 1m cannot be combined with user"):
        usage.resolve({"bucket": "1m", "group_by": ("user",)}, None, now)
    with pytest.raises(BadParameter, match=r"^from: the window holds 2881 buckets"):
        usage.resolve({"bucket": "1m", "from": now - timedelta(days=2)}, None, now)
