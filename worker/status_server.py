"""The worker's own small HTTP server (AIJOBS_WORKER_METRICS_PORT): /metrics for
Prometheus and /readyz, the same readiness the API reports."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from aijobs.readiness import checks

log = logging.getLogger("aijobs.worker")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/readyz"):
            result = checks()
            ready = all(value == "ok" for value in result.values())
            body = json.dumps({"status": "ok" if ready else "not ready", "checks": result})
            self._send(200 if ready else 503, body.encode(), "application/json")
        elif self.path.startswith("/healthz"):
            self._send(200, b'{"status": "ok"}', "application/json")
        else:
            self._send(404, b"{}", "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(port: int) -> None:
    try:
        server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
    except OSError as exc:  # another worker on this host has the port: run without
        log.warning("status server not started on port %d: %s", port, exc)
        return
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="aijobs-status", daemon=True).start()
