"""The HTTP side of a webhook attempt: one POST through a client that connects only to
addresses the SSRF guard vetted, follows no redirects and ignores proxy settings.

AIJOBS_WEBHOOK_TIMEOUT_S bounds the whole attempt. httpx's timeouts bound each read,
so a receiver answering one byte a second would hold the attempt as long as it
liked (httpx has no total timeout: encode/httpx#1450). Here every socket operation
of the attempt (the name's resolution too) gets only the time left to its deadline,
and a watchdog shuts the attempt's sockets just after the deadline, whatever they
are doing.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION

from aijobs.webhooks.ssrf import IPAddress, TargetRefused, vetted_addresses
from worker.retry_policy import retry_after_s

RESPONSE_BODY_LIMIT = 1024
USER_AGENT = "aijobs-webhooks/1"
WATCHDOG_GRACE_S = 0.1
# Name lookups run here so that a slow resolver cannot outlast the deadline (the
# lookup itself is left to finish: the resolver's own timeouts end it).
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aijobs-resolve")


@dataclass
class Deadline:
    """The wall-clock end of one attempt, and the streams it used (for the watchdog)."""

    at: float  # time.monotonic()
    streams: list[httpcore.NetworkStream] = field(default_factory=list)
    expired: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _disarmed: bool = False

    def left(self, error: type[Exception]) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the attempt's deadline has passed")
        return left

    def watch(self, stream: httpcore.NetworkStream) -> None:
        with self._lock:
            if stream not in self.streams:
                self.streams.append(stream)

    def expire(self) -> None:
        """The watchdog: shut the attempt's sockets, so a blocked send or read ends."""
        with self._lock:
            if self._disarmed:
                return
            self.expired = True
            streams = list(self.streams)
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # closed already
                    sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        """Before the connection goes back to the pool: the watchdog must not touch it."""
        with self._lock:
            self._disarmed = True


_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "webhook_deadline", default=None
)


def _budget(timeout: float | None, error: type[Exception]) -> float | None:
    """A socket operation's timeout: its own, but never past the attempt's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline.left(error)
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline of
    the attempt using it (a pooled connection serves one attempt at a time)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _watched(self, timeout: float | None, error: type[Exception]) -> float | None:
        deadline = _deadline.get()
        if deadline is not None:
            deadline.watch(self)
        return _budget(timeout, error)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._watched(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._watched(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = self._watched(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses blocked addresses, and connects to a vetted
    address. TLS SNI and the Host header still come from the URL's name (httpcore takes
    them from the request, not from the socket)."""

    def __init__(self, allow_raw: str) -> None:
        self.allow_raw = allow_raw

    def _vetted(self, host: str, port: int) -> list[IPAddress]:
        budget = _budget(None, httpcore.ConnectTimeout)
        lookup = _RESOLVER.submit(vetted_addresses, host, port, self.allow_raw)
        try:
            return lookup.result(timeout=budget)
        except FutureTimeout:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._vetted(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                budget = _budget(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(
                    str(address), port, budget, local_address, socket_options
                )
                return DeadlineStream(stream)
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
    """One attempt, over within timeout_s from its start (resolve, connect, send, the
    answer's headers and the first KiB of its body); never raises."""
    started = time.monotonic()
    deadline = Deadline(at=started + timeout_s)
    # A backstop: each socket operation already ends by the deadline (a clean timeout);
    # the watchdog ends one that would not (a send the receiver reads slowly).
    watchdog = threading.Timer(timeout_s + WATCHDOG_GRACE_S, deadline.expire)
    watchdog.daemon = True
    token = _deadline.set(deadline)
    watchdog.start()
    try:
        return _post(guarded_client(allow_raw), url, body, headers, timeout_s, deadline)
    finally:
        deadline.disarm()
        watchdog.cancel()
        _deadline.reset(token)


def _post(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    deadline: Deadline,
) -> Answer:
    started = deadline.at - timeout_s

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    def timed_out(exc: Exception) -> Answer:
        kind = type(exc).__name__
        return Answer(latency_ms=elapsed(), error=f"timeout after {timeout_s:g}s ({kind})")

    request_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    try:
        with client.stream(
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
                pass  # the status decides (also at the deadline); the body is only kept for the log
            deadline.disarm()
            return Answer(
                latency_ms=latency_ms,
                status_code=response.status_code,
                response_body=excerpt[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace"),
                retry_after_s=retry_after_s(response.headers),
            )
    except TargetRefused as exc:
        return Answer(latency_ms=elapsed(), error=f"refused: {exc}", refused=True)
    except httpx.TimeoutException as exc:
        return timed_out(exc)
    except httpx.HTTPError as exc:
        if deadline.expired:  # the watchdog cut it: the error is only how it showed
            return timed_out(exc)
        return Answer(latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
