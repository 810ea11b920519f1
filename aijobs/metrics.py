"""Prometheus metrics, defined once. The API serves them at /metrics; each worker on
its own port (AIJOBS_WORKER_METRICS_PORT). Queue depth (in all, and by tenant and
priority) is read from Postgres at scrape time, so every process reports the same truth."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

JOBS_SUBMITTED = Counter(
    "aijobs_jobs_submitted_total", "Jobs accepted at submit", ["model", "outcome"]
)
JOBS_FINISHED = Counter(
    "aijobs_jobs_finished_total", "Jobs that reached a terminal state", ["status", "error_code"]
)
TIME_TO_START = Histogram(
    "aijobs_time_to_start_seconds",
    "From a job's push into the fair queue (queued and due) to a worker picking it",
    ["priority"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
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


class QueueCollector(Collector):
    """The queue, read from Postgres when scraped, in one statement (queue_view): jobs
    waiting and the age of the oldest, and by tenant and priority the jobs queued and
    running. Every tenant is reported, with zeros when idle, so its series never just
    vanish; the tenant label is its name."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from aijobs.db import get_engine
        from aijobs.scheduling import queue_view

        depth = GaugeMetricFamily("aijobs_queue_depth", "Jobs queued (leaders)")
        oldest = GaugeMetricFamily(
            "aijobs_queue_oldest_age_seconds", "Age of the oldest queued job"
        )
        queued = GaugeMetricFamily(
            "aijobs_jobs_queued",
            "Jobs queued (leaders) by tenant and priority",
            labels=["tenant", "priority"],
        )
        in_flight = GaugeMetricFamily(
            "aijobs_jobs_in_flight",
            "Jobs running by tenant and priority",
            labels=["tenant", "priority"],
        )
        try:
            with get_engine().connect() as conn:
                tenants = queue_view.by_tenant(conn)
        except Exception:
            return
        ages = [0.0]
        for tenant in tenants:
            for priority, load in tenant.by_priority.items():
                queued.add_metric([tenant.name, priority], float(load.queued))
                in_flight.add_metric([tenant.name, priority], float(load.running))
            if tenant.oldest_queued_s is not None:
                ages.append(tenant.oldest_queued_s)
        depth.add_metric([], float(sum(tenant.queued for tenant in tenants)))
        oldest.add_metric([], max(ages))
        yield depth
        yield oldest
        yield queued
        yield in_flight

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class QuotaCollector(Collector):
    """Provider quotas, read from Redis (shared by all workers) when scraped: the calls
    that waited for quota by model and reason, and each model's learned concurrency."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        import redis

        from aijobs.scheduling import quota_state
        from aijobs.settings import get_settings

        waits = CounterMetricFamily(
            "aijobs_quota_waits",
            "Calls that waited for a provider quota instead of being made (reason: provider"
            " = its headers or a 429 said wait, concurrency = the adaptive or configured"
            " cap, limit = AIJOBS_PROVIDER_LIMITS; 429 = answered 429 anyway)",
            labels=["model", "reason"],
        )
        limits = GaugeMetricFamily(
            "aijobs_provider_adaptive_limit",
            "Calls in flight allowed per model, learned from its 429s (AIMD)",
            labels=["model"],
        )
        try:
            url = get_settings().required_redis_url
            client = redis.Redis.from_url(url, socket_timeout=2)
            try:
                for model, reason, count in quota_state.waits(client):
                    waits.add_metric([model, reason], float(count))
                for model, limit in quota_state.adaptive_limits(client):
                    limits.add_metric([model], float(limit))
            finally:
                client.close()
        except Exception:
            return
        yield waits
        yield limits

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def register_collectors(*collectors: Collector) -> None:
    """Register each collector with the default registry once per process."""
    from prometheus_client import REGISTRY

    done: set[str] = getattr(REGISTRY, "_aijobs_collectors", set())
    for collector in collectors:
        name = type(collector).__name__
        if name not in done:
            REGISTRY.register(collector)
            done.add(name)
    REGISTRY._aijobs_collectors = done  # type: ignore[attr-defined]
