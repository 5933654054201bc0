"""`llm-observatory-receiver run | migrate | db verify | db maintain | keys … | pricing lookup | pricing list |
config check`.

Exit codes: 0 success, 1 runtime failure (the message says what to do), 2 invalid configuration or
usage (one line per problem, naming the key).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import uvloop

from receiver import __version__
from receiver.app.config import Config, ConfigError, load_config, worker_count
from receiver.endpoints import UNIX_PREFIX, StartupError
from receiver.storage.database import Database
from receiver.storage.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from receiver.storage.migrate import MigrationError, migrate
from receiver.storage.pricing_store import PricingFileError
from receiver.telemetry.logging import configure_logging, get_logger

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _default_config_path() -> str | None:
    candidate = Path("config/receiver.toml")
    return str(candidate) if candidate.exists() else None


def _load(path: str | None) -> Config:
    return load_config(path if path is not None else _default_config_path())


async def _serve(config: Config, config_path: str | None, worker: Any = None) -> int:
    from receiver.app.service import Receiver  # imported late: `config check` stays light
    from receiver.telemetry.systemd import SystemdNotifier

    # A worker's environment has no NOTIFY_SOCKET (its supervisor speaks to systemd): the notifier is idle.
    receiver = Receiver(config, SystemdNotifier.from_environment(), worker=worker)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, receiver.request_stop)

    def on_hup() -> asyncio.Task[None] | None:
        try:
            fresh = _load(config_path)
        except ConfigError as exc:
            get_logger("cli").error("SIGHUP: configuration invalid; nothing reloaded", problems=exc.problems)
            return None
        return loop.create_task(receiver.reload(fresh))

    reloads: set[asyncio.Task[None]] = set()  # keep references until each reload finishes

    def on_hup_task() -> None:
        task = on_hup()
        if task is not None:
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup_task)
    try:
        await receiver.start()
    except (StartupError, EmbeddedDatabaseError) as exc:
        get_logger("cli").error("cannot start", error=str(exc))
        await receiver.shutdown()
        return EXIT_FAILURE
    await receiver.wait_stopped()
    await receiver.shutdown()
    if receiver.fatal is not None:
        print(f"error: {receiver.fatal}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _with_database(config: Config, action: Callable[[Any], Awaitable[int]]) -> int:
    """Run `action(conn)` against the configured database (starting the embedded one if needed)."""
    embedded = None
    dsn = config.database.url
    if not dsn:
        embedded = EmbeddedPostgres(config.database.embedded_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        conn = await Database(dsn, config.database.connect_timeout_s).connect("cli")
        try:
            return await action(conn)
        finally:
            await conn.close()
    finally:
        if embedded is not None and embedded.started_here:
            await asyncio.to_thread(embedded.stop)


def _workers_arg(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1-256) or auto")
    return int(text)


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.workers is not None:  # --workers overrides otlp.workers
        config = dataclasses.replace(config, otlp=dataclasses.replace(config.otlp, workers=args.workers))
    configure_logging(config.logging.level, config.logging.format)
    config_path = args.config if args.config else _default_config_path()
    if args.worker_index is not None:  # started by the supervisor
        from receiver.app.service import WorkerRole

        structlog.contextvars.bind_contextvars(worker=args.worker_index)
        role = WorkerRole(args.worker_index, UNIX_PREFIX + args.admin_socket)
        return uvloop.run(_serve(config, config_path, role))
    count = worker_count(config.otlp.workers)
    if count > 1:
        from receiver.app.workers import Supervisor
        from receiver.telemetry.systemd import SystemdNotifier

        return uvloop.run(Supervisor(config, config_path, count, SystemdNotifier.from_environment()).run())
    return uvloop.run(_serve(config, config_path))


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    configure_logging(config.logging.level, config.logging.format)

    async def action(conn: Any) -> int:
        from receiver.convert.price_source import GenaiPrices
        from receiver.storage.pricing_store import default_pricing_file, read_pricing_file, seed_prices

        report = await migrate(conn, config.database.flavor)
        for label in report.applied:
            print(f"applied {label} ({report.flavor})")
        for line in report.distributed:
            print(f"citus: {line}")
        print(f"schema up to date ({report.flavor} flavor, {report.already + len(report.applied)} migrations)")
        # Receivers that run as a writer role (migration 011) read prices but may not write them.
        path = Path(config.pricing.file) if config.pricing.file else default_pricing_file()
        prices = read_pricing_file(path)
        maintained = GenaiPrices() if config.pricing.source == "genai-prices" else None
        await seed_prices(conn, prices, maintained)
        print(f"seeded {len(prices)} model prices from {path}")
        if maintained is not None:
            print(f"recorded the prices of genai-prices {maintained.version} in model_pricing")
        return EXIT_OK

    try:
        return asyncio.run(_with_database(config, action))
    except (MigrationError, PricingFileError, EmbeddedDatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_db_verify(args: argparse.Namespace) -> int:
    """Every check on its own line, PASS or FAIL; exit 1 if any failed."""
    config = _load(args.config)
    configure_logging(config.logging.level, config.logging.format)

    async def action(conn: Any) -> int:
        from receiver.storage.verify import verify

        checks = await verify(conn, config.maintenance.partition_days_ahead, config.maintenance.partition_hours)
        for check in checks:
            print(check.line())
        failed = sum(1 for c in checks if not c.ok)
        print(f"{len(checks) - failed} passed, {failed} failed", file=sys.stderr)
        return EXIT_FAILURE if failed else EXIT_OK

    try:
        return asyncio.run(_with_database(config, action))
    except (EmbeddedDatabaseError, OSError) as exc:
        print(f"FAIL  database: {exc}")
        return EXIT_FAILURE


def cmd_db_maintain(args: argparse.Namespace) -> int:
    """One maintenance pass, as the receiver runs every maintenance.interval_s; exit 1 if a step failed."""
    config = _load(args.config)
    configure_logging(config.logging.level, config.logging.format)

    async def action(conn: Any) -> int:
        from receiver.app.service import maintenance_settings
        from receiver.storage.maintenance import Maintenance
        from receiver.storage.migrate import applied_flavor
        from receiver.telemetry.metrics import Metrics

        flavor = await applied_flavor(conn)
        if flavor is None:
            print("error: the database is not migrated; run `llm-observatory-receiver migrate` first", file=sys.stderr)
            return EXIT_FAILURE

        async def same_connection() -> Any:
            return conn

        maintenance = Maintenance(same_connection, flavor, maintenance_settings(config), Metrics())
        report = await maintenance.run_once(rebuild_rollups=args.rebuild_rollups)
        for line in report.summary_lines():
            print(line)
        return EXIT_OK if report.ok else EXIT_FAILURE  # skipped (another pass running) is not a failure

    try:
        return asyncio.run(_with_database(config, action))
    except (EmbeddedDatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


async def _require_schema(conn: Any) -> bool:
    from receiver.storage.migrate import pending

    missing = await pending(conn)
    if missing:
        print(
            f"error: the database is not migrated ({', '.join(missing)} pending); "
            "run `llm-observatory-receiver migrate` first",
            file=sys.stderr,
        )
        return False
    return True


def _run_keys(args: argparse.Namespace, action: Callable[[Any], Awaitable[int]]) -> int:
    config = _load(args.config)
    configure_logging(config.logging.level, config.logging.format)

    async def guarded(conn: Any) -> int:
        return await action(conn) if await _require_schema(conn) else EXIT_FAILURE

    try:
        return asyncio.run(_with_database(config, guarded))
    except (EmbeddedDatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create a key for a project (created if new); the key is printed once and only its hash is kept."""
    from receiver.storage.api_keys import SCOPE_CHOICES, create_key, slug_of

    try:
        slug_of(args.project)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.rate is not None and not args.rate > 0:  # also refuses nan
        print(f"error: --rate {args.rate}: items per second must be a positive number", file=sys.stderr)
        return EXIT_CONFIG
    scopes = SCOPE_CHOICES[args.scope]

    async def action(conn: Any) -> int:
        created = await create_key(conn, args.project, args.name, args.expires_in_days, scopes, args.rate)
        print(created.key)
        rate = f", at most {args.rate:g} items/s" if args.rate is not None else ""
        print(
            f"created key {created.id} for project {created.project_slug} (scopes: {', '.join(scopes)}{rate}); "
            "this is the only time the key is shown: clients send it as 'Authorization: Bearer <key>' "
            "(auth.mode = api_key)",
            file=sys.stderr,
        )
        return EXIT_OK

    return _run_keys(args, action)


def cmd_keys_list(args: argparse.Namespace) -> int:
    from receiver.storage.api_keys import list_keys

    def when(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"

    async def action(conn: Any) -> int:
        rows = await list_keys(conn)
        print("id\tproject\tname\tprefix\tscopes\trate\tcreated\texpires\trevoked\tlast_used")
        for r in rows:
            print(
                "\t".join(
                    [
                        str(r["id"]),
                        r["project"],
                        r["name"],
                        r["key_prefix"] + "…",
                        ",".join(r["scopes"]),
                        f"{r['rate_items_per_s']:g}/s" if r["rate_items_per_s"] is not None else "-",
                        when(r["created_at"]),
                        when(r["expires_at"]),
                        when(r["revoked_at"]),
                        when(r["last_used_at"]),
                    ]
                )
            )
        return EXIT_OK

    return _run_keys(args, action)


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from uuid import UUID

    from receiver.storage.api_keys import revoke_key

    try:
        key_id = UUID(args.id)
    except ValueError:
        print(f"error: {args.id!r} is not a key id (see `keys list`)", file=sys.stderr)
        return EXIT_CONFIG

    async def action(conn: Any) -> int:
        if await revoke_key(conn, key_id):
            print(f"revoked {key_id}; receivers stop accepting it within auth.refresh_interval_s")
            return EXIT_OK
        print(f"error: no active key with id {key_id} (see `keys list`)", file=sys.stderr)
        return EXIT_FAILURE

    return _run_keys(args, action)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config.otlp.tls.cert_file:  # the certificate files are read as `run` would read them
        from receiver.frontends.tls import TlsError, read_material

        try:
            read_material(config.otlp.tls)
        except TlsError as exc:
            raise ConfigError(exc.problems) from None
    for section, values in config.effective().items():
        print(f"[{section}]")
        for key, value in values.items():
            shown = "***" if key.endswith("url") and isinstance(value, str) and "@" in value else value
            print(f"{key} = {_toml_value(shown)}")
        print()
    print("configuration is valid", file=sys.stderr)
    return EXIT_OK


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-observatory-receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="TOML config (default: config/receiver.toml if present)")
        return p

    run = with_config(sub.add_parser("run", help="serve OTLP until SIGTERM"))
    run.add_argument(
        "--workers",
        type=_workers_arg,
        metavar="N",
        help="processes sharing the OTLP ports (otlp.workers; auto = one per CPU core)",
    )
    run.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    run.add_argument("--admin-socket", help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)
    with_config(sub.add_parser("migrate", help="apply pending migrations and exit")).set_defaults(func=cmd_migrate)
    db_cmd = sub.add_parser("db", help="database commands")
    db_sub = db_cmd.add_subparsers(dest="db_command", required=True)
    with_config(
        db_sub.add_parser("verify", help="check tables, rollups, indexes, foreign keys, partitions / policies")
    ).set_defaults(func=cmd_db_verify)
    maintain = with_config(
        db_sub.add_parser("maintain", help="run one maintenance pass (partitions, rollups, retention) and exit")
    )
    maintain.add_argument(
        "--rebuild-rollups",
        action="store_true",
        help="native: empty the rollups and recompute them from llm_traces (e.g. after restoring a dump)",
    )
    maintain.set_defaults(func=cmd_db_maintain)
    keys_cmd = sub.add_parser("keys", help="API keys (auth.mode = api_key)")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True)
    create = with_config(keys_sub.add_parser("create", help="create a key; prints it once"))
    create.add_argument("--project", required=True, help="project name (created if new)")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--expires-in-days", type=int, metavar="DAYS", help="the key stops working after DAYS")
    create.add_argument(
        "--scope",
        choices=("ingest", "read", "all"),
        default="ingest",
        help="ingest: OTLP export; read: the read API; all: both (default: ingest)",
    )
    create.add_argument(
        "--rate",
        type=float,
        metavar="ITEMS_PER_S",
        help="most spans + metric points + log records per second this key may send (token bucket with "
        "auth.rate_burst_s of burst); over it: retryable refusals. Default: no limit",
    )
    create.set_defaults(func=cmd_keys_create)
    with_config(keys_sub.add_parser("list", help="list keys (never their secrets)")).set_defaults(func=cmd_keys_list)
    revoke = with_config(keys_sub.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id", help="key id from `keys list`")
    revoke.set_defaults(func=cmd_keys_revoke)
    from receiver.app import pricing_cli

    pricing_cli.add_parser(sub, with_config, _load)
    config_cmd = sub.add_parser("config", help="configuration commands")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    with_config(config_sub.add_parser("check", help="validate and print the effective configuration")).set_defaults(
        func=cmd_config_check
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
