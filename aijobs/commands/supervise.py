"""`aijobs worker` keeps its Celery worker alive: it runs it as a child process and
starts it again if it exits on its own (kombu can give up for good when a Redis
broker restarts). SIGTERM and SIGINT are passed on, and the child dies with us."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from typing import Any

log = logging.getLogger("aijobs.worker")

CHILD_ENV = "AIJOBS_WORKER_CHILD"
PR_SET_PDEATHSIG = 1
MAX_BACKOFF_S = 30.0


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the supervisor dies (Linux), so killing the
    worker kills it whole, as with a single process."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def supervise(argv: list[str]) -> int:
    env = {**os.environ, CHILD_ENV: "1"}
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
        code = child.wait()
        if stopping:
            return code
        if time.monotonic() - started > 60:
            backoff = 1.0
        log.warning(
            "the worker exited on its own (code %s); starting it again in %.0f s", code, backoff
        )
        time.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
        if stopping:
            return code
