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
from dataclasses import dataclass
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


@dataclass
class _Slot:
    child: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    due: float = 0.0  # when a crashed child may start again
    backoff: float = 1.0


def supervise(argv: list[str], copies: int = 1) -> int:
    """Run `copies` worker processes (one per core, say) and keep them running."""
    env = {**os.environ, CHILD_ENV: "1"}
    stopping = False
    slots = [_Slot() for _ in range(copies)]

    def forward(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for slot in slots:
            if slot.child is not None and slot.child.poll() is None:
                slot.child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        running = False
        for slot in slots:
            now = time.monotonic()
            child = slot.child
            if child is not None and child.poll() is None:
                running = True
            elif stopping:
                continue
            elif child is not None:
                if now - slot.started > 60:
                    slot.backoff = 1.0
                log.warning(
                    "a worker exited on its own (code %s); starting it again in %.0f s",
                    child.returncode,
                    slot.backoff,
                )
                slot.child, slot.due = None, now + slot.backoff
                slot.backoff = min(slot.backoff * 2, MAX_BACKOFF_S)
                running = True
            elif now >= slot.due:
                slot.child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
                slot.started = now
                running = True
            else:
                running = True
        if stopping and not running:
            codes = [slot.child.returncode for slot in slots if slot.child is not None]
            return max(codes, default=0) or 0
        time.sleep(0.2)
