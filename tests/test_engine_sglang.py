"""The `engine` suite on a real SGLang server (its own venv; docs/endpoints.md, "SGLang").

Skipped unless TTCL_SGLANG_PYTHON names the python of a venv with SGLang installed: SGLang pins a torch of its
own, and on a CPU it has no wheel of its kernels (see docs/endpoints.md for how ours was made). The server
serves arith-m (head_dim 32) with the torch-native attention backend. With TTCL_SGLANG_DETERMINISTIC set, one
more test starts it with `--enable-deterministic-inference` (on a CPU SGLang 0.5.23 refuses that mode with
torch-native attention unless patched; on a GPU it runs as it is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import ZOO, free_port, server

from ttcl.compiler.pipeline import compile_program
from ttcl.runtime.runner import Runner, RunOptions

pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(not os.environ.get("TTCL_SGLANG_PYTHON"), reason="TTCL_SGLANG_PYTHON is not set")]
ROOT = Path(__file__).resolve().parents[1]
POLICY = ZOO / "arith-m"


def sglang_cmd(port: int, *extra: str) -> list[str]:
    return [os.environ["TTCL_SGLANG_PYTHON"], "-m", "sglang.launch_server", "--model-path", str(POLICY),
            "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--attention-backend", "torch_native",
            "--sampling-backend", "pytorch", "--dtype", "float32", "--max-total-tokens", "4096",
            "--grammar-backend", "none", "--cuda-graph-backend-decode", "disabled",
            "--cuda-graph-backend-prefill", "disabled", *extra]


ENV = {"SGLANG_USE_CPU_ENGINE": "1"}


@pytest.fixture(scope="module")
def policy_url(tmp_path_factory):
    port = free_port()
    with server(sglang_cmd(port), port, tmp_path_factory.mktemp("sglang") / "policy.log", timeout=600, env=ENV):
        yield f"http://127.0.0.1:{port}/v1?model={POLICY}"  # the served id is the folder: its FLOPs are counted


def dataset(tmp_path: Path, n: int = 8, seed: int = 5) -> Path:
    path = tmp_path / "a.jsonl"
    out = subprocess.run([sys.executable, "-m", "ttcl", "data", "arith", "--steps", "1..3", "--n", str(n), "--seed",
                          str(seed)], capture_output=True, text=True, check=True)
    path.write_text(out.stdout)
    return path


def run(program: str, url: str, data: Path, trace: Path | None = None):
    from ttcl.runtime.dataset import load_dataset

    compiled = compile_program(ROOT / "programs" / program, model_overrides={"policy": url})
    return Runner(compiled, RunOptions(seed=0, trace=trace, overwrite=True)).run(load_dataset(data))


def sampled_texts(trace: Path) -> list[list[str]]:
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    return [[c["text"] for c in r["outputs"]] for r in records if r.get("type") == "node" and r.get("op") == "sample"]


def test_sglang_is_detected_sampled_per_seed_and_said_unseeded(policy_url, tmp_path):
    """Detected from `owned_by`, its version read from /server_info (it has no /version), n samples sent as n
    requests seeded seed + j (its native `n` gives all n one seed), and `seeded: false` on a server started
    without --enable-deterministic-inference, which ignores a request's seed (measured on 0.5.23)."""
    summary = run("self_consistency.ttc", policy_url, dataset(tmp_path), tmp_path / "t.jsonl")
    assert summary.failed == 0 and summary.answered == 8, summary.results
    (info,) = summary.header["engines"].values()
    assert info["engine"] == "sglang" and info["version"] and info["seeded"] is False, info
    sample = next(r for r in summary.rows if r.node == "main/paths")
    assert sample.actual_mean["calls"] == 16  # one request per sample
    out = subprocess.run([sys.executable, "-m", "ttcl", "run", str(ROOT / "programs" / "self_consistency.ttc"),
                          "--model", f"policy={policy_url.split('?')[0]}", "--input", "3 +4", "--set", "n=2"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "(sglang) ignores a request's seed" in out.stderr, out.stderr


def test_sglang_keeps_stop_strings_and_extends(policy_url, tmp_path):
    """beam_search.ttc stops each step at "\\n" (kept with `no_stop_trim`) and extends the beams as text."""
    summary = run("beam_search.ttc", policy_url, dataset(tmp_path))
    assert summary.failed == 0 and summary.answered == 8, summary.results


@pytest.mark.skipif(not os.environ.get("TTCL_SGLANG_DETERMINISTIC"), reason="TTCL_SGLANG_DETERMINISTIC is not set")
def test_a_deterministic_sglang_server_repeats_a_run_with_diverse_samples(tmp_path):
    """On a server started with --enable-deterministic-inference, two runs with one seed sample the same texts,
    and the n samples of a node differ (its native `n` gave n copies of one text)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1?model={POLICY}"
    data = dataset(tmp_path)
    with server(sglang_cmd(port, "--enable-deterministic-inference"), port, tmp_path / "det.log", timeout=600,
                env=ENV):
        first = run("self_consistency.ttc", url, data, tmp_path / "first.jsonl")
        second = run("self_consistency.ttc", url, data, tmp_path / "second.jsonl")
    (info,) = first.header["engines"].values()
    assert info["seeded"] is True and first.failed == 0 and second.failed == 0
    a, b = sampled_texts(tmp_path / "first.jsonl"), sampled_texts(tmp_path / "second.jsonl")
    assert a == b and len(a) == 8
    assert max(len(set(texts)) for texts in a) > 1
