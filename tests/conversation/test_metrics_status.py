"""What a scrape reads from the service's status: engine calls as a counter, and an engine's details that are
not what the metrics expect (a plugin's) never break /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app.conversation.metrics import Metrics
from app.conversation.service import ServiceStatus
from app.engines.chain import EngineStatus


def status_with(*engines: EngineStatus) -> ServiceStatus:
    return ServiceStatus("bot.db", "sqlite", True, 0.4, list(engines), 12.0, "model")


def engine(name: str, calls: int, **details: object) -> EngineStatus:
    return EngineStatus(name, True, "closed", None, None, None, calls, 0, dict(details))


def scraped(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_engine_calls_are_a_counter_that_follows_the_chain_s_count() -> None:
    metrics = Metrics(process=False)
    metrics.read_status(status_with(engine("brain", 3), engine("local", 0, queued=2)))
    metrics.read_status(status_with(engine("brain", 5), engine("local", 1, queued=1)))
    metrics.read_status(status_with(engine("brain", 5), engine("local", 1, queued=0)))
    values = scraped(metrics)
    assert values[("kortana_engine_calls_total", (("engine", "brain"),))] == 5
    assert values[("kortana_engine_calls_total", (("engine", "local"),))] == 1
    assert values[("kortana_local_model_queue_depth", ())] == 0


def test_a_queue_depth_that_is_not_a_count_is_left_out_not_a_failed_scrape() -> None:
    metrics = Metrics(process=False)
    metrics.read_status(
        status_with(engine("plugin", 1, queued="a few"), engine("other", 1, queued=[1]), engine("local", 1, queued=2))
    )
    assert scraped(metrics)[("kortana_local_model_queue_depth", ())] == 2
