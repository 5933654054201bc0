"""Prices: the receiver's cost equals genai-prices' own calculation; unpriced is not free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from genai_prices import Usage, calc_price

from receiver.convert.common import ConvertOptions
from receiver.convert.price_source import GenaiPrices, provider_name
from receiver.convert.pricing import ModelPrice, PriceBook, compute_cost
from receiver.convert.traces import convert_traces
from receiver.schema import TRACES_COLUMNS
from receiver.storage.pricing_store import PricingSchemaError, load_price_book, seed_prices
from tests.support.otlp import export_grpc, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until

MAINTAINED = GenaiPrices()
BOOK = PriceBook([ModelPrice("openai", "gpt-4o", Decimal("2"), Decimal("8"))], MAINTAINED, MAINTAINED.name)
USAGE = {"input_tokens": 300_000, "cache_read_tokens": 1200, "cache_write_tokens": 300, "output_tokens": 5000}


def test_every_model_in_genai_prices_costs_what_genai_prices_says():
    moment = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    compared = 0
    for provider in MAINTAINED._snapshot.providers:
        for info in provider.models:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = calc_price(Usage(**USAGE), info.id, provider_id=provider.id, genai_request_timestamp=moment)
            except (LookupError, ValueError):
                continue  # genai-prices cannot price it either
            price = MAINTAINED(provider_name(provider.id), info.id, moment.date())
            price = price.at(moment) if hasattr(price, "at") else price
            got = compute_cost(price, 300_000, 5000, 1200, 300)
            assert (got.input, got.output, got.total) == (want.input_price, want.output_price, want.total_price), (
                provider.id,
                info.id,
            )
            compared += 1
    assert compared > 1000


def _row(attributes: dict) -> dict:
    out = convert_traces(trace_request([span(attributes=attributes)], "svc"), ConvertOptions(price_book=BOOK))
    return dict(zip(TRACES_COLUMNS, out.rows[0], strict=True))


def test_a_zero_span_cost_on_a_call_with_tokens_falls_back_to_the_price_table():
    attributes = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
        "gen_ai.usage.cost": 0,  # OpenLIT, for a model it has no price for
    }
    row = _row(attributes)
    assert row["cost_source"] == "pricing"
    assert row["total_cost"] == Decimal("0.0015")  # 1000 x 1 + 100 x 5 per million


@pytest.mark.parametrize(
    ("attributes", "source"),
    [
        ({"gen_ai.provider.name": "ollama", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5}, "unpriced"),
        ({"gen_ai.request.model": "x", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.cost": 0}, "unpriced"),
        ({"gen_ai.request.model": "x", "gen_ai.usage.cost": 0}, "span"),  # no tokens: a real zero
    ],
)
def test_unpriced_is_not_free(attributes, source):
    row = _row(attributes)
    assert row["cost_source"] == source
    assert row["total_cost"] == (Decimal(0) if source == "span" else None)


def test_a_local_price_wins_over_genai_prices():
    row = _row({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000})
    assert row["total_cost"] == Decimal("0.002")


# --- the pricing commands, SIGHUP and an old schema, as an operator meets them ------------------------

ACME_PRICES = """
[[model]]
provider = "openai"
model = "acme-support-ft"
input = "{input}"
output = "2"
"""


def pricing_cli(*args: str, dsn: str = "", price_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if dsn:
        env["DATABASE_URL"] = dsn
    if price_file is not None:
        env["OBSERVATORY__PRICING__FILE"] = str(price_file)
    return subprocess.run(
        [sys.executable, "-m", "receiver", "pricing", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_pricing_lookup_says_which_price_applies_and_where_it_comes_from(tmp_path):
    haiku = ("--provider", "anthropic", "--model", "claude-haiku-4-5-20251001", "--date", "2026-01-15")
    found = pricing_cli("lookup", *haiku)
    assert found.returncode == 0, found.stderr
    lines = dict(line.split(None, 1) for line in found.stdout.splitlines())
    assert lines["model"] == "claude-haiku-4-5-20251001 -> priced as claude-haiku-4-5"
    assert lines["source"].startswith(f"genai-prices {genai_prices.__version__} (provider anthropic in genai-prices")
    assert "starts with claude-haiku-4-5" in lines["source"]  # the matching rule
    assert (lines["input"], lines["output"]) == ("1 USD per million tokens", "5 USD per million tokens")
    assert lines["cache_read"] == "0.1 USD per million tokens"

    price_file = tmp_path / "prices.toml"
    price_file.write_text(ACME_PRICES.format(input="1.5"))
    local = pricing_cli("lookup", "--provider", "OpenAI", "--model", "acme-support-ft-2026", price_file=price_file)
    assert local.returncode == 0, local.stderr
    lines = dict(line.split(None, 1) for line in local.stdout.splitlines())
    assert lines["provider"] == "openai (from 'OpenAI') -> priced as openai"
    assert lines["model"] == "acme-support-ft-2026 -> priced as acme-support-ft"
    assert lines["source"].startswith("file (local price")
    assert lines["input"] == "1.5 USD per million tokens"

    missing = pricing_cli("lookup", "--provider", "ollama", "--model", "llama3:8b")
    assert missing.returncode == 1 and "cost_source = 'unpriced'" in missing.stderr and "pricing.file" in missing.stderr
    bad_date = pricing_cli("lookup", "--model", "gpt-4o", "--date", "yesterday")
    assert bad_date.returncode == 2 and "--date 'yesterday'" in bad_date.stderr


def test_pricing_list_shows_local_and_maintained_prices_in_effect(tmp_path):
    price_file = tmp_path / "prices.toml"
    price_file.write_text(ACME_PRICES.format(input="1.5"))
    listed = pricing_cli("list", "--provider", "openai", price_file=price_file)
    assert listed.returncode == 0, listed.stderr
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["provider", "model", "input", "output", "cache_read", "cache_write", "effective", "source"]
    by_model = {row[1]: row for row in rows}
    assert by_model["acme-support-ft"] == ["openai", "acme-support-ft", "1.5", "2", "-", "-", "1970-01-01", "file"]
    assert by_model["gpt-4o-mini"][2:4] == ["0.15", "0.6"]
    assert by_model["gpt-4o-mini"][7] == f"genai-prices {genai_prices.__version__}"
    assert {row[0] for row in rows} == {"openai"}
    assert f"{len(rows)} prices in effect on" in listed.stderr
    only = pricing_cli("list", "--model", "haiku-4-5")
    found = [line.split("\t")[:2] for line in only.stdout.splitlines()[1:]]
    assert ["anthropic", "claude-haiku-4-5"] in found
    assert ["aws.bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0"] in found
    assert all("haiku-4-5" in model for _, model in found)


async def test_sighup_rereads_the_price_file(database, tmp_path):
    """A real receiver prices a span from the price file; the file changes and SIGHUP makes the next span
    take the new price, while the stored one keeps the price of its time; model_pricing records both sources."""
    price_file = tmp_path / "prices.toml"
    price_file.write_text(ACME_PRICES.format(input="1"))
    proc = ReceiverProcess(database.dsn, tmp_path, pricing__file=price_file)
    await proc.start()
    try:
        service = f"sighup-{uuid.uuid4().hex[:6]}"
        usage = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "acme-support-ft"}
        usage |= {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
        await export_grpc(proc.grpc_target, trace_request([span("before", attributes=usage)], service))
        await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 1, service)

        price_file.write_text(ACME_PRICES.format(input="3"))
        reloads = proc.log_path.read_text().count('"event": "reloaded"')
        os.kill(proc.proc.pid, signal.SIGHUP)

        async def reloaded() -> bool:
            return proc.log_path.read_text().count('"event": "reloaded"') > reloads

        await wait_until(reloaded, timeout=60, what=lambda: f"reloaded\n{proc.log_tail()}")
        await export_grpc(proc.grpc_target, trace_request([span("after", attributes=usage)], service))
        await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)
        rows = await database.fetch(
            "SELECT span_name, total_cost, cost_source FROM llm_traces WHERE service_name = $1", service
        )
        costs = {r["span_name"]: (r["total_cost"], r["cost_source"]) for r in rows}
        assert costs == {"before": (Decimal("0.0012"), "pricing"), "after": (Decimal("0.0032"), "pricing")}
        recorded = await database.fetch(
            "SELECT source, source_version, input_price_per_million FROM model_pricing WHERE model = $1 OR "
            "(model = 'claude-haiku-4-5' AND provider = 'anthropic')",
            "acme-support-ft",
        )
        assert sorted((r["source"], r["source_version"], r["input_price_per_million"]) for r in recorded) == [
            ("file", None, Decimal("3")),
            ("genai-prices", genai_prices.__version__, Decimal("1")),
        ]
    finally:
        await proc.stop()


async def test_prices_on_a_database_without_migration_012_name_the_fix(database):
    """A database at migration 011 (auto_migrate off, or a receiver rolled forward before `migrate`):
    reading or recording prices refuses with the fix, not an SQL error."""
    migrated = subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    conn = await database.connect()
    try:
        await conn.execute("ALTER TABLE model_pricing DROP COLUMN reasoning_price_per_million, DROP COLUMN match_rule")
        with pytest.raises(PricingSchemaError, match=r"no column match_rule, reasoning_price_per_million.*migrate"):
            await load_price_book(conn)
        with pytest.raises(PricingSchemaError, match="012_pricing_sources"):
            await seed_prices(conn, [])
    finally:
        await conn.close()
    listed = pricing_cli("list", "--database", dsn=database.dsn)
    assert listed.returncode == 1
    assert "predates migration 012_pricing_sources. Run `llm-observatory-receiver migrate`" in listed.stderr
