"""What /ping says about the database: reachable, not reachable, or reachable but refusing writes."""

from __future__ import annotations

from dataclasses import replace

from app.conversation.service import ServiceStatus
from app.conversation.status import format_status

HEALTHY = ServiceStatus(
    database="/data/kortana.db",
    database_kind="sqlite",
    database_ok=True,
    database_round_trip_ms=0.4,
    engines=[],
    uptime_s=75,
    token_counter="estimate",
)


def test_a_healthy_database_shows_its_round_trip() -> None:
    assert "Database: /data/kortana.db (ok, 0.4 ms round trip)" in format_status(HEALTHY)
    assert "Database: sqlite (ok, 0.4 ms round trip)" in format_status(HEALTHY, public=True)
    assert "waiting" not in format_status(HEALTHY)


def test_a_database_that_refuses_writes_is_not_shown_healthy() -> None:
    full = replace(HEALTHY, database_ok=False, database_write_failure="database or disk is full", unsaved_answers=2)
    for public in (False, True):
        text = format_status(full, public=public)
        assert "NOT WRITABLE (database or disk is full)" in text and "ok" not in text.split("\n")[0]
        assert "Answers waiting to be stored: 2" in text


def test_an_unreachable_database() -> None:
    gone = replace(HEALTHY, database_ok=False, database_round_trip_ms=None)
    assert "Database: /data/kortana.db (NOT REACHABLE)" in format_status(gone)
