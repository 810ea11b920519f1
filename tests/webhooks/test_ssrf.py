"""The SSRF table at submit: literal hosts, legacy spellings, the allow list."""

from __future__ import annotations

import ipaddress

import pytest

from aijobs.webhooks.ssrf import is_blocked, literal_target_refused, parse_host_ip


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
