"""`kortana` / `python -m app`: run (the Discord bot) | chat (terminal) | status | db upgrade|downgrade | usage |
models pull|list | bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from app.config import Settings, SettingsError, load_settings
from app.conversation.log_context import configure_logging
from app.conversation.setup import migrate_when_reachable, open_service
from app.conversation.usage import UsageLedger
from app.storage import DatabaseUnavailable, UsageStore, UsageTotal, create_engine, describe, downgrade, migrate

log = logging.getLogger("kortana")
MAX_USAGE_DAYS = 3660  # `kortana usage --days`: ten years


def kortana_version() -> str:
    try:
        return version("kortana")
    except PackageNotFoundError:
        return "dev"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format, sys.stderr)
        return asyncio.run(args.handler(settings, args))
    except SettingsError as error:
        print(f"kortana: {error}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as error:
        print(f"kortana: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kortana", description="Kor'tana, a Discord companion that remembers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"kortana {kortana_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("run", help="connect to Discord and chat there").set_defaults(handler=_run)
    commands.add_parser("chat", help="chat in this terminal").set_defaults(handler=_chat)

    status = commands.add_parser("status", help="is the running bot ready? (exit 0 ready, 1 not, 2 no answer)")
    status.add_argument("--url", help="its /readyz (default: from METRICS_HOST and METRICS_PORT)")
    status.set_defaults(handler=_status)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_db_upgrade)
    down = db.add_parser("downgrade", help="revert migrations to a revision")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)

    usage = commands.add_parser("usage", help="tokens and answers per day, server and engine")
    usage.add_argument("--days", type=_days, default=7, help="UTC days to show, today included (default: 7)")
    usage.set_defaults(handler=_usage)

    models = commands.add_parser("models", help="local GGUF models: pull one from the Hugging Face Hub, list them")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    pull = models_commands.add_parser("pull", help="download a model now, as LOCAL_MODEL names it")
    pull.add_argument("name", help="owner/name[:quantisation or file name] on the Hub, or a GGUF file")
    pull.set_defaults(handler=_models_pull)
    listing = models_commands.add_parser("list", help="the cached models, their sizes, the one in use")
    listing.add_argument("--measure", action="store_true", help="load the model in use and measure its tokens/s")
    listing.set_defaults(handler=_models_list)

    bench = commands.add_parser("bench", help="run benchmarks, print tables")
    bench.add_argument(
        "what",
        nargs="*",
        default=[],
        help="sections to run: storage, local, postgres, settings, metrics, recall, search, failover, discord, "
        "hub (default: storage local postgres; failover, discord and hub need a source checkout)",
    )
    bench.add_argument("--quick", action="store_true", help="fewer turns, for a smoke run")
    bench.set_defaults(handler=_bench)
    return parser


async def _chat(settings: Settings, _args: argparse.Namespace) -> int:
    from app.terminal import chat

    service = await _open(settings)
    try:
        await chat(service)
    finally:
        await service.close()
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    from app.bot.status_check import ask_readiness, ready_url

    url = args.url or ready_url(settings)
    if url is None:
        print("kortana status: METRICS_PORT is not set (or give --url)", file=sys.stderr)
        return 2
    code, text = await ask_readiness(url)
    print(text, file=sys.stdout if code != 2 else sys.stderr)
    return code


async def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from app.bot.runner import run_bot

    return await run_bot(settings, opener=_open, version=kortana_version())


async def _open(settings: Settings):  # type: ignore[no-untyped-def]
    service = await open_service(settings)
    print(f"Kor'tana {kortana_version()} — memory: {describe(settings.database_url)}", file=sys.stderr)
    return service


async def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    return await _change_schema(settings, lambda engine: migrate(engine, args.revision), args.revision)


async def _db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    return await _change_schema(settings, lambda engine: downgrade(engine, args.revision), args.revision)


async def _change_schema(settings: Settings, change, revision: str) -> int:  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url, timeout_s=settings.database_timeout_seconds)
    try:
        await migrate_when_reachable(engine, settings, change)
    finally:
        await engine.dispose()
    print(f"Database {describe(settings.database_url)} is at {revision}.", file=sys.stderr)
    return 0


async def _usage(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url, timeout_s=settings.database_timeout_seconds)
    try:
        await migrate_when_reachable(engine, settings, lambda ready: migrate(ready, "head"))
        totals = await UsageLedger(UsageStore(engine)).totals(args.days)
    finally:
        await engine.dispose()
    print(usage_table(totals, args.days))
    return 0


def usage_table(totals: list[UsageTotal], days: int) -> str:
    """The operator's view of what answers cost: one row per UTC day, server and engine, newest day first."""
    span = "today (UTC)" if days == 1 else f"in the last {days} days (UTC)"
    if not totals:
        return f"No answers {span}."
    rows = [("day", "server", "engine", "tokens", "answers")]
    rows += [
        (str(t.day), str(t.guild_id) if t.guild_id else "DMs and terminal", t.engine, f"{t.tokens:,}", f"{t.answers:,}")
        for t in totals
    ]
    rows.append(("", "", "total", f"{sum(t.tokens for t in totals):,}", f"{sum(t.answers for t in totals):,}"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numbers = {3, 4}  # right-aligned

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if column in numbers else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return f"Tokens and answers {span}:\n" + "\n".join(line(row) for row in rows)


def _days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_USAGE_DAYS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_USAGE_DAYS}")
    return value


async def _models_pull(settings: Settings, args: argparse.Namespace) -> int:
    from app.engines.local.hub_models import HubModelError, describe_size
    from app.engines.local.hub_progress import progress_for
    from app.engines.local.model_choice import configured_model

    wanted = settings.model_copy(update={"local_model": args.name})
    try:
        model = await asyncio.to_thread(configured_model, wanted, progress_for())
    except HubModelError as error:
        print(f"kortana models pull: {error}", file=sys.stderr)
        return 1
    assert model is not None
    quantisation = model.quantisation or "?"
    print(
        f"{args.name}: {model.path} ({describe_size(model.size_bytes)}, quantisation {quantisation}); use it with "
        f"LOCAL_MODEL={args.name}"
    )
    return 0


async def _models_list(settings: Settings, args: argparse.Namespace) -> int:
    from app.engines.local.hub_models import HubErrorKind, HubModelError
    from app.engines.local.model_choice import configured_model
    from app.engines.local.models_report import measure_tokens_per_s, models_table

    try:
        in_use = await asyncio.to_thread(configured_model, settings, offline=True)
    except HubModelError as error:
        if error.kind is HubErrorKind.NOT_CACHED:
            missing = f"In use: none yet, {error}: kortana models pull {settings.local_model}"
        else:
            missing = f"In use: the bundled model, as LOCAL_MODEL cannot be used: {error}"
        print(models_table(None, missing=missing))
        return 0
    tokens_per_s = None
    if args.measure and in_use is not None:
        tokens_per_s = await measure_tokens_per_s(in_use, settings.local_context_window)
    print(models_table(in_use, tokens_per_s=tokens_per_s))
    return 0


async def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from app.bench import UnknownSection, run_benchmarks

    try:
        await run_benchmarks(settings, sections=args.what, quick=args.quick)
    except UnknownSection as error:
        print(f"kortana bench: {error}", file=sys.stderr)
        return 2
    return 0
