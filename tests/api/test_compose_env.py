"""docker/compose.yaml without a Docker engine: each service's environment built as
compose builds it on a host that sets none of the variables (or only OPENAI_API_KEY),
then the settings and the provider clients the containers would get from it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # the dev extra pins PyYAML; no stubs needed

from aijobs.errors import Unsupported
from aijobs.jobs import submission
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import Settings, get_settings
from tests.helpers import chat

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
# $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, $VAR
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
SETTING_PREFIXES = ("AIJOBS_", "OPENAI_", "ANTHROPIC_", "SENTRY_")


def interpolate(value: str, host: dict[str, str]) -> str:
    """Compose's interpolation of one value against the host's environment."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        current = host.get(name)
        # With a colon, an empty value counts as missing; without, only an unset one.
        missing = not current if op and op.startswith(":") else current is None
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?"):
            if missing:
                raise ValueError(f"compose would stop: {name} {arg}")
            return str(current)
        if op in (":+", "+"):
            return "" if missing else arg
        return current or ""

    return _VARIABLE.sub(one, value)


def container_env(service: dict[str, Any], host: dict[str, str]) -> dict[str, str]:
    """A service's `environment` as its container sees it. A variable with no value is
    the host's, or left out of the container when the host does not set it."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = [item.partition("=") for item in environment]
        environment = {name: (value if sep else None) for name, sep, value in pairs}
    env: dict[str, str] = {}
    for name, value in environment.items():
        if value is None:
            if name in host:
                env[name] = host[name]
        else:
            env[name] = interpolate(str(value), host)
    return env


def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the &anchor
    return dict(loaded["services"])


def test_interpolation_follows_compose() -> None:
    host = {"SET": "x", "EMPTY": ""}
    assert interpolate("${UNSET:-d} ${EMPTY:-d} ${SET:-d}", host) == "d d x"
    assert interpolate("${UNSET-d} ${EMPTY-d} ${SET-d}", host) == "d  x"
    assert interpolate("${UNSET}|${UNSET:-}|$UNSET|$$SET", host) == "|||$SET"
    assert interpolate("${SET:+on}|${UNSET:+on}|${EMPTY:+on}|${EMPTY+on}", host) == "on|||on"
    with pytest.raises(ValueError):
        interpolate("${EMPTY:?needed}", host)


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Load the settings (no .env) as a container with the given environment would."""

    def load(env: dict[str, str]) -> Settings:
        for name in list(os.environ):
            if name.startswith(SETTING_PREFIXES):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return Settings(_env_file=None)

    yield load
    get_settings.cache_clear()


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_a_host_with_no_variables_gives_unset_settings(name: str, container: Any) -> None:
    env = container_env(services()[name], host={})
    settings = container(env)
    assert settings.database_url is not None and settings.redis_url is not None
    # Unset, not "": the SDKs' defaults apply, and the admin API is off.
    for field in (
        "openai_api_key",
        "openai_base_url",
        "anthropic_api_key",
        "anthropic_base_url",
        "admin_token",
        "sentry_dsn",
    ):
        assert getattr(settings, field) is None, field
    if name == "api":
        # No OpenAI key on this deployment: its models answer 422 unsupported at submit.
        request = JobRequest.model_validate(chat("hi", model="openai/gpt-4o-mini"))
        with pytest.raises(Unsupported) as refused:
            submission.check_submittable(request, refuse_unconfigured=True)
        assert str(refused.value) == (
            "openai/gpt-4o-mini: OPENAI_API_KEY is not set on this deployment"
        )
        sim = JobRequest.model_validate(chat("hi", model="sim/echo"))
        submission.check_submittable(sim, refuse_unconfigured=True)


def test_a_host_with_only_an_openai_key_calls_openai(container: Any) -> None:
    """The worker's OpenAI client gets the SDK's default base URL, not an empty one (with
    which every call fails with a connection error)."""
    from worker.providers import anthropic_provider, openai_provider

    env = container_env(services()["worker"], host={"OPENAI_API_KEY": "sk-from-the-host"})
    settings = container(env)
    assert settings.openai_api_key == "sk-from-the-host"
    assert settings.openai_base_url is None
    openai_provider._client.cache_clear()
    try:
        client = openai_provider._client()
        assert str(client.base_url) == "https://api.openai.com/v1/"
        assert client.api_key == "sk-from-the-host"
    finally:
        openai_provider._client.cache_clear()
    # With a key, anthropic's client too gets its default endpoint.
    env = container_env(services()["worker"], host={"ANTHROPIC_API_KEY": "sk-ant"})
    container(env)
    anthropic_provider._client.cache_clear()
    try:
        assert str(anthropic_provider._client().base_url) == "https://api.anthropic.com"
    finally:
        anthropic_provider._client.cache_clear()


def test_empty_values_are_unset_settings(container: Any) -> None:
    """Whatever passes "" (an exported `VAR=`, a blank `.env` line, `${VAR:-}`)."""
    settings = container(
        {
            "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": "",
            "ANTHROPIC_API_KEY": "",
            "ANTHROPIC_BASE_URL": "",
            "AIJOBS_ADMIN_TOKEN": "",
            "SENTRY_DSN": "",
            "AIJOBS_PRICING_FILE": "",
            "AIJOBS_BROKER_URL": "",
            "AIJOBS_WEBHOOK_ALLOW_HOSTS": "",
        }
    )
    assert settings.openai_api_key is None and settings.openai_base_url is None
    assert settings.anthropic_api_key is None and settings.anthropic_base_url is None
    assert settings.admin_token is None and settings.sentry_dsn is None
    assert settings.pricing_file is None and settings.broker_url is None
    assert settings.webhook_allow_hosts == ""  # not optional: "" is its value


def test_an_empty_base_url_in_the_environment_is_the_default_endpoint(container: Any) -> None:
    """`OPENAI_BASE_URL=` exported outside compose: the SDK, left to itself, would read
    the variable and take "" as its base URL."""
    from worker.providers import anthropic_provider, openai_provider

    container(
        {
            "OPENAI_API_KEY": "k",
            "OPENAI_BASE_URL": "",
            "ANTHROPIC_API_KEY": "k",
            "ANTHROPIC_BASE_URL": "",
        }
    )
    for provider, default in (
        (openai_provider, "https://api.openai.com/v1/"),
        (anthropic_provider, "https://api.anthropic.com"),
    ):
        provider._client.cache_clear()
        try:
            assert str(provider._client().base_url) == default
        finally:
            provider._client.cache_clear()
