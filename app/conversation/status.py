"""A status report as a few readable lines, for the terminal's and Discord's /ping. No secrets in it."""

from __future__ import annotations

from app.conversation.service import ServiceStatus
from app.engines.chain import EngineStatus


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


PRIVATE_DETAILS = {"pid"}  # of use to the operator, of none to Discord users


def format_engine(engine: EngineStatus, public: bool = False) -> str:
    """One line per engine: breaker, last latency, calls and failures, last error kind, engine details."""
    if not engine.configured:
        return f"{engine.name}: not configured"
    breaker: str = engine.breaker
    if engine.open_until is not None:
        breaker += f" for {engine.open_until:.0f} s more"
    parts = [f"breaker {breaker}"]
    if engine.last_latency_s is not None:
        parts.append(f"last answer started in {engine.last_latency_s * 1000:.0f} ms")
    parts.append(f"{engine.calls} calls, {engine.failures} failed")
    if engine.last_error_kind:
        parts.append(f"last error: {engine.last_error_kind}")
    parts.extend(
        f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in engine.details.items()
        if value is not None and not (public and key in PRIVATE_DETAILS)
    )
    return f"{engine.name}: " + " · ".join(parts)


def format_status(status: ServiceStatus, public: bool = False) -> str:
    """The terminal shows where the data lives; `public` (Discord) shows only the kind of database."""
    if status.database_write_failure:
        health = f"NOT WRITABLE ({status.database_write_failure})"
    elif status.database_ok and status.database_round_trip_ms is not None:
        health = f"ok, {status.database_round_trip_ms:.1f} ms round trip"
    else:
        health = "NOT REACHABLE"
    where = status.database_kind if public else status.database
    unsaved = status.unsaved_answers
    return "\n".join(
        [
            f"Database: {where} ({health})",
            *([f"Answers waiting to be stored: {unsaved}"] if unsaved else []),
            f"Tokens counted by: {status.token_counter}",
            "Engines:",
            *(f"  {format_engine(engine, public)}" for engine in status.engines),
            f"Uptime: {format_duration(status.uptime_s)}",
        ]
    )
