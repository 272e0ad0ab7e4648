"""`make up` / `make down`: the local stack starts everything and stops exactly what it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from devstack.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def _ours(marker: str) -> list[int]:
    """Pids of processes whose environment carries our state directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"SDP_LOCAL={marker}".encode() in environ.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def test_up_then_down_leaves_nothing_running(tmp_path):
    local = tmp_path / "local"
    port = free_port()
    env = {**os.environ, "SDP_LOCAL": str(local), "AIRFLOW_PORT": str(port), "SDP_FREE_PORTS": "1"}
    up = subprocess.run([sys.executable, "-m", "devstack.stack", "up"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=400)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout and "password:" in up.stdout
        pid_files = list((local / "run").glob("*.pid"))
        names = {p.stem for p in pid_files}
        assert {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= names
        assert httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health").status_code == 200
        assert _ours(str(local)), "no process of the stack found"
        again = subprocess.run([sys.executable, "-m", "devstack.stack", "up"], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = subprocess.run([sys.executable, "-m", "devstack.stack", "down"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "airflow-scheduler" in down.stdout
    assert _ours(str(local)) == []
    assert list((local / "run").glob("*.pid")) == []
    status = subprocess.run([sys.executable, "-m", "devstack.stack", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert "not running" in status.stdout
