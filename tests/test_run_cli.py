"""`ttcl run` / `ttcl eval` from the command line: errors, output, resume, sweeps, the bundled models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ttcl.cli import main

PROG = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier exact = check("arith")
param n: int = 3 in 1..64
budget per item { calls <= 32; gen_tokens <= 400 }
strategy main(question: text[<=32]) -> answer {
    drafts = sample(policy, "{question}\\n", n = n, max_tokens = 8, temperature = 1.0)
    return vote(verify(exact, drafts))
}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ttcl.runtime.backends.random_model import save_random_gpt2

    root = tmp_path_factory.mktemp("cli")
    model = save_random_gpt2(root / "rand", n_positions=128)
    prog = root / "p.ttc"
    prog.write_text(PROG)
    ds = root / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n" for i in range(6)))
    return {"root": root, "model": model, "prog": prog, "ds": ds}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "1 +1", "--device", "tpu"], "--device 'tpu': expected one of auto, cpu, cuda"),
        (["--input", "1 +1", "--dtype", "int8"], "--dtype 'int8': expected one of auto, float32, bfloat16, float16, fp32, bf16, fp16"),
        ([], "give exactly one of --input TEXT or --dataset FILE.jsonl"),
        (["--input", "x", "--dataset", "d.jsonl"], "give exactly one of --input TEXT or --dataset FILE.jsonl"),
        (["--input", "x", "--resume"], "--resume needs --trace FILE (the trace to resume from)"),
        (["--input", "x", "--overwrite"], "--overwrite starts a --trace file over: add --trace FILE, or drop --overwrite"),
        (["--input", "x", "--trace", "-"], "--trace -: a trace is written to a file, not to stdout; give a path"),
        (["--input", "x", "--limit", "0"], "--limit 0: expected a positive number of items"),
        (["--input", "x", "--model", "policy"], "--model 'policy': expected NAME=PATH"),
        (["--input", "x", "--model", "policy=/no/such/dir"], "model `policy`, overridden to `/no/such/dir`: model `/no/such/dir` is not a local model directory"),
        (["--dataset", "missing.jsonl"], "missing.jsonl: error: dataset file not found"),
    ],
)
def test_cli_errors(capsys: pytest.CaptureFixture[str], setup: dict[str, Path], args: list[str], message: str) -> None:
    code, out, err = cli(capsys, "run", str(setup["prog"]), *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_malformed_dataset_line(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    bad = setup["root"] / "bad.jsonl"
    bad.write_text('{"question": "1 +1", "answer": "#### 2"}\n{"question": "2 +2", "answer": "#### 4",}\n')
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(bad), "--model", f"policy={setup['model']}")
    assert code == 2
    assert err.strip() == f"{bad}:2: error: not valid JSON (Expecting property name enclosed in double quotes at column 41)"


def test_a_dataset_with_a_byte_order_mark_runs(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """A file a Windows editor saved with a BOM was refused as "not valid JSON (Unexpected UTF-8 BOM)" (QA pass)."""
    bom = setup["root"] / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + setup["ds"].read_bytes())
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(bom), "--model", f"policy={setup['model']}",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["items"] == 6


def test_resume_of_a_trace_that_does_not_exist_says_it_starts_afresh(capsys: pytest.CaptureFixture[str],
                                                                     setup: dict[str, Path], tmp_path: Path) -> None:
    """It started a fresh run without a word: a typo in the trace path reran everything silently (QA pass)."""
    trace = tmp_path / "typo.jsonl"
    code, _, err = cli(capsys, "run", str(setup["prog"]), "--input", "1 +1", "--model", f"policy={setup['model']}",
                       "--trace", str(trace), "--resume")
    assert code == 0, err
    assert f"note: --resume: {trace} does not exist; starting the run from the beginning" in err
    assert trace.exists()


def test_missing_program(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    code, out, err = cli(capsys, "run", str(setup["root"] / "nope.ttc"), "--input", "1 +1")
    assert code == 2 and "nope.ttc" in err and "Traceback" not in err


def test_run_single_input_table(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--input", "3 +4", "--model", f"policy={setup['model']}")
    assert code == 0, err
    assert out.startswith("answer: (none)\n")
    lines = out.splitlines()
    assert any("main/drafts" in ln and "sample" in ln and "3 / 3" in ln for ln in lines)  # calls: actual / bound
    assert any(ln.startswith("budget per item (on_exhaust = stop): calls 3 / 32; gen_tokens ") for ln in lines)


def test_run_json_rows_match_check(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    m = f"policy={setup['model']}"
    code, out, _ = cli(capsys, "check", str(setup["prog"]), "--model", m, "--json")
    check_rows = [(r["node"], r["line"], r["bound"]) for r in json.loads(out)["rows"]]
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--limit", "2", "--model", m, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [(r["node"], r["line"], r["bound"]) for r in summary["rows"]] == check_rows
    assert summary["items"] == 2 and summary["accuracy"] == 0.0
    assert summary["rows"][0]["actual_max"]["calls"] == 3


def _results(path: Path) -> list[dict]:
    from ttcl.runtime.trace import read_trace

    t = read_trace(path)
    out = []
    for i in sorted(t.items):
        rec = t.items[i].model_dump()
        rec["cost"] = {k: v for k, v in rec["cost"].items() if k != "seconds"}
        rec.pop("seconds")
        out.append(rec)
    return out


def test_resume_after_crash_matches_uninterrupted(setup: dict[str, Path], tmp_path: Path) -> None:
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.runner import Runner, RunOptions

    compiled = compile_program(setup["prog"], model_overrides={"policy": str(setup["model"])})
    items = load_dataset(setup["ds"])
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    Runner(compiled, RunOptions(device="cpu", trace=full, dataset=setup["ds"])).run(items)
    # a crash after two items, in the middle of writing the third
    lines = full.read_text().splitlines(keepends=True)
    ends = [i for i, ln in enumerate(lines) if '"type": "item"' in ln]
    part.write_text("".join(lines[: ends[1] + 1]) + lines[ends[1] + 1] + lines[ends[1] + 2][:25])
    summary = Runner(compiled, RunOptions(device="cpu", trace=part, resume=True, dataset=setup["ds"])).run(items)
    assert _results(part) == _results(full)
    assert summary.items == 6
    with pytest.raises(Exception, match="cannot --resume: the seed differs from the one this trace was written with"):
        Runner(compiled, RunOptions(device="cpu", trace=part, resume=True, seed=9, dataset=setup["ds"])).run(items)


def test_eval_sweep_json_and_plot(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    plot = setup["root"] / "plot.png"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--limit", "2",
                         "--sweep", "n=1,2", "--model", f"policy={setup['model']}", "--plot", str(plot), "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [(r["series"], r["config"], r["calls_per_item"]) for r in rows] == [
        ("rand", {"n": 1}, 1.0), ("rand", {"n": 2}, 2.0)]  # a series is named by its model
    assert rows[0]["flops_per_item"] < rows[1]["flops_per_item"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_bad_sweep(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n")
    assert code == 2 and "--sweep 'n': expected NAME=V1,V2,..., e.g. --sweep n=1,4,16" in err


@pytest.mark.slow
def test_kill_and_resume_subprocess(setup: dict[str, Path], tmp_path: Path) -> None:
    """A real `ttcl run` killed mid-dataset, then `--resume`d, ends with the uninterrupted results. Forty
    items, so that a loaded machine, slow to see the second item land, still kills the run before its end."""
    ds = tmp_path / "d40.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n" for i in range(40)))
    base = [sys.executable, "-m", "ttcl.cli", "run", str(setup["prog"]), "--dataset", str(ds),
            "--model", f"policy={setup['model']}", "--batch-items", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    subprocess.run([*base, "--trace", str(full)], check=True, capture_output=True, env=env, timeout=600)
    proc = subprocess.Popen([*base, "--trace", str(part)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 600
    while time.time() < deadline:
        if part.exists() and part.read_text().count('"type": "item"') >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = part.read_text().count('"type": "item"')
    assert 2 <= done < 40
    subprocess.run([*base, "--trace", str(part), "--resume"], check=True, capture_output=True, env=env, timeout=600)
    # The same answers, and the same costs: the items after the kill begin like earlier items, and the resumed
    # run's prefix cache starts cold, but each item is charged its prefill as if it ran alone.
    assert _results(part) == _results(full)


def test_an_items_cost_does_not_depend_on_what_ran_beside_it(capsys: pytest.CaptureFixture[str],
                                                              setup: dict[str, Path], tmp_path: Path) -> None:
    """Questions that begin alike share a long prefix in the prefix cache. Each item is charged its
    prefill as if it ran alone, so its cost is the same in one batch with the others, one item per
    batch, or alone; the summary says how much of that the cache served from other items."""
    preamble = "Solve the sum below and write only the answer after the marker. "  # 64 tokens
    ds = tmp_path / "alike.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{preamble}{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n"
                          for i in range(6)))
    prog = tmp_path / "p.ttc"
    prog.write_text(PROG.replace("text[<=32]", "text[<=100]"))
    base = ["run", str(prog), "--dataset", str(ds), "--model", f"policy={setup['model']}", "--device", "cpu", "--json"]

    def run(*extra: str) -> dict:
        code, out, err = cli(capsys, *base, *extra)
        assert code == 0, err
        return json.loads(out)

    together, apart = run(), run("--batch-items", "1")
    alone = [run("--limit", str(i + 1))["results"][i] for i in (0, 3)]  # the first item, and the fourth after three

    def costs(results: list[dict]) -> list[dict]:
        return [{k: v for k, v in r["cost"].items() if k != "seconds"} for r in results]

    assert costs(together["results"]) == costs(apart["results"])
    assert costs(alone) == [costs(together["results"])[i] for i in (0, 3)]
    # one item per batch: every item after the first found the preamble in the cache, charged to it,
    # computed once; the run's total says what it charged, the summary how much less it computed
    shared = apart["shared_across_items"]
    assert shared["prompt_tokens"] >= 5 * 60 and shared["flops"] > 0
    assert apart["actual_total"]["prompt_tokens"] == together["actual_total"]["prompt_tokens"] > shared["prompt_tokens"]
    assert run("--limit", "1")["shared_across_items"] == {}  # one item shares with no one


def test_two_prompts_of_one_item_that_begin_alike_charge_their_common_part_once(
        capsys: pytest.CaptureFixture[str], setup: dict[str, Path], tmp_path: Path) -> None:
    """One item's two samples whose prompts share a long beginning: its common part is prefilled once
    and charged to the item once, alone or beside items that share less of it (found by QA: the item
    was charged the common part twice, and told it had shared it with other items)."""
    prog = tmp_path / "two.ttc"
    prog.write_text(
        "ttcl 1\n"
        f'model policy = "{setup["model"]}"\n'
        "strategy main(question: text[<=40]) -> answer {\n"
        '    a = sample(policy, "Solve carefully, step by step, then answer: {question}\\n", n = 3, max_tokens = 8)\n'
        '    b = sample(policy, "Solve carefully, step by step, then answer: {question}\\nAgain:", n = 2, max_tokens = 8)\n'
        "    return vote(a)\n}\n")
    ds = tmp_path / "q.jsonl"
    ds.write_text("".join(json.dumps({"question": f"what is {i} +{i}", "answer": str(2 * i)}) + "\n" for i in range(5)))
    base = ["run", str(prog), "--model", f"policy={setup['model']}", "--device", "cpu", "--json"]

    def run(*extra: str) -> dict:
        code, out, err = cli(capsys, *base, *extra)
        assert code == 0, err
        return json.loads(out)

    one = run("--input", "what is 1 +1")
    assert one["shared_across_items"] == {}  # one item shares with no other
    costs = [[{k: v for k, v in r["cost"].items() if k != "seconds"} for r in run("--dataset", str(ds), *b)["results"]]
             for b in ([], ["--batch-items", "1"], ["--batch-items", "2"])]
    assert costs[0] == costs[1] == costs[2]
    alone = run("--dataset", str(ds), "--limit", "4")["results"][3]
    assert {k: v for k, v in alone["cost"].items() if k != "seconds"} == costs[0][3]


def test_a_judges_charge_does_not_depend_on_what_ran_beside_it(capsys: pytest.CaptureFixture[str],
                                                               setup: dict[str, Path], tmp_path: Path) -> None:
    """A judge reads through the policy's prefix cache, where the rubric's preamble and other items'
    prompts are cached: each item is still charged its whole pass, in one batch or one item per batch."""
    rubric = "Check this sum carefully and say whether the answer is right, yes or no. "
    ds = tmp_path / "alike.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n"
                          for i in range(6)))
    prog = tmp_path / "judged.ttc"
    prog.write_text(PROG.replace('verifier exact = check("arith")', f'verifier j = judge(policy, "{rubric}{{c.text}} Right?")')
                    .replace("vote(verify(exact, drafts))", "best(verify(j, drafts))"))
    base = ["run", str(prog), "--dataset", str(ds), "--model", f"policy={setup['model']}", "--device", "cpu", "--json"]
    runs = []
    for extra in ([], ["--batch-items", "1"]):
        code, out, err = cli(capsys, *base, *extra)
        assert code == 0, err
        runs.append(json.loads(out))
    together, apart = ([{k: v for k, v in r["cost"].items() if k != "seconds"} for r in run["results"]] for run in runs)
    assert together == apart
    assert runs[0]["shared_across_items"]["prompt_tokens"] > 0  # the rubric's preamble, computed once per batch


def test_max_input_tokens_bounds_an_unbounded_input_for_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 'no length bound' hint named --max-input-tokens, which `ttcl run` did not have."""
    prog = tmp_path / "nb.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nstrategy main(question: text) -> answer {\n'
                    '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 8))\n}\n')
    code, _, err = cli(capsys, "run", str(prog), "--input", "1 +2", "--device", "cpu")
    assert code == 2 and "has no length bound" in err and "--max-input-tokens N to check, graph or run" in err
    code, out, err = cli(capsys, "run", str(prog), "--input", "1 +2", "--device", "cpu", "--max-input-tokens", "16")
    assert code == 0, err
    assert out.startswith("answer: ")
    code, _, err = cli(capsys, "run", str(prog), "--input", "1 +2 +3 +4 +5 +6", "--device", "cpu", "--max-input-tokens", "4")
    assert code == 2 and "longer than the strategy's declared bound" in err


def test_a_trace_or_plot_never_writes_over_the_dataset_or_program(setup: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--trace data.jsonl --overwrite` destroyed the dataset, and `--plot` a dataset named `x.png` (found by a QA
    pass; `--plot` of any other name writes NAME.png)."""
    ds, prog = tmp_path / "d.png", tmp_path / "p.ttc"
    shutil.copy(setup["ds"], ds)
    shutil.copy(setup["prog"], prog)
    before = ds.read_text(), prog.read_text()
    for what, path in (("dataset", ds), ("program", prog)):
        code, _, err = cli(capsys, "run", str(prog), "--dataset", str(ds), "--trace", str(path), "--overwrite")
        assert code == 2 and err.startswith(f"error: --trace {path}: that is the {what} this command reads"), err
    code, _, err = cli(capsys, "eval", str(prog), "--dataset", str(ds), "--plot", str(ds))
    assert code == 2 and f"--plot {ds}: that is the dataset this command reads" in err, err
    assert (ds.read_text(), prog.read_text()) == before


def test_overwrite_never_replaces_a_file_that_is_not_a_trace(setup: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--trace mydata.jsonl --overwrite` replaced a dataset with a trace without a word (found by a QA pass)."""
    other = tmp_path / "mydata.jsonl"
    other.write_text(setup["ds"].read_text())
    before = other.read_text()
    for extra in (["--overwrite"], []):
        code, _, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--trace", str(other), *extra)
        assert code == 2 and err.startswith(f"{other}: error: the file exists and is not a ttcl trace"), err
    code, _, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--trace", str(other), "--resume")
    assert code == 2 and err.startswith(f"{other}:1: error: no run header; is this a ttcl trace?"), err
    assert other.read_text() == before


def test_a_trace_that_is_a_directory_is_named_as_one(setup: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """It said "the trace file already exists (it is not a ttcl trace)" (found by a QA pass)."""
    code, _, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--trace", str(tmp_path))
    assert code == 2 and err.startswith(f"error: --trace {tmp_path}: is a directory; give a file name"), err


def test_a_trace_name_too_long_for_the_file_system_is_bad_input(setup: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`Path.is_dir()` raised ENAMETOOLONG: exit 70 (found by a review of the change that added the check)."""
    code, _, err = cli(capsys, "run", str(setup["prog"]), "--input", "1 +2", "--model", f"policy={setup['model']}",
                       "--device", "cpu", "--trace", str(tmp_path / ("a" * 300)))
    assert code == 2 and "File name too long" in err and "internal error" not in err, err


def test_one_lookahead_item_is_charged_all_it_computes(capsys: pytest.CaptureFixture[str]) -> None:
    """A context whose whole length a longer key's entry covers (no next-token logits there) computes its last
    position again; the charge read the exact key's entry instead, and one item was told it had shared -3 prompt
    tokens with other items, that is, charged less than it computed (QA pass)."""
    code, out, err = cli(capsys, "run", "ttcl:lookahead", "--input", "35 *2 -10", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["shared_across_items"] == {}  # one item shares with no other, in either direction


def test_a_wide_runs_pooled_line_counts_the_attempts_it_lost() -> None:
    """The pooled budget line of a wide run showed the items' spend alone, 3.9e8 / 6e8 where 5.99e8 had been charged
    (QA pass): attempts lost with their workers or to a Ctrl-C are charged to the pool too. A real run's summary,
    with the `distributed` record a wide run adds to it."""
    import io

    from rich.console import Console

    import ttcl
    from ttcl.commands.run import print_summary

    prog = Path(__file__).resolve().parents[1] / "programs" / "pooled_adaptive.ttc"
    out = ttcl.run(prog, inputs=["3 +4", "12 -5 *2"], device="cpu")
    summary = out.summary
    flops = summary.actual_total["flops"]
    summary.distributed = {"workers": 1, "shards": 2, "calls": 9, "restarts": 1,
                           "lost_spend": {"calls": 3.0, "prompt_tokens": 0.0, "gen_tokens": 0.0, "tokens": 0.0,
                                          "flops": 2.5e7, "seconds": 0.4}}
    summary.pool_beyond_items = {"flops": 2.5e7}  # as RayRunner.run sets it: the lost spend, in pooled units
    buf = io.StringIO()
    print_summary(summary, Console(file=buf, width=200), single=False)
    text = buf.getvalue()
    line = next(x for x in text.splitlines() if x.startswith("budget pooled"))
    assert f"flops {flops + 2.5e7:.3e} / " in line and "(lost attempts 2.500e+07 of it)" in line, line
    assert "ray: 1 worker, 2 shards, 9 pooled-ledger calls, 1 worker restart, lost attempts spent calls 3, flops " \
           "2.500e+07" in text, text


@pytest.mark.parametrize("extra", [("--limit", "2"), ("--field", "question=q")])
def test_dataset_options_beside_an_input_are_refused(capsys: pytest.CaptureFixture[str], extra: tuple[str, str]) -> None:
    """`--input TEXT --limit 2` and `--input TEXT --field question=q` ran and ignored the option (QA pass)."""
    code, out, err = cli(capsys, "run", "ttcl:self_consistency", "--input", "1 +1", *extra)
    assert code == 2 and out == ""
    assert f"error: {extra[0]} applies to a --dataset; --input runs one item as it is" in err, err


def test_an_imported_helper_next_to_nodes_that_share_a_preamble_keeps_its_sub_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass: two nodes sharing a long preamble in one batched call had its warm-up booked on the item's first
    node (here the helper's), which went past its static bound and its sub-budget; the item failed with
    "spent more than its allowance". The run's table also named the helper's node by its line alone."""
    (tmp_path / "h.ttc").write_text(
        'ttcl 1\nmodel policy = "ttcl:arith-s"\n\nbudget per item {\n    prompt_tokens <= 45\n}\n\n'
        'strategy h(q: text[<=40]) -> answer {\n    a = sample(policy, "{q}\\n", max_tokens = 8)\n    return vote(a)\n}\n')
    pre = "+".join("1" * 30)
    (tmp_path / "main.ttc").write_text(
        f'ttcl 1\nimport "h.ttc" as h\nmodel policy = "ttcl:arith-s"\n\n'
        f'strategy main(question: text[<=40]) -> answer {{\n    x = h.h(question)\n'
        f'    b = sample(policy, "{pre} {{question}}\\n", max_tokens = 8)\n'
        f'    c = sample(policy, "{pre} {{question}} \\n", max_tokens = 8)\n'
        f'    if x == "64" {{ return vote(b) }}\n    return vote(c)\n}}\n')
    code = main(["run", str(tmp_path / "main.ttc"), "--input", "32 *2", "--json", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads(out.out)
    assert res["results"][0]["status"] == "ok", res["results"][0]
    helper = next(r for r in res["rows"] if r["node"] == "main/h.h#1/a")
    assert helper["file"].endswith("h.ttc") and helper["line"] == 9
    assert all(r["actual_max"][u] <= r["bound"][u] for r in res["rows"] for u in r["bound"]), res["rows"]
    assert main(["run", str(tmp_path / "main.ttc"), "--input", "32 *2", "--device", "cpu"]) == 0
    assert "h.ttc:9" in capsys.readouterr().out


def test_tables_printed_to_a_pipe_keep_whole_node_names_and_the_legend_only_where_it_applies(
        capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass (README walkthrough): to a file, `ttcl run`'s table cut two imported nodes to one `main/wbon.mai…`;
    `check` printed its `? = guarded` legend under tables with no guarded row."""
    assert main(["run", "ttcl:adaptive", "--input", "3 +4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "main/wbon.main#1/drafts" in out and "main/wbon.main#1/return.verify" in out and "…" not in out
    assert main(["check", "ttcl:self_consistency"]) == 0
    assert "? = guarded" not in capsys.readouterr().out
    assert main(["check", "ttcl:adaptive"]) == 0
    assert "? = guarded (runs only on some paths)" in capsys.readouterr().out


def test_a_trace_spelled_through_a_folder_not_made_yet_is_guarded_as_the_file_it_names(
        capsys: pytest.CaptureFixture[str], setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--trace nd/../t.jsonl`, `nd` not there yet: stat() failed on `nd`, every guard took the file as absent,
    and the writer made `nd` and truncated the finished trace, or the dataset itself (QA pass)."""
    monkeypatch.chdir(tmp_path)
    ds = tmp_path / "d.jsonl"
    ds.write_bytes(setup["ds"].read_bytes())
    args = ["run", str(setup["prog"]), "--dataset", "d.jsonl", "--model", f"policy={setup['model']}", "--limit", "2"]
    assert cli(capsys, *args, "--trace", "t.jsonl")[0] == 0
    finished, data = (tmp_path / "t.jsonl").read_bytes(), ds.read_bytes()
    code, out, err = cli(capsys, *args, "--trace", "nd/../t.jsonl")
    assert code == 2 and "the trace file already exists (2 finished items)" in err
    code, out, err = cli(capsys, *args, "--trace", "nd2/../d.jsonl", "--overwrite")
    assert code == 2 and "that is the dataset this command reads" in err
    code, out, err = cli(capsys, *args, "--trace", "nd3/../t.jsonl", "--resume")
    assert code == 0 and "does not exist" not in err
    assert (tmp_path / "t.jsonl").read_bytes().startswith(finished) and ds.read_bytes() == data
    assert not any((tmp_path / d).exists() for d in ("nd", "nd2", "nd3"))


def test_a_trace_another_process_is_writing_is_refused(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """Two runs on one trace (a --resume started while the run still went) interleaved their records, tore a line
    in the middle, and the next --resume refused the whole trace (QA pass). The writer holds a lock; another is
    refused before it writes a byte. A device file is refused as what it is."""
    from ttcl.runtime.trace import RunHeader, TraceWriter

    trace = tmp_path / "t.jsonl"
    args = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
            "--limit", "2", "--trace", str(trace)]
    assert cli(capsys, *args)[0] == 0
    before = trace.read_bytes()
    holder = TraceWriter(trace, RunHeader(program="p", program_hash="h"), resume=True)  # as the first run would
    try:
        for extra in (["--resume"], ["--overwrite"]):
            code, out, err = cli(capsys, *args, *extra)
            assert code == 2 and "another ttcl process is writing this trace now; let it finish" in err
    finally:
        holder.close()
    assert trace.read_bytes() == before + b'{"type": "resume"}\n'  # the holder's marker, and nothing of the others
    assert cli(capsys, *args, "--resume")[0] == 0  # released
    code, out, err = cli(capsys, *args[:-1], "/dev/null", "--resume")
    assert code == 2 and "--trace /dev/null: not a regular file" in err and "is empty" not in err


def test_a_resume_keeps_the_dtype_and_the_users_checkers_of_its_trace(
        capsys: pytest.CaptureFixture[str], setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A float32 trace resumed in bfloat16 went on (one answer changed; the header still said float32), and so did
    one resumed with another function under the same `--verifier` name (5 of 20 answers changed) (QA pass)."""
    from ttcl.runtime import tasks

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})
    (tmp_path / "ck_r7.py").write_text("def a(q, c):\n    return 1.0\n\ndef b(q, c):\n    return 0.0\n")
    trace = tmp_path / "t.jsonl"
    run = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
           "--limit", "2", "--trace", str(trace), "--device", "cpu"]
    assert cli(capsys, *run, "--dtype", "float32", "--verifier", "mine=ck_r7:a", "--judge", "mine")[0] == 0
    assert json.loads(trace.read_text().splitlines()[0])["checkers"] == {"mine": "ck_r7:a"}
    code, _, err = cli(capsys, *run, "--resume", "--dtype", "bfloat16", "--verifier", "mine=ck_r7:a", "--judge", "mine")
    assert code == 2 and "cannot --resume: the dtype differs from the one this trace was written with ('float32', " \
                          "now 'bfloat16')" in err and "hint: give --dtype float32 as the trace was written" in err
    code, _, err = cli(capsys, *run, "--resume", "--dtype", "float32", "--verifier", "mine=ck_r7:b", "--judge", "mine")
    assert code == 2 and ("the set of --verifier checkers differs from the one this trace was written with (mine "
                          "'ck_r7:a', now mine 'ck_r7:b')") in err
    assert cli(capsys, *run, "--resume", "--dtype", "float32", "--verifier", "mine=ck_r7:a", "--judge", "mine")[0] == 0


def test_an_empty_trace_is_begun_afresh_by_run_and_eval(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """An empty file is what a run killed as it made its trace leaves; `--resume` refused it ("the trace is empty"),
    and so did every rerun of an eval whose --traces held one, though eval says to rerun (QA pass)."""
    trace = tmp_path / "t.jsonl"
    trace.touch()
    args = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}", "--limit", "2"]
    code, out, err = cli(capsys, *args, "--trace", str(trace), "--resume")
    assert code == 0 and f"note: --resume: {trace} is empty (a run killed as it started); starting the run from the " \
                          "beginning" in err
    assert '"type": "item"' in trace.read_text()
    for extra in ("--resume", "--overwrite"):  # a header cut mid-write: nothing to keep (it blocked both, QA pass)
        trace.write_text(trace.read_text().split("\n")[0][:40])
        code, out, err = cli(capsys, *args, "--trace", str(trace), extra)
        assert code == 0, err
        assert trace.read_text().startswith('{"type": "header"') and '"type": "item"' in trace.read_text()
    ev = ["eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}", "--limit", "2",
          "--traces", str(tmp_path / "tr"), "--json"]
    assert cli(capsys, *ev)[0] == 0
    (kept,) = (tmp_path / "tr").glob("*.jsonl")
    kept.write_text("")
    code, out, err = cli(capsys, *ev)
    assert code == 0, err
    assert '"type": "item"' in kept.read_text()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stderr_costs_the_progress_and_notes_only(setup: dict[str, Path], tmp_path: Path) -> None:
    """stderr on a full disk: the progress bar's write failed, and the run printed no result, blamed stdout, and
    exited 1 (the over-budget verdict's code) (QA pass)."""
    cmd = [sys.executable, "-m", "ttcl", "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model",
           f"policy={setup['model']}", "--limit", "3", "--json", "--trace", str(tmp_path / "t.jsonl")]
    with open("/dev/full", "w") as full:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=full, timeout=300)
    assert done.returncode == 0
    assert len(json.loads(done.stdout)["results"]) == 3
    with open("/dev/full", "w") as full:
        assert subprocess.run([*cmd[:4], str(tmp_path / "nope.ttc"), "--input", "1 +2"], stdout=subprocess.PIPE,
                              stderr=full, timeout=300).returncode == 2  # an error keeps its code


def test_a_seconds_budget_overrun_is_marked(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                            tmp_path: Path) -> None:
    """`seconds` is the one soft unit (checked before each model node): a run over it printed `seconds 0.22 /
    0.05` with nothing to say it was over (QA pass)."""
    prog = tmp_path / "s.ttc"
    prog.write_text(PROG.replace("gen_tokens <= 400 }", "gen_tokens <= 400; seconds <= 0.000001 }"))
    code, out, _ = cli(capsys, "run", str(prog), "--input", "2 +3", "--model", f"policy={setup['model']}")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("budget per item"))
    assert "seconds" in line and "(over: seconds is checked before each model node, not within it)" in line, out
    assert line.count("(over:") == 1  # calls and gen_tokens are not over
