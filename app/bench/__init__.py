"""`kortana bench`: the benchmarks, each a section that prints tables (the figures are in docs/BENCHMARKS.md).

A section is a module of this package (storage: `turns`, local: `local_model`, postgres: `postgres` and its
`postgres_worker`, settings: `server_rules`, metrics: `ops_overhead`, recall: `recall`, its `recall_dataset` and its
scripted `recall_engine`, search: `search`, failover: `failover`, discord: `discord_e2e`); what they share is
`shared`, and no section imports another. With no section named, `kortana bench` runs the ones that measure this
installation: storage, local (when the local extra is installed) and postgres (when DATABASE_URL is a PostgreSQL
one). settings (a turn with a server's settings and limits checked, against a plain one; on PostgreSQL too when
DATABASE_URL is one), metrics (a turn with the operator's metrics and turn-tagged logs, against a plain one), recall
(the long-conversation memory benchmark, minutes long) and search (one conversation's full-text search in a big
seeded database) run when named. failover, discord and hub (`hub`: a model from a fake Hugging Face Hub) drive the
test suite's fakes of outside services, so they run when named, from a source checkout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from app.bench.discord_e2e import run_discord_section
from app.bench.failover import run_failover_section
from app.bench.hub import run_hub_section
from app.bench.local_model import run_local_section
from app.bench.ops_overhead import run_metrics_section
from app.bench.postgres import run_postgres_section
from app.bench.recall import run_recall_section
from app.bench.search import run_search_section
from app.bench.server_rules import run_settings_section
from app.bench.shared import SourceCheckoutNeeded, machine_description
from app.bench.turns import run_storage_section
from app.config import Settings

SECTIONS = ("storage", "local", "postgres", "settings", "metrics", "recall", "search", "failover", "discord", "hub")
DEFAULT_SECTIONS = ("storage", "local", "postgres")


class UnknownSection(ValueError):
    """A section name that is not one of SECTIONS."""


async def run_benchmarks(settings: Settings, sections: Sequence[str] = (), quick: bool = False) -> None:
    """Run `sections` (the default ones when empty) in their order in SECTIONS; `quick` for a smoke run."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise UnknownSection(f"no benchmark section {', '.join(sorted(unknown))}; the sections: {', '.join(SECTIONS)}")
    wanted = set(sections) or set(DEFAULT_SECTIONS)
    print(f"Machine: {machine_description()}")
    with tempfile.TemporaryDirectory(prefix="kortana-bench-") as temporary:
        directory = Path(temporary)
        if "storage" in wanted:
            await run_storage_section(directory, quick)
        if "local" in wanted:
            await run_local_section(quick)
        if "postgres" in wanted:
            if settings.database_url.startswith("postgresql"):
                await run_postgres_section(settings.database_url, directory, quick)
            else:
                print("\n(PostgreSQL section skipped: set DATABASE_URL=postgresql+asyncpg://... to run it)")
        if "settings" in wanted:
            postgres_url = settings.database_url if settings.database_url.startswith("postgresql") else None
            await run_settings_section(directory, postgres_url, quick)
        if "metrics" in wanted:
            await run_metrics_section(directory, quick)
        if "recall" in wanted:
            await run_recall_section(settings, directory, quick)
        if "search" in wanted:
            await run_search_section(directory, quick)
        sections_of_the_test_kit = (
            ("failover", run_failover_section),
            ("discord", run_discord_section),
            ("hub", run_hub_section),
        )
        for name, run_section in sections_of_the_test_kit:
            if name in wanted:
                try:
                    await run_section(directory, quick)
                except SourceCheckoutNeeded as needed:
                    print(f"\n({needed})")
