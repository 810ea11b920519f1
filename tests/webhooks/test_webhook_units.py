"""Webhook pieces on their own: signing (the spec's test vector), the retry schedule,
the SSRF table and the connect-time guard, the admin dependency."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from aijobs.settings import get_settings
from aijobs.webhooks import signing, ssrf
from tests.webhook_receiver import Receiver
from worker import webhook_http
from worker.retry_policy import retry_after_s, webhook_retry_delay

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    signed = signing.sign(
        VECTOR_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_with_the_reference_library_for_each_secret() -> None:
    old, new = VECTOR_SECRET, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    body = json.dumps({"type": "job.succeeded", "data": {"id": "x"}})
    msg_id = signing.message_id(uuid.uuid4(), 1)
    headers = signing.headers((new, old), msg_id, int(datetime.now(UTC).timestamp()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == json.loads(body)
    assert Webhook(old).verify(body, headers) == json.loads(body)
    other = "whsec_" + "WFlaYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM="
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    assert msg_id.startswith("msg_") and msg_id.endswith("_1")


def test_webhook_retry_schedule_has_jitter_and_an_end() -> None:
    schedule = (5.0, 300.0)
    for _ in range(50):
        assert 4.0 <= (webhook_retry_delay(1, schedule) or 0) <= 6.0
        assert 240.0 <= (webhook_retry_delay(2, schedule) or 0) <= 360.0
    assert webhook_retry_delay(3, schedule) is None
    assert webhook_retry_delay(1, (0.5,), retry_after_s=30) == 30
    assert webhook_retry_delay(1, (0.5,), retry_after_s=10**9) == 3600  # clamped
    assert webhook_retry_delay(1, ()) is None


def retry_after(value: str | None) -> float | None:
    return retry_after_s(None if value is None else {"Retry-After": value})


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("7") == 7
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


BLOCKED = [
    "0.0.0.0",
    "10.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",
    "2002:7f00:1::",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_addresses(address: str) -> None:
    assert ssrf.is_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert not ssrf.is_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::1]"])
def test_legacy_spellings_are_read_as_addresses(spelling: str) -> None:
    address = ssrf.parse_host_ip(spelling)
    assert address is not None and ssrf.is_blocked(address)


def test_an_allowed_network_is_reachable() -> None:
    _, nets = ssrf.parse_allow_list("127.0.0.1, 10.0.0.0/8")
    assert not ssrf.is_blocked(ipaddress.ip_address("127.0.0.1"), nets)
    assert not ssrf.is_blocked(ipaddress.ip_address("10.9.9.9"), nets)
    assert ssrf.is_blocked(ipaddress.ip_address("127.0.0.2"), nets)


def test_a_name_resolving_to_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(ssrf.TargetRefused, match=r"127\.0\.0\.1"):
        ssrf.vetted_addresses("localhost", 80, "")
    with pytest.raises(ssrf.TargetRefused):
        ssrf.vetted_addresses("2130706433", 80, "")
    allowed = ssrf.vetted_addresses("localhost", 80, "127.0.0.0/8,::1")
    assert ipaddress.ip_address("127.0.0.1") in allowed
    assert ssrf.vetted_addresses("localhost", 80, "localhost")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def _post(url: str, allow: str) -> webhook_http.Answer:
    return webhook_http.post(url, b"{}", {}, timeout_s=5, allow_raw=allow)


def test_the_guard_refuses_at_connect_time(receiver: Receiver) -> None:
    url = receiver.path().replace("127.0.0.1", "localhost")
    refused = _post(url, "")
    assert refused.refused and refused.status_code is None
    assert "refused" in (refused.error or "")
    assert receiver.requests(url) == []
    assert _post(url, "localhost").status_code == 200
    assert len(receiver.requests(url)) == 1


def test_a_rebinding_name_connects_only_to_the_vetted_address(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves once, in the guard; the socket goes to that very address,
    while Host (and SNI) keep the name."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    url = receiver.path().replace("127.0.0.1", "rebind.example.com")
    assert _post(url, "").refused
    answer = _post(url, "127.0.0.1")
    assert answer.status_code == 200
    (request,) = receiver.requests(url)
    assert request.headers["host"] == f"rebind.example.com:{receiver.port}"
    assert lookups == ["rebind.example.com", "rebind.example.com"]


def test_redirects_are_not_followed_and_errors_are_answers(receiver: Receiver) -> None:
    from tests.webhook_receiver import Step

    target = receiver.path()
    url = receiver.path(Step(302, {"Location": target}))
    answer = _post(url, "127.0.0.1")
    assert answer.status_code == 302 and not answer.ok
    assert receiver.requests(target) == []
    closed = httpx.URL(receiver.url("/x")).copy_with(port=1)
    down = _post(str(closed), "127.0.0.1")
    assert down.status_code is None and "ConnectError" in (down.error or "")


def test_a_tarpit_is_cut_at_the_timeout_of_the_whole_attempt(receiver: Receiver) -> None:
    """One byte a second never trips a per-read timeout; the attempt's deadline does."""
    from tests.webhook_receiver import Step

    url = receiver.path(Step(200, trickle_s=0.3))
    answer = webhook_http.post(url, b"{}", {}, timeout_s=1, allow_raw="127.0.0.1")
    assert answer.status_code is None, answer
    assert (answer.error or "").startswith("timeout after 1s"), answer
    assert 950 <= answer.latency_ms < 1500, answer.latency_ms


def test_a_trickled_body_after_a_status_is_cut_and_the_status_stands(receiver: Receiver) -> None:
    from tests.webhook_receiver import Step

    url = receiver.path(Step(200, body=b"x" * 300, trickle_s=0.01))
    started = time.monotonic()
    answer = webhook_http.post(url, b"{}", {}, timeout_s=0.8, allow_raw="127.0.0.1")
    assert time.monotonic() - started < 1.3
    assert answer.status_code == 200 and answer.ok, answer
    assert 0 < len(answer.response_body or "") < 300  # what came by the deadline


@pytest.fixture
def admin_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from api.app import app

    yield TestClient(app)
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("token", "header", "status"),
    [
        (None, "Bearer anything", 404),
        ("s3cret", None, 401),
        ("s3cret", "Basic s3cret", 401),
        ("s3cret", "Bearer wrong", 403),
        ("s3cret", "Bearer aj_some_tenant_key", 403),
    ],
)
def test_admin_routes_answer_problems(
    admin_app: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    header: str | None,
    status: int,
) -> None:
    if token is None:
        monkeypatch.delenv("AIJOBS_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("AIJOBS_ADMIN_TOKEN", token)
    get_settings.cache_clear()
    headers = {"Authorization": header} if header else {}
    response = admin_app.post(f"/admin/jobs/{uuid.uuid4()}/webhook/redeliver", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == "unauthorized"


def _answer(**kwargs: object) -> webhook_http.Answer:
    return webhook_http.Answer(latency_ms=1, **kwargs)  # type: ignore[arg-type]


def test_what_follows_an_answer() -> None:
    from aijobs.webhooks.deliveries import ClaimedDelivery
    from worker.webhook_runner import _next

    def after(tries: int, answer: webhook_http.Answer) -> tuple[str, float]:
        delivery = ClaimedDelivery(
            1, uuid.uuid4(), 1, "job.succeeded", "http://x", None, tries, tries,
            datetime.now(UTC), ("whsec_x",),
        )  # fmt: skip
        return _next(delivery, answer)

    schedule = get_settings().webhook_retry_schedule
    assert after(1, _answer(status_code=204)) == ("delivered", 0.0)
    assert after(1, _answer(error="refused: private", refused=True)) == ("failed", 0.0)
    assert after(1, _answer(status_code=410)) == ("failed", 0.0)
    status, delay = after(1, _answer(status_code=500))
    assert status == "pending" and delay <= schedule[0] * 1.2
    assert after(1, _answer(status_code=503, retry_after_s=7200))[1] == 7200
    assert after(1, _answer(status_code=500, retry_after_s=7200))[1] < 7200  # only 429/503
    assert after(len(schedule) + 1, _answer(error="ConnectError")) == ("failed", 0.0)
