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


def test_a_bad_set_at_start_up_names_the_users_flag_and_file(prog):
    """At start-up the error is the user's `--set` in their file, not a client's `ttcl.set` in a model id (QA pass)."""
    r = serve(prog, "--set", "bogus=1", "--port", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{prog}:") and "`--set bogus=1`: no param `bogus`" in r.stderr
    assert "ttcl.set" not in r.stderr


def test_a_bad_preset_at_start_up_is_named_as_typed(prog):
    """A preset's own param was reported as `--set n=999` (QA pass); a param given twice in one preset is refused
    rather than one of the two kept."""
    prog.write_text(PROGRAM.replace("budget per item", "param n: int = 2 in 1..4\nbudget per item"))
    r = serve(prog, "--port", "0", "--preset", "fast:n=999")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "`--preset fast:n=999`: 999 is outside the range 1..4 of param `n`" in r.stderr and "--set" not in r.stderr
    line = one_error_line(serve(prog, "--port", "0", "--preset", "fast:n=1,n=3"))
    assert line == "error: --preset 'fast:n=1,n=3': param n is given twice"


def test_defaults_over_budget_at_start_up_say_what_to_give(prog):
    """Defaults over the budget refused the whole server though a --preset fitted; the error said nothing of
    why the preset did not help (QA pass on a vLLM policy, where every sample prefills)."""
    prog.write_text(PROGRAM.replace("budget per item { calls <= 4 }", "param n: int = 4 in 1..4\nbudget per item "
                                    "{ calls <= 3 }").replace("n = 2,", "n = n,"))
    r = serve(prog, "--port", "0", "--preset", "small:n=2")
    assert r.returncode == 1 and "Traceback" not in r.stderr  # a budget verdict (docs/trust.md)
    line = r.stderr.strip()
    assert "cannot fit its budget: calls: worst case 4 > limit 3" in line and line.endswith(
        "the bare model id runs with the --set values (a --preset only adds another id): give --set values that fit")


def test_a_presets_params_are_those_it_runs_with():
    """`/v1/models` listed `["n=8", "n=2"]` for `--set n=8 --preset tiny:n=2`, which runs with n=2 (QA pass)."""
    from ttcl.commands.serve import with_preset

    assert with_preset(["n=8", "temperature=0.5"], ["n=2"]) == ["n=2", "temperature=0.5"]
    assert with_preset(["n=8"], ["temperature=0.1"]) == ["n=8", "temperature=0.1"]


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


def test_an_empty_host_is_refused(prog):
    """An unset $HOST (`--host ''`) bound every interface and announced http://:PORT/v1 (QA pass)."""
    line = one_error_line(serve(prog, "--host", "", "--port", "0"))
    assert line.startswith("error: --host '': an empty listen address"), line


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


def test_the_compiled_programs_kept_are_bounded(tmp_path, monkeypatch):
    """Every distinct `ttcl.set` (any float temperature, ` n ` beside `n`) compiled a program kept for good: 70 KB
    each, without end (QA pass). The oldest go first past MAX_COMPILED; a key's spelling is trimmed."""
    import ttcl.serve as serve_mod

    prog = tmp_path / "tiny.ttc"
    prog.write_text(PROGRAM.replace("budget per item", "param n: int = 2 in 1..2\nparam temperature: float = 0.8\n"
                                    "budget per item").replace("n = 2, max_tokens = 20, temperature = 0.8",
                                                               "n = n, max_tokens = 20, temperature = temperature"))
    monkeypatch.setattr(serve_mod, "MAX_COMPILED", 3)
    srv = serve_mod.Server([serve_mod.Strategy("tiny", prog)], models=[], device="cpu")
    first = srv.admit("tiny", {"n": 2})
    assert srv.admit("tiny", {" n ": 2}) is first  # one key, however it is spelled
    for t in (0.1, 0.2, 0.3, 0.4):
        srv.admit("tiny", {"temperature": t})
    assert len(srv.cache) == 3 and ("tiny", "n=2") not in srv.cache
    assert srv.admit("tiny", {"n": 2}) is not first  # compiled again, and it still runs
