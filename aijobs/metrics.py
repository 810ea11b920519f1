"""Prometheus metrics, defined once. The API serves them at /metrics; each worker on
its own port (AIJOBS_WORKER_METRICS_PORT). Queue depth is read from Postgres at scrape
time, so every process reports the same truth."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

JOBS_SUBMITTED = Counter(
    "aijobs_jobs_submitted_total", "Jobs accepted at submit", ["model", "outcome"]
)
JOBS_FINISHED = Counter(
    "aijobs_jobs_finished_total", "Jobs that reached a terminal state", ["status", "error_code"]
)
PROVIDER_LATENCY = Histogram(
    "aijobs_provider_call_seconds",
    "Provider call latency",
    ["model", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
CALLS_IN_FLIGHT = Gauge("aijobs_provider_calls_in_flight", "Provider calls in flight", ["model"])
TOKENS = Counter("aijobs_tokens_total", "Tokens used", ["model", "direction"])
SPEND = Counter("aijobs_spend_usd_total", "USD spent on provider calls", ["model"])
PROVIDER_BATCHES = Counter(
    "aijobs_provider_batches_total",
    "Provider batches of the batch tier: submitted, found again after a restart, ended",
    ["model", "event"],
)
CACHE_HITS = Counter("aijobs_cache_hits_total", "Jobs answered from the cache at submit", ["model"])
CACHE_SAVED = Counter("aijobs_cache_saved_usd_total", "USD the cache saved at submit", ["model"])
BUDGET_REJECTIONS = Counter(
    "aijobs_budget_rejections_total", "Calls or submits refused by a budget", ["where"]
)
# Labels stay bounded: a prompt's name (or "" for a job without one) and a check type.
CHECK_FAILURES = Counter(
    "aijobs_check_failures_total",
    "Output checks that failed, by prompt and check type",
    ["prompt", "type"],
)
WEBHOOK_DELIVERIES = Counter(
    "aijobs_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"]
)

_QUEUE = text(
    """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM jobs WHERE status = 'queued' AND leader_id IS NULL
    """
)


class QueueCollector(Collector):
    """Jobs waiting, and the age of the oldest, read from Postgres when scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from aijobs.db import get_engine

        depth = GaugeMetricFamily("aijobs_queue_depth", "Jobs queued (leaders)")
        oldest = GaugeMetricFamily(
            "aijobs_queue_oldest_age_seconds", "Age of the oldest queued job"
        )
        try:
            with get_engine().connect() as conn:
                count, age = conn.execute(_QUEUE).one()
        except Exception:
            return
        depth.add_metric([], float(count))
        oldest.add_metric([], float(age))
        yield depth
        yield oldest

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
