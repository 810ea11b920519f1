"""Retry delays and the one Retry-After reading."""

from __future__ import annotations

from worker.retry_policy import retry_after_s, retry_delay


def test_retry_delay_is_jittered_capped_and_honours_retry_after() -> None:
    for attempt in range(1, 8):
        delay = retry_delay(attempt, base_s=1, cap_s=10)
        assert 0 <= delay <= min(10, 2 ** (attempt - 1))
    assert retry_delay(1, base_s=1, cap_s=10, retry_after_s=7) >= 7


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
