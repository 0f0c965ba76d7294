"""Work never lost and nothing silently ignored (issue 11): `--model` typos, trace overwrites,
`--strict`, `run --json` diagnostics, bundled programs by name (also from an installed wheel)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ttcl.cli import main

ROOT = Path(__file__).resolve().parent.parent

PROG = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier exact = check("arith")
budget per item { calls <= 8; gen_tokens <= 400 }
strategy main(question: text[<=32]) -> answer {
    drafts = sample(policy, "{question}\\n", n = 2, max_tokens = 24, temperature = 1.0)
    return vote(verify(exact, drafts))
}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ttcl.runtime.backends.random_model import save_random_gpt2

    root = tmp_path_factory.mktemp("trust")
    model = save_random_gpt2(root / "rand", n_positions=128)
    prog = root / "p.ttc"
    prog.write_text(PROG)
    ds = root / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n" for i in range(3)))
    return {"root": root, "model": model, "prog": prog, "ds": ds}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", ["check", "run"])
def test_unknown_model_name_is_an_error_with_a_suggestion(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                          command: str) -> None:
    extra = ["--input", "1 +1"] if command == "run" else []
    code, out, err = cli(capsys, command, str(setup["prog"]), "--model", f"polcy={setup['model']}", *extra)
    assert code == 2
    assert f"`--model polcy={setup['model']}`: no model or verifier `polcy`" in err
    assert "did you mean `policy`?" in err and "Traceback" not in err


def test_unknown_model_name_in_the_python_api(setup: dict[str, Path]) -> None:
    import ttcl
    from ttcl.errors import TtclError

    with pytest.raises(TtclError, match="no model or verifier `polcy`"):
        ttcl.run(setup["prog"], inputs="1 +1", models={"polcy": str(setup["model"])})


def test_model_names_that_exist_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    # a declared model, a verifier named by its reference, and the reference itself
    code, _, err = cli(capsys, "check", "ttcl:weighted_best_of_n", "--model", "policy=ttcl:arith-m",
                       "--model", "orm=ttcl:arith-orm")
    assert code == 0, err
    code, _, err = cli(capsys, "check", "ttcl:adaptive", "--model", "wbon.policy=ttcl:arith-m")
    assert code in (0, 1), err
    code, _, err = cli(capsys, "check", "ttcl:adaptive", "--model", "wbon.polcy=ttcl:arith-m")
    assert code == 2 and "did you mean `wbon.policy`?" in err


@pytest.mark.parametrize("command", ["check", "run", "eval", "serve"])
def test_a_model_bound_twice_is_refused(capsys: pytest.CaptureFixture[str], setup: dict[str, Path], command: str) -> None:
    """`--model policy=A --model policy=B` is refused like a repeated `--set` (it silently used B); `ttcl serve`
    refuses it (and a bad --set) with exit 2 before it loads anything, where a bad one used to exit 70."""
    extra = {"run": ["--input", "1 +1"], "eval": ["--dataset", str(setup["ds"]), "--sweep", "n=1"]}.get(command, [])
    code, out, err = cli(capsys, command, "ttcl:self_consistency", "--model", "policy=ttcl:arith-s",
                         "--model", "policy=ttcl:arith-m", *extra)
    assert code == 2 and "--model policy is given twice ('ttcl:arith-s' and 'ttcl:arith-m'); keep one" in err, err
    if command == "serve":
        code, out, err = cli(capsys, "serve", "ttcl:self_consistency", "--set", "nn=1")
        assert code == 2 and "no param `nn`" in err and "internal error" not in err, err


def test_a_compare_series_may_rebind_a_model_every_series_gets() -> None:
    """`ttcl eval --model policy=A --compare policy=B` is one bind per series, not a name given twice."""
    from ttcl.commands.compile import rebind_models
    from ttcl.commands.eval import check_series, policy_label

    assert rebind_models(["policy=ttcl:arith-s", "orm=x"], ["policy=ttcl:arith-m"]) == ["orm=x", "policy=ttcl:arith-m"]
    prog = ROOT / "programs" / "self_consistency.ttc"
    check_series(prog, [], ["policy=ttcl:arith-s"], None, [("--compare", ("arith-m", ["policy=ttcl:arith-m"]))])
    assert policy_label(prog, [], rebind_models(["policy=ttcl:arith-s"], ["policy=ttcl:arith-m"])) == "arith-m"


def test_trace_is_never_wiped_without_overwrite(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    trace = setup["root"] / "t.jsonl"
    base = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
            "--device", "cpu", "--trace", str(trace)]
    code, _, err = cli(capsys, *base)
    assert code == 0, err
    before = trace.read_bytes()
    code, _, err = cli(capsys, *base)
    assert code == 2
    assert "the trace file already exists (3 finished items); refusing to overwrite it" in err
    assert "--resume" in err and "--overwrite" in err
    assert trace.read_bytes() == before
    code, _, err = cli(capsys, *base, "--resume", "--overwrite")
    assert code == 2 and "contradict" in err
    code, _, err = cli(capsys, *base, "--overwrite")
    assert code == 0, err
    assert trace.read_text().count('"type": "item"') == 3


def test_resume_of_another_programs_trace_hints_what_works(capsys: pytest.CaptureFixture[str],
                                                          setup: dict[str, Path]) -> None:
    """`--resume` on a trace another program wrote is refused with a hint that works: it said "drop --resume",
    which the trace-overwrite guard then refused as well; `--overwrite` instead of `--resume` starts it over."""
    trace = setup["root"] / "other.jsonl"
    other = setup["root"] / "other.ttc"
    other.write_text(PROG.replace("max_tokens = 24", "max_tokens = 20"))
    code, _, err = cli(capsys, "run", str(other), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
                       "--device", "cpu", "--trace", str(trace))
    assert code == 0, err
    base = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
            "--device", "cpu", "--trace", str(trace)]
    code, _, err = cli(capsys, *base, "--resume")
    assert code == 2 and "cannot --resume: the program differs from the one this trace was written with" in err
    assert "replace --resume with --overwrite" in err and "drop --resume" not in err
    code, _, err = cli(capsys, *base, "--overwrite")  # what the hint says
    assert code == 0, err


def test_strict_exit_code_when_items_stop(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    # calls <= 1 stops every item at its first sample(n=2); without --strict the run itself succeeds
    base = ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={setup['model']}",
            "--device", "cpu"]
    tight = setup["root"] / "tight.ttc"
    tight.write_text(PROG.replace("calls <= 8", "calls <= 8; tokens <= 20"))
    base[1] = str(tight)
    code, out, err = cli(capsys, *base)
    assert code == 0, err
    assert "stopped 3" in out
    code, out, err = cli(capsys, *base, "--strict")
    assert code == 3
    assert "--strict: 0 items failed and 3 were stopped; exit 3" in err
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model",
                         f"policy={setup['model']}", "--device", "cpu", "--strict")
    assert code == 0, err


def test_run_json_on_an_invalid_program_prints_json_diagnostics(capsys: pytest.CaptureFixture[str],
                                                                setup: dict[str, Path]) -> None:
    bad = setup["root"] / "bad.ttc"
    bad.write_text(PROG.replace("n = 2", "n = nn"))
    code, out, err = cli(capsys, "check", str(bad), "--json")
    want = json.loads(out)
    code2, out2, err2 = cli(capsys, "run", str(bad), "--input", "1 +1", "--json")
    assert code2 == code == 2
    got = json.loads(out2)
    assert got == want
    assert got["verdict"] == "invalid" and "unknown" in got["diagnostics"][0]["message"]


def test_bundled_programs_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "programs")
    assert code == 0
    names = [ln.split()[0] for ln in out.splitlines() if ln.startswith("ttcl:")]
    assert names == sorted(f"ttcl:{p.stem}" for p in (ROOT / "programs").glob("*.ttc"))
    code, out, _ = cli(capsys, "programs", "--show", "weighted_best_of_n")
    assert out == (ROOT / "programs" / "weighted_best_of_n.ttc").read_text()
    code, out, err = cli(capsys, "check", "ttcl:weighted_best_of")
    assert code == 2 and "did you mean `ttcl:weighted_best_of_n`?" in err
    code, out, err = cli(capsys, "check", "ttcl:../tests/conftest")
    assert code == 2 and "no bundled program named '../tests/conftest'" in err
    code, out, err = cli(capsys, "fmt", "--check", "ttcl:revision")
    assert code == 0, err
    code, out, err = cli(capsys, "fmt", "ttcl:revision")
    assert code == 2 and "read-only" in err


def test_bundled_program_by_name_runs_in_the_python_api() -> None:
    import ttcl

    out = ttcl.run("ttcl:self_consistency", inputs="3 +4", set={"n": 2}, device="cpu")
    assert len(out.answers) == 1 and out.summary.items == 1


def test_bundled_programs_after_a_wheel_install(tmp_path: Path) -> None:
    """Build the wheel, install it into a bare directory and use it from elsewhere: no checkout in sight."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "whl"), str(ROOT)], capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "whl").glob("ttcl-*.whl"))
    site = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, env=env)
    assert inst.returncode == 0, inst.stderr
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import ttcl.programs as p; print(p.BUNDLED_DIR)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(site.resolve()), where.stderr
    listed = subprocess.run([sys.executable, "-m", "ttcl.cli", "programs"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert listed.returncode == 0 and "ttcl:weighted_best_of_n" in listed.stdout, listed.stderr
    run = subprocess.run([sys.executable, "-m", "ttcl.cli", "run", "ttcl:self_consistency", "--input", "3 +4",
                          "--set", "n=2", "--device", "cpu", "--json"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["program"].startswith(str(site.resolve())) and summary["items"] == 1


LONG = "12 +3 -4 *2 +7 -1 +9 -3 *2 +5 -8 +1 *3 -2 +4"  # far over text[<=8] in arith-s tokens


def test_refusal_names_an_input_over_its_declared_bound(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prog = tmp_path / "short.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 8 }\n'
                    "strategy main(question: text[<=8]) -> answer {\n"
                    '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 16))\n}\n')
    code, out, err = cli(capsys, "run", str(prog), "--input", LONG, "--device", "cpu")
    # one --input over its bound is bad input (exit 2, with or without --strict), not a run that succeeded (it was 0)
    said = ("error: --input: the input is 44 tokens (model ttcl:arith-s's tokenizer), longer than the strategy's "
            "declared bound `question: text[<=8]`, so main/return.sample did not run")
    assert code == 2 and said in err and "budget exhausted" not in err, err
    # and the error alone: the report filed it under "degraded by on_exhaust" and said it three times (QA pass)
    assert out == "" and err.count("the input is 44 tokens") == 1
    code, out, err = cli(capsys, "run", str(prog), "--input", LONG, "--device", "cpu", "--json")
    record = json.loads(out)["results"][0]  # --json keeps the run's record before the error
    assert code == 2 and record["status"] == "stopped" and record["answer"] is None
    assert "input longer than its declared bound" in " ".join(record["failures"].values())
    code, out, err = cli(capsys, "run", str(prog), "--input", LONG, "--device", "cpu", "--strict")
    assert code == 2


def test_a_huge_budget_prints_compactly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`calls <= 1e30` printed as 1,000,000,000,000,000,019,884,624,838,656.0 in the run's budget line."""
    prog = tmp_path / "huge.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 1e30; seconds <= 1e30 }\n'
                    "strategy main(question: text[<=40]) -> answer {\n"
                    '    return vote(sample(policy, "{question}\\n", n = 1, max_tokens = 16))\n}\n')
    code, out, err = cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu")
    out = " ".join(out.split())
    assert code == 0, err
    assert "calls 1 / 1.000e+30" in out and "/ 1.000e+30" in out.split("seconds", 1)[1] and ",000,000" not in out


def test_dataset_items_over_the_bound_are_stopped_not_lost(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """In a dataset, an item over its declared bound is stopped and counted (exit 0; 3 with --strict), and an input
    over the model's own length no longer leaks the tokenizer's "will result in indexing errors" warning."""
    prog = tmp_path / "short.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 8 }\n'
                    "strategy main(question: text[<=8]) -> answer {\n"
                    '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 16))\n}\n')
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in ("3 +4", " +".join([LONG] * 4))))
    code, out, err = cli(capsys, "run", str(prog), "--dataset", str(ds), "--device", "cpu")
    out = " ".join(out.split())
    assert code == 0, err
    assert "items 2, answered 1, stopped 1" in out and "item 1: stopped: input longer than its declared bound" in out
    assert "indexing errors" not in err and "Token indices" not in err, err
    code, _, err = cli(capsys, "run", str(prog), "--dataset", str(ds), "--device", "cpu", "--strict")
    assert code == 3, err


def test_refusal_names_a_verifier_input_over_the_bound(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the sample's prompt ignores the question; the ORM reads "{question}\n{completion}", so only it is too long
    prog = tmp_path / "orm.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier orm = reward("ttcl:arith-orm")\n'
                    "budget per item { calls <= 8 }\n"
                    "strategy main(question: text[<=8]) -> answer {\n"
                    '    drafts = sample(policy, "3 +4\\n", n = 2, max_tokens = 16)\n'
                    "    return vote(verify(orm, drafts), weight = score)\n}\n")
    code, out, err = cli(capsys, "run", str(prog), "--input", LONG, "--device", "cpu")
    assert code == 2 and out == "" and "the input is 44 tokens (model ttcl:arith-s's tokenizer), longer than the " \
        "strategy's declared bound `question: text[<=8]`, so main/drafts did not run" in err, err


def test_an_input_one_token_over_its_bound_is_stopped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A node's bound holds a token of slack (a special-token slot `sample` does not use), so a 41-token input ran
    under `text[<=40]`: the input itself is counted now, in each model's tokens, as `ttcl serve` counts it (QA
    pass); it stops its item before any model call, however much budget is left or `shrink` could cut."""
    prog = tmp_path / "forty.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 4; on_exhaust = shrink }\n'
                    "strategy main(question: text[<=40]) -> answer {\n"
                    '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 16))\n}\n')
    code, out, err = cli(capsys, "run", str(prog), "--input", "1" * 40, "--device", "cpu")
    assert code == 0 and "answer:" in out, err
    code, out, err = cli(capsys, "run", str(prog), "--input", "1" * 41, "--device", "cpu")
    assert code == 2 and out == "" and "the input is 41 tokens" in err and "`question: text[<=40]`" in err, err
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in ("1" * 41, "3 +4")))
    code, out, err = cli(capsys, "run", str(prog), "--dataset", str(ds), "--device", "cpu", "--json")
    first, second = json.loads(out)["results"]
    assert code == 0 and first["status"] == "stopped" and first["cost"]["calls"] == 0 and second["status"] == "ok"


def test_refusal_names_true_exhaustion(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prog = tmp_path / "tight.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 3 }\n'
                    "strategy main(question: text[<=40]) -> answer {\n"
                    '    a = sample(policy, "{question}\\n", n = 2, max_tokens = 16)\n'
                    '    b = sample(policy, "{question}\\n", n = 2, max_tokens = 16, temperature = 0.5)\n'
                    "    return vote(a + b)\n}\n")
    code, out, err = cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu")
    out = " ".join(out.split())
    assert code == 0, err
    assert "budget exhausted: per-item calls" in out and "input longer" not in out


SHRINK = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier orm = reward("ttcl:arith-orm")
param n: int = 64 in 1..64
budget per item { tokens <= 300; on_exhaust = shrink }
strategy main(question: text[<=40]) -> answer {
    drafts = sample(policy, "{question}\\n", n = n, max_tokens = 8, temperature = 0.8)
    return vote(verify(orm, drafts), weight = score)
}
"""


def test_shrink_reports_what_it_dropped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Shrunk sampling leaves no tokens for the verifier: the weighted vote becomes a plain vote, and the run says so."""
    prog = tmp_path / "shrink.ttc"
    prog.write_text(SHRINK)
    code, out, err = cli(capsys, "run", str(prog), "--input", "12 +7 *2", "--device", "cpu", "--json")
    assert code == 0, err
    summary = json.loads(out)
    r = summary["results"][0]
    assert summary["degraded"] == 1 and summary["verdict"] == "over"
    lines = r["degraded"]
    assert lines[0].startswith("main/drafts: shrunk to n=")
    assert any(ln.startswith("main/return.verify (verify) did not run: budget exhausted: per-item tokens") for ln in lines)
    assert lines[-1] == "the answer is a plain (unweighted) vote over main/drafts, not the strategy's own result"
    code, out, err = cli(capsys, "run", str(prog), "--input", "12 +7 *2", "--device", "cpu")
    flat = " ".join(out.split())
    assert "degraded by on_exhaust = shrink:" in flat
    assert "kept every item within" not in flat
    # the same program with room for everything is not degraded
    code, out, err = cli(capsys, "run", str(prog), "--input", "12 +7 *2", "--device", "cpu", "--set", "n=2", "--json")
    assert json.loads(out)["degraded"] == 0 and json.loads(out)["results"][0]["degraded"] == []


def test_eval_marks_degraded_points(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ttcl.runtime.analysis.plot import write_figure

    prog = tmp_path / "shrink.ttc"
    prog.write_text(SHRINK)
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n"
                          for q, a in (("12 +7 *2", 38), ("5 -3", 2))))
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(ds), "--sweep", "n=2,64", "--device", "cpu", "--json")
    assert code == 0, err
    rows = {r["config"]["n"]: r for r in json.loads(out)["rows"]}
    assert rows[2]["degraded"] == 0 and rows[64]["degraded"] == 2
    assert rows[64]["flops_per_item"] != rows[2]["flops_per_item"]  # plotted at what it actually spent
    curves = [{"series": "s", "signal": "", "bin": "all", "items": 2, "flops": r["flops_per_item"],
               "accuracy": r["accuracy"], "lo": r["lo"], "hi": r["hi"], "config": f"n={n}", "degraded": r["degraded"]}
              for n, r in rows.items()]
    marked, plain = tmp_path / "marked.png", tmp_path / "plain.png"
    write_figure(marked, curves=curves, points=[], bins=["all"], by=None, title="t")
    write_figure(plain, curves=[{**c, "degraded": 0} for c in curves], points=[], bins=["all"], by=None, title="t")
    assert marked.read_bytes() != plain.read_bytes()


def test_a_causal_lm_as_reward_model_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prog = tmp_path / "bad_orm.ttc"
    prog.write_text(PROG.replace('verifier exact = check("arith")', 'verifier orm = reward("ttcl:arith-s")')
                    .replace("vote(verify(exact, drafts))", "vote(verify(orm, drafts), weight = score)"))
    code, out, err = cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu")
    assert code == 2, out  # refused when compiled: its config.json names a causal LM (compiler/model_kinds.py)
    assert "bad_orm.ttc:3:16: error" in err and "`reward(...)` needs a reward model, and `ttcl:arith-s` is a causal" in err
    # a config that claims the head its weights lack passes the compiler; the run reads the weights and refuses
    import shutil

    from ttcl.zoo.registry import resolve_model

    fake = tmp_path / "fake-orm"
    shutil.copytree(resolve_model("ttcl:arith-s"), fake)
    cfg = json.loads((fake / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPT2ForSequenceClassification"]}))
    prog.write_text(prog.read_text().replace('reward("ttcl:arith-s")', f'reward("{fake}")'))
    code, out, err = cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu")
    assert code == 2, out
    assert f"verifier model '{fake}'" in err and "is not a trained SequenceClassification model" in err
    assert "score.weight" in err and "random" in err and "Traceback" not in err
    assert "MISSING" not in out + err  # transformers' own report is replaced, not shown next to a result


def test_a_model_without_eos_is_warned_about(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import shutil

    from ttcl.zoo.registry import resolve_model

    model = tmp_path / "no-eos"
    shutil.copytree(resolve_model("ttcl:arith-s"), model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    for key in ("eos_token", "pad_token"):
        cfg.pop(key)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    prog = tmp_path / "p.ttc"
    prog.write_text(PROG)
    code, out, err = cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu", "--model", f"policy={model}",
                         "--json")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1 and "has no end-of-sequence token" in warnings[0] and "token id 0" in warnings[0]
    assert json.loads(cli(capsys, "run", str(prog), "--input", "3 +4", "--device", "cpu", "--json")[1])["warnings"] == []


ROWS = [{"problem": f"{i + 2} +{i}", "solution": f"#### {2 * i + 2}", "level": i % 2} for i in range(3)]


def _answers(summary: dict) -> list[tuple[str, str | None, str | None]]:
    return [(r["question"], r["gold"], r["answer"]) for r in summary["results"]]


@pytest.mark.slow  # five runs and the datasets import: minutes on a shared 2-core machine
def test_datasets_from_local_disk_with_field_mapping(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """JSONL, save_to_disk, parquet and arrow give the same items (and the same answers); nothing is downloaded."""
    import datasets

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    base = ["run", str(setup["prog"]), "--model", f"policy={setup['model']}", "--device", "cpu", "--json",
            "--field", "question=problem", "--field", "answer=solution"]
    got = {}
    for name, source in (("jsonl", jsonl), ("saved", tmp_path / "saved"), ("dict", tmp_path / "dict"),
                         ("parquet", tmp_path / "rows.parquet"), ("arrow", arrow)):
        code, out, err = cli(capsys, *base, "--dataset", str(source))
        assert code == 0, (name, err)
        got[name] = _answers(json.loads(out))
    assert all(v == got["jsonl"] for v in got.values())
    assert [g for _, g, _ in got["jsonl"]] == ["2", "4", "6"]
    assert json.loads(out)["results"][0]["fields"] == {"level": 0}
    code, out, err = cli(capsys, *base[:-4], "--dataset", str(jsonl))
    # under --json the error is JSON on stdout (a bad dataset is found before the run)
    said = json.loads(out)["diagnostics"][0]["message"]
    assert code == 2 and 'missing field "question" (fields present: level, problem, solution)' in said
    code, out, err = cli(capsys, *base[:-2], "--field", "answer=answr", "--dataset", str(jsonl))
    assert code == 2 and '--field: no field "answr"' in json.loads(out)["diagnostics"][0]["message"]
    code, out, err = cli(capsys, *base, "--dataset", "hf:ttcl-no-such-dataset-xyz")
    said = json.loads(out)["diagnostics"][0]["message"]
    assert code == 2 and "hf:ttcl-no-such-dataset-xyz: error:" in said and "Traceback" not in err + said


def test_a_corrupt_parquet_file_is_one_line(tmp_path: Path) -> None:
    """The datasets library logged its own "Failed to read schema ..." line above ttcl's error (QA pass)."""
    pytest.importorskip("datasets")
    bad = tmp_path / "fake.parquet"
    bad.write_bytes(b"not a parquet file at all" * 100)
    p = subprocess.run([sys.executable, "-m", "ttcl.cli", "run", "ttcl:self_consistency", "--dataset", str(bad)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"{bad}: error: cannot read it as a local Hugging Face dataset: Parquet magic "
                                     "bytes not found in footer. Either the file is corrupted or this is not a "
                                     "parquet file."], p.stderr


def test_dataset_from_stdin_resumes_like_a_file(setup: dict[str, Path], tmp_path: Path) -> None:
    text = "".join(json.dumps({"question": r["problem"], "answer": r["solution"]}) + "\n" for r in ROWS)
    trace = tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "ttcl.cli", "run", str(setup["prog"]), "--dataset", "-", "--model",
           f"policy={setup['model']}", "--device", "cpu", "--json", "--trace", str(trace)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, input=text, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    assert [r["gold"] for r in json.loads(first.stdout)["results"]] == ["2", "4", "6"]
    again = subprocess.run([*cmd, "--resume"], input=text, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _answers(json.loads(again.stdout)) == _answers(json.loads(first.stdout))
    other = subprocess.run([*cmd, "--resume"], input=text.replace("2 +0", "9 +0"), capture_output=True, text=True,
                           env=env, timeout=600)
    assert other.returncode == 2 and "the dataset's content differs from the one this trace was written with" in other.stderr


def test_readme_example_is_the_bundled_program() -> None:
    """The README's program compiles to the same DAG and bound as programs/countdown_best_of_n.ttc, with no warning."""
    from ttcl.compiler.pipeline import compile_program

    text = (ROOT / "README.md").read_text()
    block = text[text.index("```\nttcl 1\n") + 4:]
    block = block[: block.index("```\n")]
    readme = compile_program(source=block, file="README.md")
    shipped = compile_program(ROOT / "programs" / "countdown_best_of_n.ttc")
    assert [(r.node, r.bound) for r in readme.report.rows] == [(r.node, r.bound) for r in shipped.report.rows]
    assert readme.report.limits == shipped.report.limits and readme.report.on_exhaust == shipped.report.on_exhaust
    assert readme.report.warnings == [] and shipped.report.warnings == []


def test_user_checker_from_the_command_line_only(tmp_path: Path) -> None:
    """`--verifier NAME=module:function` runs the user's own function; the program text can only name it."""
    (tmp_path / "my_checks.py").write_text(
        "def score(question, completion):\n    return (len(completion) % 7) / 7.0\n")
    prog = tmp_path / "p.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier mine = check("mine")\n'
                    "strategy main(question: text[<=40]) -> answer {\n"
                    '    drafts = sample(policy, "{question}\\n", n = 3, max_tokens = 24)\n'
                    "    return vote(verify(mine, drafts), weight = score)\n}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "ttcl.cli", "run", str(prog), "--input", "3 +4", "--device", "cpu"]
    trace = tmp_path / "t.jsonl"
    ok = subprocess.run([*base, "--verifier", "mine=my_checks:score", "--trace", str(trace)], capture_output=True,
                        text=True, env=env, cwd=tmp_path, timeout=600)
    assert ok.returncode == 0, ok.stderr
    from ttcl.runtime.trace import read_trace

    scored = next(n for n in read_trace(trace).nodes[0] if n.op == "verify").outputs
    assert scored and all(c["score"] == pytest.approx((len(c["text"]) % 7) / 7.0) for c in scored)
    missing = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert missing.returncode == 2 and 'no checker named "mine"' in missing.stderr
    # a program cannot name code: a module path in check(...) is just an unknown checker name
    prog.write_text(prog.read_text().replace('check("mine")', 'check("my_checks:score")'))
    code_in_text = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert code_in_text.returncode == 2 and 'no checker named "my_checks:score"' in code_in_text.stderr
    bad = subprocess.run([*base, "--verifier", "mine=no_such_module:score"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert bad.returncode == 2 and "no module 'no_such_module'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_corrupt_weights_file_is_bad_input_not_an_internal_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated model.safetensors raised SafetensorError: exit 70, "a bug in ttcl" (QA pass)."""
    import shutil

    from ttcl.zoo.registry import MODELS_DIR

    bad = tmp_path / "arith-s"
    shutil.copytree(MODELS_DIR / "arith-s", bad)
    (bad / "model.safetensors").write_bytes((MODELS_DIR / "arith-s" / "model.safetensors").read_bytes()[:5000])
    code, _, err = cli(capsys, "run", str(ROOT / "programs" / "self_consistency.ttc"), "--model", f"policy={bad}",
                       "--input", "3 +4", "--device", "cpu")
    assert code == 2 and f"cannot load model from '{bad}'" in err and "internal error" not in err
