"""Pure functions: prices, the SSRF table, retry delays, structured output."""

from __future__ import annotations

import ipaddress
from decimal import Decimal

import pytest

from aijobs.billing.pricing import price_for
from aijobs.errors import UnknownModel
from aijobs.jobs.structured import InvalidOutput, parse_output
from aijobs.webhooks.ssrf import is_blocked, literal_target_refused, parse_host_ip
from worker.retry_policy import retry_after_s, retry_delay


def test_prices_are_exact_decimals() -> None:
    price = price_for("openai/gpt-4o-mini")
    assert price.cost(1_000_000, 1_000_000) == Decimal("0.75")
    assert price.cost(7, 3) == Decimal("0.00000285")
    assert price_for("openai/text-embedding-3-small").cost(50, 0) == Decimal("0.000001")


@pytest.mark.parametrize("model", ["openai/nope", "foo/gpt-4o-mini", "gpt-4o-mini", "openai/"])
def test_unknown_models_are_refused(model: str) -> None:
    with pytest.raises(UnknownModel):
        price_for(model)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "192.0.0.8",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[fc00::1]",
        "[fe80::1]",
        "2130706433",
        "0x7f.1",
        "127.1",
        "localhost",
        "api.localhost",
    ],
)
def test_private_targets_are_refused(host: str) -> None:
    assert literal_target_refused(host, "")


@pytest.mark.parametrize("host", ["8.8.8.8", "example.com", "[2606:4700::1111]"])
def test_public_targets_pass(host: str) -> None:
    assert not literal_target_refused(host, "")


def test_allow_list_opens_named_hosts_and_networks() -> None:
    assert not literal_target_refused("127.0.0.1", "127.0.0.0/8")
    assert not literal_target_refused("localhost", "localhost,10.0.0.0/8")
    assert literal_target_refused("192.168.1.1", "10.0.0.0/8")
    assert not is_blocked(ipaddress.ip_address("10.1.1.1"), [ipaddress.ip_network("10.0.0.0/8")])
    assert parse_host_ip("example.com") is None


def test_retry_delay_is_jittered_capped_and_honours_retry_after() -> None:
    for attempt in range(1, 8):
        delay = retry_delay(attempt, base_s=1, cap_s=10)
        assert 0 <= delay <= min(10, 2 ** (attempt - 1))
    assert retry_delay(1, base_s=1, cap_s=10, retry_after_s=7) >= 7


def test_structured_output() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert parse_output('{"a": 1}', schema) == {"a": 1}
    assert parse_output('```json\n{"a": 2}\n```', schema) == {"a": 2}
    with pytest.raises(InvalidOutput, match="not JSON"):
        parse_output("nope", schema)
    with pytest.raises(InvalidOutput, match="does not match"):
        parse_output('{"a": "x"}', schema)


def test_retry_after_of_every_shape() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after_s({"Retry-After": "7"}) == 7
    assert retry_after_s({"retry-after": "-3"}) == 0
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    later = retry_after_s({"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert later is not None and later > 10**8
    for junk in ("soon", "nan", "inf", "-inf", "", "Mon, 99 Foo 2015", "1e999"):
        assert retry_after_s({"Retry-After": junk}) is None, junk
    assert retry_after_s({"retry-after-ms": "junk"}) is None
    assert retry_after_s(None) is None and retry_after_s({}) is None
