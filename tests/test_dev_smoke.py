"""`aijobs dev` end to end on the embedded default: servers start, a job goes through."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli.embedded import free_port
from tests.stack import AIJOBS


def test_aijobs_dev_runs_a_job_on_embedded_servers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIJOBS_", "OPENAI_"))}
    env["AIJOBS_DATA_DIR"] = str(tmp_path / "data")
    env["AIJOBS_SIM_LATENCY_S"] = "0.05"
    port = free_port()
    log = (tmp_path / "dev.log").open("w+")
    dev = subprocess.Popen(
        [*AIJOBS, "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        key = None
        deadline = time.monotonic() + 90
        while key is None:
            assert dev.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, Path(log.name).read_text()
            found = re.search(r"demo API key .*: (aj_\S+)", Path(log.name).read_text())
            key = found.group(1) if found else None
            time.sleep(0.3)
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        )
        body = {"model": "sim/echo", "messages": [{"role": "user", "content": "hello dev"}]}
        job = http.post("/v1/jobs", json=body).json()
        done = http.get(f"/v1/jobs/{job['id']}", params={"wait": 20}).json()
        assert done["status"] == "succeeded", done
        assert done["result"]["content"] == "hello dev"
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            raise
    assert dev.returncode == 0, Path(log.name).read_text()
    assert sys.executable  # the same interpreter ran the command
