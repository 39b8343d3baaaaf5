"""A status report as a few readable lines (terminal /ping; the Discord /ping formats its own embed)."""

from __future__ import annotations

from app.conversation.service import ServiceStatus


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def format_engine(engine: object) -> str:
    """One line per engine: its state, breaker, last latency and last error kind."""
    fields = getattr(engine, "__dict__", None) or {
        name: getattr(engine, name) for name in getattr(engine, "__slots__", ())
    }
    name = fields.get("name", "?")
    parts = [f"{key}={value}" for key, value in fields.items() if key != "name" and value not in (None, "", {})]
    return f"{name}: " + ", ".join(parts)


def format_status(status: ServiceStatus) -> str:
    database = (
        f"ok, {status.database_round_trip_ms:.1f} ms round trip" if status.database_ok else "NOT REACHABLE"
    )
    lines = [
        f"Database: {status.database} ({database})",
        f"Tokens counted by: {status.token_counter}",
        "Engines:",
        *(f"  {format_engine(engine)}" for engine in status.engines),
        f"Uptime: {format_duration(status.uptime_s)}",
    ]
    return "\n".join(lines)
