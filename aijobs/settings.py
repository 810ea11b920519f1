"""The one settings object, read from the environment (prefix AIJOBS_) and `.env`."""

from __future__ import annotations

import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AIJOBS_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    admin_token: str | None = None
    pricing_file: Path | None = None
    webhook_allow_hosts: str = ""
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=60.0, gt=0)
    # Seconds between webhook attempts (each ±20% jitter): one attempt, then one per delay.
    webhook_retry_delays: str = "5,300,1800,7200,18000,36000,36000"
    # A webhook attempt's whole time: resolve, connect, send, headers and body together.
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    # A tenant's webhook deliveries in flight at once across all workers (0: no cap).
    webhook_tenant_inflight: int = Field(default=4, ge=0)
    sim_latency_s: float = Field(default=0.5, ge=0)
    sim_error_rate: float = Field(default=0.0, ge=0, le=1)

    # Recovery: a running job's lease is renewed by its worker; a job whose lease
    # lapsed, or that sat queued without being picked up, is published again.
    lease_s: float = Field(default=20.0, gt=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    requeue_after_s: float = Field(default=5.0, gt=0)

    # How long a successful result answers identical requests of the same tenant.
    cache_ttl_s: float = Field(default=86_400.0, gt=0)

    # The batch tier: how often a provider batch in flight is polled, and the most
    # calls one provider batch holds (OpenAI and Anthropic take up to 50,000).
    provider_batch_poll_s: float = Field(default=60.0, gt=0)
    provider_batch_max_requests: int = Field(default=50_000, ge=1, le=50_000)

    # Retention: the request and result of a job that ended more days ago than this are
    # removed by the sweeper (the job, its attempts and costs stay). 0 keeps them forever.
    retention_days: int = Field(default=30, ge=0)

    # Provider calls in flight per model across all workers: a default for every model
    # (0: no cap) and overrides, "openai/gpt-4o-mini=50,sim/echo=200".
    model_inflight_cap: int = Field(default=0, ge=0)
    model_inflight_caps: str = ""

    # Provider quotas (docs/scheduling.md): rpm and tpm caps per model or provider held
    # across all workers, "openai/gpt-4o-mini=rpm:500,tpm:200000;anthropic/*=rpm:50".
    provider_limits: str = ""
    # The window the rpm and tpm numbers count over (60: per minute; tests shrink it).
    provider_limits_window_s: float = Field(default=60.0, gt=0)
    # The longest a provider's rate-limit headers (a reset, Retry-After) make calls wait.
    quota_max_wait_s: float = Field(default=300.0, gt=0)
    # A job's provider 429s that go back to waiting without using an attempt; beyond
    # them a 429 counts as a failed attempt again, so nothing waits forever.
    quota_free_429s: int = Field(default=20, ge=0)
    # Learn from 429s and rate-limit headers (waits until the reset, AIMD concurrency).
    quota_adaptive: bool = True

    # The worker's /metrics and /readyz port (0: none); logs as JSON lines or text.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    log_format: Literal["json", "text"] = "json"
    # Sentry gets prompts and results only when the operator opts in.
    sentry_send_prompts: bool = False

    # Database connections per process: a pool, and what may open beyond it under load.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=30, ge=0)

    # Calls in flight per worker process (its call loop's slots).
    worker_concurrency: int = Field(default=32, ge=1)
    # Webhook deliveries sent at once per worker process (blocking HTTP, a thread each).
    webhook_threads: int = Field(default=16, ge=1)
    data_dir: Path = Path(".aijobs")

    # Prompts: versions per prompt, and the bytes of all of a tenant's versions together.
    prompt_max_versions: int = Field(default=1000, ge=1)
    prompt_max_bytes_per_tenant: int = Field(default=64 * 1024 * 1024, ge=1)
    # The `aijobs prompts` commands talk to this API with this tenant key.
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None

    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "AIJOBS_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "AIJOBS_OPENAI_BASE_URL")
    )
    anthropic_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "AIJOBS_ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "AIJOBS_ANTHROPIC_BASE_URL"),
    )
    sentry_dsn: str | None = Field(
        default=None, validation_alias=AliasChoices("SENTRY_DSN", "AIJOBS_SENTRY_DSN")
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """An empty optional setting is an unset one: compose's `${VAR:-}`, a blank line in
        `.env` or an exported `VAR=` must not become an empty base URL, key or token."""
        if value == "" and info.field_name is not None and _optional(info.field_name):
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str | None) -> str | None:
        """Accept plain postgres:// URLs and use psycopg 3 for them."""
        if value is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("AIJOBS_DATABASE_URL must be a postgresql:// URL (psycopg 3)")
        return value

    @field_validator("webhook_retry_delays")
    @classmethod
    def _delays(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                "AIJOBS_WEBHOOK_RETRY_DELAYS must be a comma list of seconds"
            ) from None
        if any(delay < 0 for delay in delays):
            raise ValueError("AIJOBS_WEBHOOK_RETRY_DELAYS must not be negative")
        return value

    @field_validator("provider_limits")
    @classmethod
    def _provider_limits(cls, value: str) -> str:
        from aijobs.scheduling.provider_limits import parse

        parse(value)  # raises ValueError with the faulty rule named
        return value

    @property
    def webhook_retry_schedule(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_delays.split(",") if part.strip())

    @property
    def effective_broker_url(self) -> str:
        url = self.broker_url or self.redis_url
        if not url:
            raise RuntimeError("AIJOBS_REDIS_URL (or AIJOBS_BROKER_URL) is not set")
        return url

    @property
    def required_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "AIJOBS_DATABASE_URL is not set (use `aijobs dev` for the embedded default)"
            )
        return self.database_url

    @property
    def required_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "AIJOBS_REDIS_URL is not set (use `aijobs dev` for the embedded one)"
            )
        return self.redis_url


def _optional(field_name: str) -> bool:
    """Whether a setting may be None (`X | None`), so that "" can mean unset."""
    annotation = Settings.model_fields[field_name].annotation
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


@lru_cache
def get_settings() -> Settings:
    return Settings()
