"""A tiny local server of canned job events, shaped like GET /v1/jobs/{id}/events, that
misbehaves on demand (cuts a connection mid-event, closes it before `done`, answers
503 or 404), so the client's resuming is tested without the API."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Canned = tuple[int, str, dict[str, Any]]  # id, event type, data


@dataclass
class Connection:
    """What one connection does: its status, and after how many events it is cut
    ("abort": mid-event, the chunked body left unfinished, a network error for the
    client; "close": the body ended cleanly, before `done`). `replay`: it ignores
    Last-Event-ID and sends every event from the first."""

    status: int = 200
    cut_after: int | None = None
    how: Literal["abort", "close"] = "abort"
    replay: bool = False


@dataclass
class Request:
    path: str
    headers: dict[str, str]

    @property
    def last_event_id(self) -> str | None:
        return self.headers.get("last-event-id")


def frame(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class CannedEvents:
    """Serves `events` after the request's Last-Event-ID; connection n behaves as
    `plan[n]` (the ones past the plan serve everything). After `done` it sends one
    more event, which a client that stops at `done` never reads."""

    events: list[Canned]
    plan: list[Connection] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                # A client that stops at `done` closes while the extra event goes out.
                with contextlib.suppress(ConnectionError):
                    canned._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> CannedEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            n = len(self.requests)
            headers = {name.lower(): value for name, value in handler.headers.items()}
            self.requests.append(Request(handler.path, headers))
        connection = self.plan[n] if n < len(self.plan) else Connection()
        handler.close_connection = True
        if connection.status != 200:
            body = json.dumps(
                {
                    "type": "about:blank",
                    "title": "no",
                    "status": connection.status,
                    "detail": "canned",
                    "code": "not_found" if connection.status == 404 else "internal",
                }
            ).encode()
            handler.send_response(connection.status)
            handler.send_header("Content-Type", "application/problem+json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        after = -1 if connection.replay else int(headers.get("last-event-id", "-1"))
        sent = 0
        for event_id, kind, data in self.events:
            if event_id <= after:
                continue
            if sent == connection.cut_after:
                if connection.how == "abort":
                    # Half an event, then a chunk that never comes: the client reads a
                    # broken body, and must not take the half event.
                    chunk(frame(event_id, kind, data)[:12])
                    handler.wfile.write(b"400\r\nid: ")
                    handler.wfile.flush()
                else:
                    chunk(b": closing early\n\n")
                    handler.wfile.write(b"0\r\n\r\n")
                return
            chunk(frame(event_id, kind, data))
            chunk(b": ping\n\n")  # a comment after an event with an id: no event
            sent += 1
            if kind == "done":
                chunk(frame(event_id + 1, "status", {"status": "after done"}))
                break
        handler.wfile.write(b"0\r\n\r\n")
