"""Start real server processes on 127.0.0.1 for tests: a free port, wait for health, kill by pid.

No mock servers: every endpoint test talks to a real `transformers serve`,
vLLM or `ttcl serve` process started here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ZOO = Path(__file__).resolve().parents[1] / "ttcl" / "zoo" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy:\n{log.read_text()[-3000:]}")
        if healthy(url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"server not healthy after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Kill the server's process group by its pid (and wait), however it is doing."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@contextmanager
def server(cmd: list[str], port: int, log: Path, *, health: str = "/health", timeout: float = 180.0,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}{health}", timeout, log)
        yield proc
    finally:
        stop(proc)


def transformers_serve_cmd(model: Path, port: int) -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    return [str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
