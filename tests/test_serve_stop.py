"""`ttcl serve` under a client that hangs up and an operator who presses Ctrl-C twice, as real processes."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, server

pytest.importorskip("fastapi")

SLOW = """ttcl 1
model policy = "ttcl:arith-s"
param rounds: int = 64 in 1..64
budget per item { calls <= 20k; gen_tokens <= 2M }
strategy main(question: text[<=40]) -> answer {
    pool = sample(policy, "{question}\\n", n = 256, max_tokens = 80, temperature = 1.0)
    repeat rounds {
        pool = pool + sample(policy, "{question}\\n", n = 256, max_tokens = 80, temperature = 1.0)
    }
    return vote(pool)
}
"""
FAST = SLOW.replace("n = 256", "n = 1").replace("param rounds: int = 64", "param rounds: int = 1")
# one step only: a single batched call of 256 samples of up to 117 tokens from the largest bundled model (tens of
# seconds on a 2-core CPU), so a hang-up can only be acted on inside it
ONE_STEP = """ttcl 1
model policy = "ttcl:countdown-l"
budget per item { calls <= 256 }
strategy main(question: text[<=40]) -> answer {
    return vote(sample(policy, "{question}\\n", n = 256, max_tokens = 117, temperature = 1.0))
}
"""


def _post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _ask(model: str, **kw: object) -> dict:
    return {"model": model, "seed": 3, "messages": [{"role": "user", "content": "35 *2 -10"}], **kw}


def _wait_for(log: Path, text: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < end, log.read_text()
        time.sleep(0.2)


@pytest.fixture()
def programs(tmp_path: Path) -> list[str]:
    (tmp_path / "slow.ttc").write_text(SLOW)
    (tmp_path / "fast.ttc").write_text(FAST)
    return [str(tmp_path / "slow.ttc"), str(tmp_path / "fast.ttc")]


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_stops_its_work(programs: list[str], tmp_path: Path, stream: bool) -> None:
    """The abandoned strategy ran to its end, and every request behind it waited (QA pass: 22 s for 0.05 s)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with server([sys.executable, "-m", "ttcl.cli", "serve", *programs, "--port", str(port)], port, log):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        if stream:  # keep-alives come every second: read the first, then hang up
            req = urllib.request.Request(url, data=json.dumps(_ask("slow", stream=True)).encode(),
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.readline().startswith(b": keep-alive")
                time.sleep(1.0)
        else:
            with pytest.raises((TimeoutError, urllib.error.URLError, socket.timeout)):
                _post(url, _ask("slow"), timeout=1.5)  # hangs up after 1.5 s
        _wait_for(log, "ttcl serve: stopped a batch of 1 request(s) of slow", timeout=120)
        assert _post(url, _ask("fast"), timeout=60)["choices"][0]["message"]["content"]


def test_a_hang_up_stops_the_work_inside_a_long_step(tmp_path: Path) -> None:
    """The scheduler asks after each step; a one-step program ran its whole batched call after its client left
    (QA pass: a hung-up request went on for 21-26 s). The decode loop now asks too."""
    (tmp_path / "one.ttc").write_text(ONE_STEP)
    port = free_port()
    log = tmp_path / "serve.log"
    with server([sys.executable, "-m", "ttcl.cli", "serve", str(tmp_path / "one.ttc"), "--port", str(port)], port, log):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        question = {"model": "one", "seed": 3, "messages": [{"role": "user", "content": "7 7 1 5 -> 43"}]}
        with pytest.raises((TimeoutError, urllib.error.URLError, socket.timeout)):
            _post(url, question, timeout=1.0)  # hangs up after 1 s, inside the one step
        _wait_for(log, "ttcl serve: stopped a batch of 1 request(s) of one, inside a model call: every client hung "
                       "up", timeout=120)


def test_a_long_batch_does_not_hold_up_a_model_id_that_shares_no_model(programs: list[str], tmp_path: Path) -> None:
    """Each model id has its own worker: while `slow` (arith-s) runs, `other` (arith-m) answers. One worker for
    the whole server made it wait behind `slow` (docs/serve.md said so)."""
    other = tmp_path / "other.ttc"
    other.write_text(FAST.replace("ttcl:arith-s", "ttcl:arith-m"))
    port = free_port()
    log = tmp_path / "serve.log"
    with server([sys.executable, "-m", "ttcl.cli", "serve", programs[0], str(other), "--port", str(port)], port, log):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        req = urllib.request.Request(url, data=json.dumps(_ask("slow", stream=True)).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.readline().startswith(b": keep-alive")  # `slow` is admitted and queued: its lane runs it
            time.sleep(1.0)
            answer = _post(url, _ask("other"), timeout=60)
            assert answer["choices"][0]["message"]["content"] and answer["usage"]["ttcl"]["status"] == "ok"
            assert "stopped a batch" not in log.read_text()  # `slow` was still running all along
        _wait_for(log, "ttcl serve: stopped a batch of 1 request(s) of slow", timeout=120)


def test_a_second_ctrl_c_stops_at_once_with_130(programs: list[str], tmp_path: Path) -> None:
    """It aborted (SIGABRT, four tracebacks, "terminate called without an active exception") (QA pass)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with server([sys.executable, "-m", "ttcl.cli", "serve", programs[0], "--port", str(port)], port, log) as proc:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        dropped: list[BaseException] = []

        def call() -> None:
            try:
                _post(url, _ask("slow"), 120)
            except (OSError, http.client.HTTPException) as e:  # the connection closes under it
                dropped.append(e)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        time.sleep(1.5)  # the request is running
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        text = log.read_text()
        assert "ttcl serve: interrupted again, stopped at once (requests in flight dropped)" in text
        assert "Traceback" not in text and "terminate called" not in text, text
        caller.join(timeout=30)
        assert dropped, "the request in flight was answered, not dropped"


def test_a_program_with_a_pooled_budget_is_not_served(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "ttcl.cli", "serve", str(root / "programs" / "pooled_adaptive.ttc"),
                        "--port", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.startswith("error: pooled_adaptive declares `budget pooled`, a budget shared over the items")
