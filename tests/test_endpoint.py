"""The endpoint backend against a real `transformers serve` process (started here, killed by pid)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import ZOO, free_port, server, transformers_serve_cmd

from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclError, TtclRuntimeError
from ttcl.runtime.dataset import Item
from ttcl.runtime.runner import Runner, RunOptions

pytest.importorskip("openai")
pytest.importorskip("fastapi")

MODEL = ZOO / "arith-s"

PROGRAM = """ttcl 1
model policy = "ttcl:arith-s"
param n: int = 2 in 1..8
budget per item { calls <= 8; gen_tokens <= 400; flops <= 1e9 }
strategy main(question: text[<=40]) -> answer {
    paths = sample(policy, "{question}\\n", n = n, max_tokens = 60, temperature = 0.8)
    return vote(paths)
}
"""

STEPS = """ttcl 1
model policy = "ttcl:arith-s"
strategy main(question: text[<=40]) -> answer {
    first = sample(policy, "{question}\\n", n = 1, max_tokens = 20, temperature = 0.0, stop = ["\\n"])
    rest = extend(policy, first, n = 1, max_tokens = 40, temperature = 0.0)
    return vote(rest)
}
"""


LOGS: dict[str, Path] = {}  # each module server's log, by its URL: the requests it answered


@pytest.fixture(scope="module")
def ts_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("ts") / "serve.log"
    with server(transformers_serve_cmd(MODEL, port), port, log, timeout=180, env={"PYTHONUNBUFFERED": "1"}):
        LOGS[f"http://127.0.0.1:{port}/v1"] = log
        yield f"http://127.0.0.1:{port}/v1"


def _run(source: str, ref: str, questions: list[str], **kw):
    compiled = compile_program(source=source, file="t.ttc", model_overrides={"policy": ref}, **kw)
    runner = Runner(compiled, RunOptions(seed=0))
    return runner, runner.run([Item(index=i, question=q) for i, q in enumerate(questions)])


def test_sample_charges_server_usage_and_fits_budget(ts_url):
    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url)
    assert "model=" in ref and "engine=transformers-serve" in ref
    runner, summary = _run(PROGRAM, ref, ["35 *2 -10", "4 +5"])
    be = runner.backends[ref]
    assert be.engine == "transformers-serve" and not be.shares_prefill
    assert summary.failed == 0 and summary.answered == 2
    for r, q in zip(summary.results, ["35 *2 -10", "4 +5"], strict=True):
        c = r["cost"]
        # n = 2 separate requests, each prefilling the prompt the server counted (cross-checked locally)
        assert c["calls"] == 2
        assert c["prompt_tokens"] == 2 * be.count_tokens(q + "\n")
        assert 2 <= c["gen_tokens"] <= 2 * 60
        assert c["flops"] > 0
        for unit, limit in summary.budget_item.items():
            assert c[unit] <= limit
    assert summary.header["engines"][ref]["engine"] == "transformers-serve"
    # a greedy step stops at its stop string, kept in the text; extend continues it by text
    _, steps = _run(STEPS, ref, ["35 *2 -10"])
    assert steps.failed == 0, steps.results
    assert steps.results[0]["answer"] is not None


def test_samples_sent_at_once_are_charged_the_time_they_spanned(ts_url):
    """n samples go to the server as n requests at once: the item was charged the sum of their latencies, so a
    `seconds` budget stopped it early (8 s charged for a 2.4 s run, found by a QA pass). One item alone cannot
    have spent more seconds than the run's wall time."""
    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url)
    _, summary = _run(PROGRAM.replace("= 2 in 1..8", "= 8 in 1..8").replace("calls <= 8", "calls <= 16")
                      .replace("gen_tokens <= 400", "gen_tokens <= 1k"), ref, ["35 *2 -10"])
    (r,) = summary.results
    assert r["cost"]["calls"] == 8
    assert 0 < r["cost"]["seconds"] <= summary.wall_seconds


def test_the_python_api_takes_a_server_url_as_the_cli_does(ts_url):
    """`ttcl.run(models={"policy": URL})` said the served model's FLOPs cannot be counted, where `ttcl run
    --model policy=URL` asks the server which model it serves (QA pass)."""
    import ttcl

    res = ttcl.run(str(Path(__file__).resolve().parent.parent / "programs" / "self_consistency.ttc"),
                   inputs="35 *2 -10", models={"policy": ts_url}, set={"n": 2})
    assert res.summary.failed == 0 and res.summary.results[0]["cost"]["flops"] > 0


def test_a_servers_token_count_is_checked_against_the_text_it_sent(ts_url):
    """A server that reported 1 completion token for 327 tokens of text was charged 1 (QA pass). Its answer is
    written by hand here, as such a server would send it, and read by the real backend of a real server."""
    from types import SimpleNamespace

    from ttcl.runtime.backends.base import SamplingParams
    from ttcl.runtime.backends.endpoint import EndpointCallError, open_endpoint, pin_served_model

    be = open_endpoint(pin_served_model(ts_url))
    prompt = "35 *2 -10\n"
    L, m = be.count_tokens(prompt), 112

    def answer(text: str, reported: int) -> SimpleNamespace:
        choice = SimpleNamespace(index=0, text=text, finish_reason="length", model_extra={})
        usage = SimpleNamespace(prompt_tokens=L, completion_tokens=reported, prompt_tokens_details=None)
        return SimpleNamespace(choices=[choice], usage=usage, system_fingerprint=None)

    worst = be._worst(L, 1, m)
    held = "35*2=70\n" * 5  # 40 characters: 40 tokens of arith-s's character-level tokenizer
    got = be._parse(answer(held, 1), L, 1, m, SamplingParams(max_tokens=m), worst, 0.1)
    assert got.usage.gen_tokens == be.count_tokens(held) == 40
    with pytest.raises(EndpointCallError, match="its text holds 328 tokens by the local tokenizer, more than n x "
                                                "max_tokens = 112") as e:
        be._parse(answer("35*2=70\n" * 41, 1), L, 1, m, SamplingParams(max_tokens=m), worst, 0.1)
    assert e.value.usage == worst  # charged at its worst case
    honest = be._parse(answer(held, 40), L, 1, m, SamplingParams(max_tokens=m), worst, 0.1)
    assert honest.usage.gen_tokens == 40


def test_a_wrong_url_or_twin_is_named_as_such(ts_url):
    """A URL without /v1, an id the server does not serve, and a `local=` twin that is another model all read as
    "its FLOPs cannot be counted" in `ttcl check`, or (the twin) were accepted with another model's FLOPs (QA pass)."""
    from ttcl.runtime.backends.endpoint import pin_served_model

    root = ts_url.removesuffix("/v1")
    with pytest.raises(TtclRuntimeError, match="GET /models answered 404 without a model list; .* usually ends in /v1"):
        pin_served_model(root)
    with pytest.raises(TtclRuntimeError, match=f"does not serve model 'nope' \\(it serves {MODEL}\\)"):
        pin_served_model(f"{ts_url}?model=nope")
    with pytest.raises(TtclRuntimeError, match="and `local=ttcl:arith-l` is another model"):
        pin_served_model(f"{ts_url}?local=ttcl:arith-l")
    assert pin_served_model(f"{ts_url}?local=ttcl:arith-s") == f"{ts_url}?local=ttcl:arith-s"
    down = f"http://127.0.0.1:{free_port()}/v1?local=ttcl:arith-s"  # says what it serves: check needs no server
    assert pin_served_model(down) == down


def test_an_item_too_long_fails_alone(ts_url):
    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url)
    long_q = " ".join(["1 +1"] * 60)  # far over the declared text[<=40] (and the model's 160-token context)
    _, summary = _run(PROGRAM, ref, [long_q, "4 +5"])
    bad, good = summary.results
    assert bad["status"] in ("failed", "stopped") and bad["answer"] is None
    assert any("longer" in why or "context" in why for why in bad["failures"].values()), bad
    assert good["status"] == "ok" and good["answer"] is not None
    assert bad["cost"]["calls"] == 0  # refused before it was sent: nothing charged


def test_missing_capability_is_a_start_error(ts_url):
    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url).replace("engine=transformers-serve", "engine=generic")
    with pytest.raises(TtclRuntimeError, match=r"line 4: `sample`.*stop strings"):
        _run(STEPS, ref, ["1 +1"])


def test_unknown_size_only_matters_with_a_flops_budget(ts_url):
    no_flops = PROGRAM.replace("; flops <= 1e9", "")
    with pytest.raises(TtclError, match="FLOPs cannot be counted"):
        compile_program(source=PROGRAM, file="t.ttc", model_overrides={"policy": ts_url})
    # the server's model id is its directory: the backend finds its tokenizer there; FLOPs are not counted
    runner, summary = _run(no_flops, ts_url + "?local=" + str(MODEL), ["4 +5"])
    assert summary.failed == 0


def test_dead_and_wrong_endpoints_are_clear_errors(tmp_path):
    port = free_port()
    ref = f"http://127.0.0.1:{port}/v1?local={MODEL}"
    with pytest.raises(TtclRuntimeError, match="cannot reach .* is the server running"):
        _run(PROGRAM, ref, ["1 +1"])
    # a real HTTP server that is not an inference server
    (tmp_path / "v1").mkdir()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    from servers import server as run_server

    with run_server(cmd, port, tmp_path / "http.log", health="/", timeout=30):
        with pytest.raises(TtclRuntimeError, match="without a model list"):
            _run(PROGRAM, ref, ["1 +1"])


def test_program_text_may_not_name_a_remote_host():
    remote = PROGRAM.replace('"ttcl:arith-s"', '"http://198.51.100.7:8000/v1?local=ttcl:arith-s"')
    with pytest.raises(TtclError, match="198.51.100.7.*not this machine"):
        compile_program(source=remote, file="t.ttc")
    # the user allows the host, or gives the endpoint on the command line: trusted (nothing is contacted here)
    compile_program(source=remote, file="t.ttc", allow_remote=["198.51.100.7"])
    compile_program(source=PROGRAM, file="t.ttc",
                    model_overrides={"policy": "http://198.51.100.7:8000/v1?local=ttcl:arith-s"})
    with pytest.raises(TtclError, match="credentials in the URL"):
        compile_program(source=PROGRAM, file="t.ttc",
                        model_overrides={"policy": "http://user:sk-secret@127.0.0.1:1/v1?local=ttcl:arith-s"})


def test_cli_allow_remote_and_api_key_never_shown(tmp_path):
    prog = tmp_path / "p.ttc"
    prog.write_text(PROGRAM.replace('"ttcl:arith-s"', '"http://203.0.113.9:1/v1?local=ttcl:arith-s"'))
    exe = [sys.executable, "-m", "ttcl.cli"]
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "TTCL_API_KEY": "sk-very-secret-123", "TTCL_CONFIG": str(tmp_path / "empty.toml")}
    out = subprocess.run([*exe, "check", str(prog)], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "--allow-remote 203.0.113.9" in out.stderr
    out = subprocess.run([*exe, "check", str(prog), "--allow-remote", "203.0.113.9"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    for given in ("http://203.0.113.9:1", "203.0.113.9:1"):  # kept and ignored before (QA pass)
        out = subprocess.run([*exe, "check", str(prog), "--allow-remote", given], capture_output=True, text=True,
                             env=env)
        assert out.returncode == 2 and out.stderr.strip() == (
            f"error: --allow-remote {given!r}: expected a host name or address, not a URL or host:port; "
            "give --allow-remote 203.0.113.9")
    for given in ("", "a b", "\udcff"):  # accepted before, matching no host (QA pass); argv's \xff is a surrogate
        out = subprocess.run([*exe, "check", str(prog), "--allow-remote", given], capture_output=True, text=True,
                             env=env, errors="surrogateescape")
        assert out.returncode == 2 and out.stderr.strip() == (
            f"error: --allow-remote {ascii(given)}: expected a host name or address (letters, digits, `.`, `-`), "
            "such as gpu-box.internal or 10.0.0.5"), out.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text('allow_remote = ["203.0.113.9"]\n')
    out = subprocess.run([*exe, "check", str(prog)], capture_output=True, text=True, env={**env, "TTCL_CONFIG": str(cfg)})
    assert out.returncode == 0, out.stderr
    # a TTCL_CONFIG that names no file is an error, not an empty config (what it allowed would vanish unseen)
    missing = tmp_path / "typo.toml"
    out = subprocess.run([*exe, "check", str(prog)], capture_output=True, text=True,
                         env={**env, "TTCL_CONFIG": str(missing)})
    assert out.returncode == 2 and out.stderr.strip() == (
        f"{missing}: error: TTCL_CONFIG names this ttcl config, which does not exist "
        "(unset TTCL_CONFIG to use ~/.config/ttcl/config.toml)"), out.stderr
    # a dead loopback endpoint with a key in the environment: a clear error, exit 2, no traceback, no key
    port = free_port()
    out = subprocess.run([*exe, "run", str(prog), "--input", "1 +1", "--model",
                          f"policy=http://127.0.0.1:{port}/v1?local=ttcl:arith-s"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 2 and "is the server running" in out.stderr
    assert "Traceback" not in out.stderr and "sk-very-secret" not in out.stderr + out.stdout


def test_stream_schedule_matches_lockstep(ts_url):
    """Items advancing on their own (stream) give the same answers and ledger as lockstep (greedy: deterministic)."""
    from ttcl.runtime.backends.endpoint import pin_served_model
    from ttcl.runtime.scheduler_stream import StreamScheduler

    ref = pin_served_model(ts_url)
    compiled = compile_program(source=STEPS, file="t.ttc", model_overrides={"policy": ref})
    items = [Item(index=i, question=q) for i, q in enumerate(["35 *2 -10", "4 +5 *2", "9 -3"])]
    out = {}
    for mode in ("lockstep", "stream"):
        runner = Runner(compiled, RunOptions(seed=0, schedule=mode))
        assert isinstance(runner.scheduler(runner.accountant(), []), StreamScheduler) == (mode == "stream")
        out[mode] = runner.run(items)
    a, b = out["lockstep"], out["stream"]
    assert [r["answer"] for r in a.results] == [r["answer"] for r in b.results]
    assert [r["cost"]["gen_tokens"] for r in a.results] == [r["cost"]["gen_tokens"] for r in b.results]
    assert [r["cost"]["prompt_tokens"] for r in a.results] == [r["cost"]["prompt_tokens"] for r in b.results]
    assert b.failed == 0


def test_trace_header_records_engine_version_and_fingerprint(ts_url, tmp_path):
    """The header is written before any item's request; the start-up probe gives it the fingerprint."""
    import openai

    from ttcl.runtime.backends.endpoint import PROBE_PROMPT, pin_served_model
    from ttcl.runtime.trace import read_trace

    ref = pin_served_model(ts_url)
    compiled = compile_program(source=PROGRAM, file="t.ttc", model_overrides={"policy": ref})
    trace = tmp_path / "run.jsonl"
    runner = Runner(compiled, RunOptions(seed=0, trace=trace))
    summary = runner.run([Item(index=0, question="4 +5")])
    assert summary.failed == 0
    header = read_trace(trace).header.model_dump()
    eng = header["engines"][ref]
    # what the server itself answers to a completion, asked here with the plain client
    direct = openai.OpenAI(base_url=ts_url, api_key="EMPTY").completions.create(
        model=runner.backends[ref].model_id, prompt=PROBE_PROMPT, max_tokens=1)
    assert "system_fingerprint" in eng and eng["system_fingerprint"] == (direct.system_fingerprint or None)
    assert eng["engine"] == "transformers-serve" and "version" in eng
    assert eng["probe"] == {"prompt_tokens": runner.backends[ref].count_tokens(PROBE_PROMPT), "gen_tokens": 1}
    # the probe is charged to no item: the item's prompt tokens are its own request's, n = 2 of them
    assert summary.results[0]["cost"]["prompt_tokens"] == 2 * runner.backends[ref].count_tokens("4 +5\n")


JUDGED = """ttcl 1
model policy = "ttcl:arith-s"
verifier critic = judge(policy, "{c.text} Is this right? Answer yes or no:")
budget per item { calls <= 8; gen_tokens <= 400 }
strategy main(question: text[<=40]) -> answer {
    paths = sample(policy, "{question}\\n", n = 2, max_tokens = 20, temperature = 0.8)
    return best(verify(critic, paths))
}
"""


def test_judge_on_transformers_serve_is_refused_at_start(ts_url):
    """`transformers serve` ignores `logprobs`: a judge on it is a clear error before any item runs."""
    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url)  # names its engine: refused when the program is compiled (`ttcl check`)
    with pytest.raises(TtclError, match="verifier `critic`: a judge reads next-token log-probabilities, which "
                                        "transformers-serve does not return"):
        compile_program(source=JUDGED, file="t.ttc", model_overrides={"policy": ref})
    bare = f"{ts_url}?model={MODEL}&local=ttcl:arith-s"  # no engine in the ref: found when the run starts
    compiled = compile_program(source=JUDGED, file="t.ttc", model_overrides={"policy": bare})
    with pytest.raises(TtclRuntimeError) as e:
        Runner(compiled, RunOptions(seed=0))
    msg = str(e.value)
    assert "verifier 'critic'" in msg and "transformers-serve" in msg and "log-probabilities" in msg


def test_endpoint_timeout_key_is_parsed_and_checked():
    from ttcl.compiler.endpoints import EndpointError, parse_endpoint

    assert parse_endpoint("http://127.0.0.1:1/v1").timeout == 600.0
    assert parse_endpoint("http://127.0.0.1:1/v1?timeout=2.5").timeout == 2.5
    for bad in ("0", "-1", "nan", "inf", "abc", "86401"):
        with pytest.raises(EndpointError, match=r"timeout must be a number of seconds in \(0, 86400\]"):
            parse_endpoint(f"http://127.0.0.1:1/v1?timeout={bad}")


def test_a_server_that_dies_mid_run_fails_the_rest_without_backoff_and_is_used_again_once_back(tmp_path):
    """The server is killed when the first item's result arrives. The requests in flight then back off through
    every try; each request after them tries once, its error says why, so a dead server no longer costs 1.75 s
    of backoff per request. A server back on the same port answers the next run at once."""
    from servers import stop

    port = free_port()
    ref = f"http://127.0.0.1:{port}/v1?local={MODEL}&concurrency=2"
    cmd = transformers_serve_cmd(MODEL, port)
    with server(cmd, port, tmp_path / "a.log", timeout=180) as proc:
        compiled = compile_program(source=PROGRAM, file="t.ttc", model_overrides={"policy": ref})
        runner = Runner(compiled, RunOptions(seed=0))
        summary = runner.run([Item(index=i, question=f"{i} +1") for i in range(16)],
                             on_result=lambda r: stop(proc))
    failed = [" ".join(r["failures"].values()) for r in summary.results if r["status"] == "failed"]
    assert len(failed) >= 10, summary.results
    unreachable = [e for e in failed if "unreachable" in e and "nothing was charged" in e]
    assert all(e in unreachable or "outcome unknown" in e for e in failed), failed  # in flight at the kill
    full = [e for e in unreachable if "after 4 tries" in e]
    fast = [e for e in unreachable if "not retried, since every try of an earlier request found it unreachable" in e]
    # concurrency 2: at most the two requests in flight back off through every try, or, when the server's shutdown
    # answered them first, end with its 503 (outcome unknown); then the next request is the first to find it
    # unreachable, and backs off through every try (a CI run under load); every later request fails at once
    answered = sum("outcome unknown" in e for e in failed)
    assert len(fast) >= 8 and len(full) + len(fast) == len(unreachable), failed
    assert len(full) <= 2 and answered <= 2 and len(failed) - len(fast) <= 2 + (answered > 0), failed
    with server(cmd, port, tmp_path / "b.log", timeout=180):
        back = runner.run([Item(index=0, question="0 +1")])
    assert back.results[0]["status"] == "ok", back.results


def test_a_twin_is_checked_against_the_path_the_server_names(tmp_path):
    """vLLM's model list names the loaded path in `root` when `--served-model-name` hides it from the id (the
    engine suite starts a real one): the twin's config is compared with that directory's. A copy of the served
    model in another directory is the same model."""
    import shutil

    from ttcl.compiler.endpoints import parse_endpoint
    from ttcl.runtime.backends.endpoint_http import refuse_wrong_twin

    ep = parse_endpoint("http://127.0.0.1:9/v1")
    listed = {"object": "list", "data": [{"id": "arith", "object": "model", "root": str(ZOO / "arith-m"),
                                          "max_model_len": 160}]}
    with pytest.raises(TtclRuntimeError, match=r"serves arith \(.*arith-m\), and `local=ttcl:arith-s` is another "
                                                r"model \(n_embd 64 there, 32 in the twin\)"):
        refuse_wrong_twin(ep, "ttcl:arith-s", listed, "arith")
    refuse_wrong_twin(ep, "ttcl:arith-m", listed, "arith")
    copy = tmp_path / "copy-of-arith-m"
    shutil.copytree(ZOO / "arith-m", copy)
    refuse_wrong_twin(ep, str(copy), listed, "arith")
    refuse_wrong_twin(ep, "ttcl:arith-s", {"data": [{"id": "arith", "root": "org/not-here"}]}, "arith")  # unknowable


def test_a_probe_that_times_out_says_so(ts_url, capsys):
    """It said "failed: TimeoutError: " and nothing more (QA pass)."""
    from ttcl.cli import main

    code = main(["run", str(Path(__file__).parent.parent / "programs" / "self_consistency.ttc"), "--model",
                 f"policy={ts_url}?local=ttcl:arith-s&timeout=0.001", "--input", "4 +5", "--set", "n=2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the start-up probe (a 1-token completion) got no answer within the ref's timeout=0.001 s" in err, err


def test_a_process_probes_a_server_once_however_many_runs(ts_url):
    """`ttcl serve` probed the server on every request: a completion no usage counted, and once the server was
    down an error that blamed "the start-up probe" (QA pass). A later run sends only its items' calls."""
    import time

    from ttcl.runtime.backends.endpoint import pin_served_model

    ref = pin_served_model(ts_url)
    runner, first = _run(PROGRAM, ref, ["4 +5"])  # the process's first run on this server probes it, if none did
    assert first.failed == 0

    def posts() -> int:
        return LOGS[ts_url].read_text(errors="replace").count("POST /v1/completions")

    before = posts()
    second = runner.run([Item(index=0, question="7 +1")])
    calls = int(second.results[0]["cost"]["calls"])
    deadline = time.monotonic() + 10
    while posts() < before + calls and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a probe would be logged by now too
    assert second.failed == 0 and calls == 2 and posts() == before + calls
    assert second.header["engines"][ref]["probe"] == first.header["engines"][ref]["probe"]
    assert second.header["engines"][ref]["probe_sent"] is False  # the first run's is True if no earlier test probed


def test_a_stopped_run_cancels_its_requests_still_out(ts_url):
    """A stop (a `ttcl serve` client hanging up, a Ctrl-C) ended the run, but the requests already handed to the
    client library were all sent and generated anyway: the server worked on for no one. Now a stop is heard while
    requests are out, and those not yet answered are cancelled (at most `concurrency` were on the server). One
    node's n samples are one call: the stop was only heard once all n were back."""
    import time

    from ttcl.runtime.backends.endpoint import pin_served_model
    from ttcl.runtime.scheduler import RunInterrupted

    ref = pin_served_model(ts_url) + "&concurrency=2"
    n = 96
    source = (PROGRAM.replace("= 2 in 1..8", f"= {n} in 1..{n}").replace("calls <= 8", f"calls <= {n}")
              .replace("gen_tokens <= 400", "gen_tokens <= 10k").replace("flops <= 1e9", "flops <= 1e12"))
    compiled = compile_program(source=source, file="t.ttc", model_overrides={"policy": ref})
    runner = Runner(compiled, RunOptions(seed=0))
    log = LOGS[ts_url]

    def posts() -> int:
        return log.read_text(errors="replace").count("POST /v1/completions")

    start = posts()
    t0 = time.monotonic()
    with pytest.raises(RunInterrupted):
        runner.run([Item(index=0, question="35 *2 -10")], should_stop=lambda: time.monotonic() - t0 > 0.5)
    stopped = time.monotonic() - t0
    at_stop = posts() - start
    last, settled = at_stop, time.monotonic()
    while time.monotonic() - settled < 3.0:  # until the server's log has been still for 3 s
        time.sleep(0.2)
        if (now := posts() - start) != last:
            last, settled = now, time.monotonic()
    assert stopped < 1.5  # heard within a poll; before, once all n samples of the node's call were back
    assert last <= at_stop + 3  # the two on the server (and the start-up probe) at most
    assert last < n  # before: every sample was generated, for no one
