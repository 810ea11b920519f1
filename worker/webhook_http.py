"""The HTTP side of a webhook attempt: one POST through a client that connects only to
addresses the SSRF guard vetted, follows no redirects and ignores proxy settings."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION

from aijobs.webhooks.ssrf import TargetRefused, vetted_addresses
from worker.retry_policy import retry_after_s

RESPONSE_BODY_LIMIT = 1024
USER_AGENT = "aijobs-webhooks/1"


class GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses blocked addresses, and connects to a vetted
    address. TLS SNI and the Host header still come from the URL's name (httpcore takes
    them from the request, not from the socket)."""

    def __init__(self, allow_raw: str) -> None:
        self.allow_raw = allow_raw

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = vetted_addresses(host, port, self.allow_raw)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, allow_raw: str) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx does not take a network backend; its pool is rebuilt with ours (httpx
        # is pinned, and tests cover the refusal).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_raw),
        )


@lru_cache
def guarded_client(allow_raw: str) -> httpx.Client:
    return httpx.Client(
        transport=GuardedTransport(allow_raw), follow_redirects=False, trust_env=False
    )


@dataclass(frozen=True)
class Answer:
    """How one POST went: a status code, or the error that kept it from getting one."""

    latency_ms: int
    status_code: int | None = None
    response_body: str | None = None
    retry_after_s: float | None = None
    error: str | None = None
    refused: bool = False  # the SSRF guard refused the target: do not try again

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_raw: str
) -> Answer:
    """One attempt; never raises. Reads at most the first KiB of the answer."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    request_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    try:
        with guarded_client(allow_raw).stream(
            "POST", url, content=body, headers=request_headers, timeout=timeout_s
        ) as response:
            latency_ms = elapsed()
            excerpt = b""
            try:
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_BODY_LIMIT:
                        break
            except httpx.HTTPError:
                pass  # the status decides; the body is only kept for the log
            return Answer(
                latency_ms=latency_ms,
                status_code=response.status_code,
                response_body=excerpt[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace"),
                retry_after_s=retry_after_s(response.headers),
            )
    except TargetRefused as exc:
        return Answer(latency_ms=elapsed(), error=f"refused: {exc}", refused=True)
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__
        return Answer(latency_ms=elapsed(), error=f"timeout after {timeout_s:g}s ({kind})")
    except httpx.HTTPError as exc:
        return Answer(latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
