"""This worker process's name as a lease owner: host, pid and a random part."""

from __future__ import annotations

import os
import socket
import uuid
from functools import lru_cache


@lru_cache
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
