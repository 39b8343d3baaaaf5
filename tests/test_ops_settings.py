"""The operations settings: off by default, bounded, and a wrong value is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bot.status_check import ready_url
from app.config import SettingsError, load_settings
from tests.helpers import settings_for


def test_the_endpoints_are_off_and_on_loopback_by_default() -> None:
    settings = settings_for()
    assert (settings.metrics_port, settings.metrics_host, settings.log_format, settings.log_level) == (
        None, "127.0.0.1", "text", "INFO",
    )  # fmt: skip
    assert ready_url(settings) is None


def test_kortana_status_asks_where_the_endpoints_listen() -> None:
    assert ready_url(settings_for(metrics_port=9108)) == "http://127.0.0.1:9108/readyz"
    assert ready_url(settings_for(metrics_port=9108, metrics_host="0.0.0.0")) == "http://127.0.0.1:9108/readyz"
    assert ready_url(settings_for(metrics_port=9108, metrics_host="::1")) == "http://[::1]:9108/readyz"


def test_a_log_level_in_any_case_is_taken() -> None:
    assert settings_for(log_level="debug").log_level == "DEBUG"


def test_a_log_format_in_any_case_is_taken() -> None:
    assert settings_for(log_format="JSON").log_format == "json"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"metrics_port": 70000}, "METRICS_PORT"),
        ({"log_format": "xml"}, "LOG_FORMAT"),
        ({"log_level": "loud"}, "LOG_LEVEL"),
    ],
)
def test_a_wrong_value_names_its_setting(
    values: dict, named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file here
    with pytest.raises(SettingsError, match=f"^Invalid setting {named}: "):
        load_settings(**values)
