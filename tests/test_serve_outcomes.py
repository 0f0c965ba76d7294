"""What a plain OpenAI client reads when a served strategy does not simply answer, against real processes.

A budget that stopped the strategy is `finish_reason: "length"`, as a completion cut at `max_tokens`; a strategy
that failed without an answer (its inference server went away) is a 500, not a 200 with an empty answer (QA
pass: both were `"stop"` and 200). A stream sends its usage chunk unless the client declines it.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import ZOO, free_port, server, stop, transformers_serve_cmd

pytest.importorskip("fastapi")
pytest.importorskip("openai")

SECONDS = """ttcl 1
model policy = "ttcl:arith-s"
budget per item { calls <= 16; seconds <= 0.001 }
strategy main(question: text[<=40]) -> answer {
    a = sample(policy, "{question}\\n", n = 2, max_tokens = 11, temperature = 0.8)
    b = extend(policy, a, max_tokens = 11)
    return vote(extend(policy, b, max_tokens = 11))
}
"""
PLAIN = """ttcl 1
model policy = "ttcl:arith-s"
budget per item { calls <= 4 }
strategy main(question: text[<=40]) -> answer {
    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 30, temperature = 0.8))
}
"""


def _post(url: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _ask(model: str, **kw: object) -> dict:
    return {"model": model, "seed": 1, "messages": [{"role": "user", "content": "35 *2 -10"}], **kw}


def _chunks(raw: str) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]


def test_a_budget_stop_is_length_and_a_stream_sends_usage_unless_declined(tmp_path: Path) -> None:
    (tmp_path / "secs.ttc").write_text(SECONDS)
    (tmp_path / "plain.ttc").write_text(PLAIN)
    port = free_port()
    cmd = [sys.executable, "-m", "ttcl.cli", "serve", str(tmp_path / "secs.ttc"), str(tmp_path / "plain.ttc"),
           "--port", str(port)]
    with server(cmd, port, tmp_path / "serve.log", timeout=180):
        url = f"http://127.0.0.1:{port}/v1"
        code, raw = _post(url, _ask("secs"))
        body = json.loads(raw)
        assert code == 200 and body["usage"]["ttcl"]["status"] == "stopped", raw
        assert body["choices"][0]["finish_reason"] == "length"
        assert "per-item seconds" in " ".join(body["usage"]["ttcl"]["failures"].values())
        code, raw = _post(url, _ask("secs", stream=True))
        assert code == 200 and [c["choices"][0]["finish_reason"] for c in _chunks(raw) if c["choices"]][-1] == "length"

        code, raw = _post(url, _ask("plain"))
        assert code == 200 and json.loads(raw)["choices"][0]["finish_reason"] == "stop"
        for options, usage in ((None, True), ({"include_usage": True}, True), ({"include_usage": False}, False)):
            code, raw = _post(url, _ask("plain", stream=True, stream_options=options))
            chunks = _chunks(raw)
            assert code == 200 and raw.rstrip().endswith("data: [DONE]")
            assert any("usage" in c for c in chunks) is usage, (options, raw)
            assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
        code, raw = _post(url, _ask("plain", stream=True, stream_options="yes"))
        assert code == 400 and json.loads(raw)["error"]["param"] == "stream_options"


def test_a_strategy_whose_server_went_away_is_a_500_that_says_why(tmp_path: Path) -> None:
    backend = free_port()
    front = free_port()
    with server(transformers_serve_cmd(ZOO / "arith-s", backend), backend, tmp_path / "ts.log", timeout=180) as ts:
        cmd = [sys.executable, "-m", "ttcl.cli", "serve", str(Path(__file__).resolve().parents[1] / "programs"
                                                             / "self_consistency.ttc"),
               "--port", str(front), "--set", "n=2", "--model", f"policy=http://127.0.0.1:{backend}/v1"]
        with server(cmd, front, tmp_path / "serve.log", timeout=180):
            url = f"http://127.0.0.1:{front}/v1"
            code, raw = _post(url, _ask("self_consistency"))
            assert code == 200 and json.loads(raw)["usage"]["ttcl"]["status"] == "ok", raw
            code, raw = _post(url, {**_ask("self_consistency"), "messages": [{"role": "user", "content": "1" * 41}]})
            said = json.loads(raw)["error"]["message"]  # the server by its URL, not ttcl's `?model=...&engine=...`
            assert code == 400 and f"41 tokens (model http://127.0.0.1:{backend}/v1's tokenizer)" in said, raw
            stop(ts)
            code, raw = _post(url, _ask("self_consistency"))
            err = json.loads(raw)["error"]
            assert code == 500 and err["type"] == "server_error" and err["code"] == "strategy_failed", raw
            assert err["message"].startswith("the strategy failed: ") and "unreachable" in err["message"], raw
            assert "probe" not in err["message"]
            req = urllib.request.Request(url + "/chat/completions", data=json.dumps(_ask("self_consistency")).encode(),
                                         headers={"content-type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as failed:  # each client retry would run the strategy again
                urllib.request.urlopen(req, timeout=120)
            assert failed.value.code == 500 and failed.value.headers["x-should-retry"] == "false"
            code, raw = _post(url, _ask("self_consistency", stream=True))
            assert code == 200 and _chunks(raw)[-1]["error"]["code"] == "strategy_failed", raw
            # the log says the outage (it said nothing: QA pass), and at start that this server's seed is global
            log = (tmp_path / "serve.log").read_text()
            assert "ttcl serve: 1 of 1 request(s) of self_consistency failed: main/paths: endpoint" in log, log
            assert "(transformers-serve) ignores a request's seed, since it has one global seed" in log, log
