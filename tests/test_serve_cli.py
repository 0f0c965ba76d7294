"""`ttcl serve` as a process: bad --port/--host, a port in use, and Ctrl-C, with their exit codes.

Bad input exits 2 with one line and no traceback; Ctrl-C exits 130 after a clean shutdown; the
"serving on" line is printed only once the server listens.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from servers import free_port, healthy, server, stop

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

PROGRAM = """ttcl 1
model policy = "ttcl:arith-s"
budget per item { calls <= 4 }
strategy main(question: text[<=40]) -> answer {
    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 20, temperature = 0.8))
}
"""


@pytest.fixture
def prog(tmp_path):
    p = tmp_path / "tiny.ttc"
    p.write_text(PROGRAM)
    return p


def serve(prog, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ttcl.cli", "serve", str(prog), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_port_out_of_range(prog, port):
    line = one_error_line(serve(prog, "--port", port))
    assert line.startswith("error: ") and f"--port {port}" in line and "0..65535" in line


@pytest.mark.parametrize("ms", ["-5", "nan", "inf"])
def test_batch_window_must_be_zero_or_more_milliseconds(prog, ms):
    line = one_error_line(serve(prog, "--batch-window-ms", ms))
    assert line.startswith(f"error: --batch-window-ms {ms}: expected a number of milliseconds, 0 or more"), line


def test_port_in_use(prog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_error_line(serve(prog, "--port", str(port)))
    assert line == f"error: cannot listen on 127.0.0.1:{port} (--host, --port): address already in use"


def test_host_not_on_this_machine(prog):
    line = one_error_line(serve(prog, "--host", "192.0.2.1", "--port", "0"))  # TEST-NET-1: no DNS lookup
    assert line.startswith("error: cannot listen on 192.0.2.1:0") and "cannot assign requested address" in line


def test_port_zero_is_announced_once_listening(prog, tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ttcl.cli", "serve", str(prog), "--port", "0"], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (m := re.search(r"ttcl serve: tiny on (http://127\.0\.0\.1:(\d+))/v1", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert int(m.group(2)) != 0  # the port the OS picked, not "0"
        assert healthy(m.group(1) + "/health")  # announced only once it accepts connections
    finally:
        stop(proc)


def test_ctrl_c_exits_130(prog, tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "ttcl.cli", "serve", str(prog), "--port", str(port)]
    with server(cmd, port, tmp_path / "serve.log") as proc:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
        assert proc.wait(timeout=30) == 130, (tmp_path / "serve.log").read_text()
    out = (tmp_path / "serve.log").read_text()
    assert "interrupted" in out and "Traceback" not in out
