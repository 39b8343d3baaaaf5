"""The operator's HTTP endpoints, served from the bot's own event loop: `/healthz`, `/readyz`, `/metrics`.

Ready means: every shard of this process is connected to Discord's gateway, the database answers and a write
works now (a probe write of its own, not the last turn's outcome), and at least one engine other than echo
would take a call (its breaker closed, or half open: the next turn is its probe). `/readyz` answers 200 or 503
with a JSON body naming each check and what is wrong. Every check is bounded in time (CHECK_BOUND_S): a stuck
database makes readiness fail, never hang.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from aiohttp import web

from app.bot.bot import KortanaBot
from app.conversation.metrics import CONTENT_TYPE
from app.conversation.service import ServiceStatus
from app.engines import ECHO

log = logging.getLogger(__name__)
CHECK_BOUND_S = 2.0


class EndpointsUnavailable(Exception):
    """The endpoints cannot listen where the settings say; the message is the one line to show the operator."""


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    discord: Check
    database: Check
    engines: Check

    @property
    def ready(self) -> bool:
        return self.discord.ok and self.database.ok and self.engines.ok

    def as_json(self) -> dict[str, object]:
        return {"ready": self.ready, "checks": {name: asdict(check) for name, check in self._checks()}}

    def _checks(self) -> list[tuple[str, Check]]:
        return [("discord", self.discord), ("database", self.database), ("engines", self.engines)]


def discord_check(bot: KortanaBot) -> Check:
    if not bot.accepting_turns:
        return Check(False, "shutting down")
    if bot.is_closed():
        return Check(False, "the connection to Discord is closed")
    if not bot.is_ready():
        return Check(False, "not connected to Discord yet")
    down = sorted(shard_id for shard_id, shard in bot.shards.items() if shard.is_closed())
    if down:
        return Check(False, f"shard(s) {', '.join(map(str, down))} disconnected from the gateway")
    return Check(True, f"{len(bot.shards)} shard(s) connected")


def database_check(status: ServiceStatus) -> Check:
    if status.database_timed_out:
        return Check(False, f"no answer within {CHECK_BOUND_S:g} s")
    if status.database_write_failure is not None:
        return Check(False, f"writes fail: {status.database_write_failure}")
    if status.database_round_trip_ms is None:
        return Check(False, "not reachable")
    return Check(True, f"{status.database_kind}, {status.database_round_trip_ms:.1f} ms round trip")


def engines_check(status: ServiceStatus) -> Check:
    engines = [engine for engine in status.engines if engine.configured and engine.name != ECHO]
    if not engines:
        return Check(False, "no engine but echo is configured")
    usable = [engine.name for engine in engines if engine.breaker != "open"]
    if not usable:
        return Check(False, "every engine's breaker is open: " + ", ".join(engine.name for engine in engines))
    return Check(True, "usable: " + ", ".join(usable))


async def bounded_status(bot: KortanaBot, *, probe_writes: bool = False) -> ServiceStatus:
    """The service's status with its database part bounded (the engines' states are in memory: always there)."""
    return await bot.service.status(probe_writes=probe_writes, database_bound_s=CHECK_BOUND_S)


async def readiness(bot: KortanaBot) -> Readiness:
    status = await bounded_status(bot, probe_writes=True)  # writes work now, not only at the last turn
    if bot.metrics is not None:  # a probe's check is a database check too
        bot.metrics.read_status(status)
    return Readiness(discord_check(bot), database_check(status), engines_check(status))


def ops_app(bot: KortanaBot) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(_request: web.Request) -> web.Response:
        report = await readiness(bot)
        return web.json_response(report.as_json(), status=200 if report.ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        if bot.metrics is None:
            raise web.HTTPNotFound(text="this bot keeps no metrics")
        bot.metrics.read_status(await bounded_status(bot))
        return web.Response(body=bot.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def bind_failure(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"METRICS_PORT {port} on {host} is in use (each process needs its own)"
    return f"cannot serve METRICS_PORT {port} on {host}: {error.strerror or error}"


@asynccontextmanager
async def ops_endpoints(bot: KortanaBot, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints on host:port (0: any free port) while the block runs; yields the port bound."""
    runner = web.AppRunner(ops_app(bot), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            raise EndpointsUnavailable(bind_failure(host, port, error)) from error
        bound = runner.addresses[0][1]
        log.info("Health and metrics endpoints on http://%s:%d (/healthz, /readyz, /metrics)", host, bound)
        yield bound
    finally:
        await runner.cleanup()
