"""A small webhook receiver: the other end of our webhooks in the tests.

Each path answers from its script, one step per request (the last step repeats):
a status code, optional headers and body, an optional sleep before answering, and an
optional tarpit (`trickle_s`: the whole answer, status line first, sent one byte every
trickle_s seconds). Every request is recorded with its headers and raw body, and how
many requests each path is answering at once is tracked."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    sleep_s: float = 0.0
    trickle_s: float = 0.0  # > 0: a tarpit


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.scripts: dict[str, list[Step]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._answering: dict[str, int] = {}  # path -> requests being answered now
        self._most: dict[str, int] = {}  # path -> the most ever answered at once
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def path(self, *steps: Step) -> str:
        """A new path answering with these steps (200 when none); returns its URL."""
        return self.script(f"/hook/{uuid.uuid4().hex}", *steps)

    def script(self, path: str, *steps: Step) -> str:
        with self._lock:
            self.scripts[path] = list(steps) or [Step()]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, url_or_path: str) -> list[Received]:
        path = url_or_path.split(str(self.port), 1)[-1]
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, url: str, count: int, timeout_s: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(got := self.requests(url)) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} requests to {url}"
            time.sleep(0.05)
        return got

    def most_at_once(self, url_or_path: str) -> int:
        """The most requests to this path that were being answered at the same time."""
        path = url_or_path.split(str(self.port), 1)[-1]
        with self._lock:
            return self._most.get(path, 0)

    def _enter(self, path: str) -> None:
        with self._lock:
            now = self._answering[path] = self._answering.get(path, 0) + 1
            self._most[path] = max(self._most.get(path, 0), now)

    def _leave(self, path: str) -> None:
        with self._lock:
            self._answering[path] -= 1

    def _next_step(self, path: str) -> Step:
        with self._lock:
            script = self.scripts.get(path, [Step(404)])
            return script.pop(0) if len(script) > 1 else script[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                        )
                    )
                receiver._enter(self.path)
                try:
                    self._answer(receiver._next_step(self.path))
                finally:
                    receiver._leave(self.path)

            def _answer(self, step: Step) -> None:
                if step.sleep_s:
                    time.sleep(step.sleep_s)
                try:
                    if step.trickle_s:
                        self._trickle(step)
                        return
                    self.send_response(step.status)
                    for name, value in step.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(step.body)))
                    self.end_headers()
                    self.wfile.write(step.body)
                except OSError:
                    pass  # the sender gave up (a timeout test)

            def _trickle(self, step: Step) -> None:
                """A tarpit: every byte of the answer on its own, trickle_s apart."""
                self.close_connection = True
                head = f"HTTP/1.1 {step.status} {self.responses[step.status][0]}\r\n"
                for name, value in {**step.headers, "Content-Length": len(step.body)}.items():
                    head += f"{name}: {value}\r\n"
                for byte in head.encode() + b"\r\n" + step.body:
                    self.wfile.write(bytes([byte]))
                    time.sleep(step.trickle_s)

            do_GET = do_POST

        return Handler
