"""A server that accepts connections and never answers: a real HTTP server (Python's own), frozen with SIGSTOP.

Every question ttcl asks a server about itself (its models, version, token counts) waits at most the ref's own
`timeout=` when that is shorter than the usual 10 s (QA pass: `timeout=3` took 25 s to refuse a run, two 10 s
waits on /v1/models)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port, server

from ttcl.compiler.endpoints import parse_endpoint
from ttcl.runtime.backends.endpoint_http import Unreachable, served_model


@pytest.fixture
def frozen_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with server(cmd, port, tmp_path / "http.log", health="/", timeout=60) as proc:
        os.kill(proc.pid, signal.SIGSTOP)  # the kernel still accepts its connections; nothing answers them
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            os.kill(proc.pid, signal.SIGCONT)


def test_a_question_about_the_server_waits_the_refs_timeout(frozen_url: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(Unreachable, match=r"cannot reach .*/v1/models: timed out"):
        served_model(parse_endpoint(f"{frozen_url}?timeout=1"))
    assert time.monotonic() - t0 < 5  # 10 s before


def test_a_run_on_a_frozen_server_fails_within_its_timeouts(frozen_url: str, tmp_path: Path) -> None:
    prog = Path(__file__).resolve().parents[1] / "programs" / "best_of_n.ttc"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ttcl", "run", str(prog), "--input", "1 +2", "--model",
                           f"policy={frozen_url}?model=m&local=ttcl:arith-s&timeout=1"],
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot reach" in done.stderr and "timed out" in done.stderr, done.stderr
    assert took < 20, took  # start-up and two 1 s waits; two 10 s waits before
