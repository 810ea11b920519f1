"""`aijobs dev` end to end on the embedded default: servers start, a job goes through."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil

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
        note = json.loads((tmp_path / "data" / "dev.json").read_text())
        # Another command beside dev, nothing exported: it finds dev's servers.
        created = subprocess.run(
            [*AIJOBS, "keys", "create", "--tenant", "newcomer"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
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
    assert not (tmp_path / "data" / "dev.json").exists()
    # The embedded servers are stopped, not left behind.
    redis_port = int(note["redis_url"].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", redis_port)) != 0, "redis-server left running"
    left = [
        p.info["name"]
        for p in psutil.process_iter(["name", "cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert left == [], left
