"""`ttcl eval` end to end on the bundled arith-s: per-item rows, --by, intervals, --seeds, one pool,
greedy points, exchange, allocation and the plot; every figure checked against the traces by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evalkit import PROG, cli, eval_setup
from tests.shipped import available
from ttcl.runtime.trace import read_trace

pytestmark = pytest.mark.skipif(not available("ttcl:arith-s"), reason="bundled arith-s not installed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return eval_setup(tmp_path_factory)

def test_pool_estimates_agree_with_the_traces(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    traces, plot = setup["root"] / "traces", setup["root"] / "fig.png"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                         "--by", "steps", "--traces", str(traces), "--plot", str(plot), "--allocate", "probe:2",
                         "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)  # stdout is the report alone; progress went to stderr
    assert "arith-s: pool n=4 (seed 0)" in err and "8/8 items" in err
    assert rep["bins"] == [1, 3, "all"] and rep["pool"]["ks"] == [1, 2, 4]
    (path,) = traces.glob("arith-s__pool_n=4__*__seed0.jsonl")
    trace = read_trace(path)
    # by hand from the trace: pass@4 = share of items with a right candidate; FLOPs at k = prefill + k * mean decode
    right, fl1, fl4 = [], [], []
    for idx, rec in trace.items.items():
        node = next(r for r in trace.nodes[idx] if r.node_id == "main/drafts")
        cands = node.outputs
        right.append(any(c["answer"] == rec.gold for c in cands))
        gen = [c["flops"] for c in cands]
        shared = node.cost["flops"] - sum(gen)
        fl1.append(shared + sum(gen) / 4)
        fl4.append(node.cost["flops"])
    row = {(r["signal"], r["k"]): r for r in rep["curves"] if r["bin"] == "all"}
    assert row[("pass", 4)]["accuracy"] == pytest.approx(sum(right) / len(right))
    assert row[("pass", 4)]["interval"] == "wilson"  # one run, 0/1 outcomes
    assert row[("maj", 1)]["flops"] == pytest.approx(sum(fl1) / len(fl1))
    assert row[("maj", 4)]["flops"] == pytest.approx(sum(fl4) / len(fl4))
    assert {s for s, _ in row} == {"pass", "strict", "maj"}
    assert row[("strict", 4)]["accuracy"] <= row[("pass", 4)]["accuracy"]
    # per-item rows keep the dataset fields; a greedy point per model; allocation reported on half
    items = rep["item_rows"]["arith-s pool"]
    assert len(items) == 8 and {it["fields"]["steps"] for it in items} == {1, 3}
    assert all("flops" in it["cost"] for it in items)
    assert {g["label"] for g in rep["greedy"]} == {"arith-s greedy"}
    assert rep["allocation"]["report_items"] == 4
    # the series' greedy answer on the same report half (QA pass: a saving was read against a baseline below it)
    from ttcl.runtime.analysis.allocate import split_halves

    half = ~split_halves(8, 0)
    greedy = {it["item"]: it["correct"] for it in rep["item_rows"]["arith-s greedy"]}
    g = rep["allocation"]["greedy"]
    assert g["items"] == 4 and g["accuracy"] == pytest.approx(sum(greedy[i] for i in range(8) if half[i]) / 4)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun reuses the traces (no new sampling) and prints the same figures
    code, out2, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                          "--by", "steps", "--traces", str(traces), "--allocate", "probe:2", "--device", "cpu", "--json")
    assert code == 0 and json.loads(out2)["curves"] == rep["curves"]
    # a shorter eval on the same traces uses only its own items
    code, out3, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                          "--limit", "4", "--traces", str(traces), "--device", "cpu", "--json")
    assert code == 0, err
    assert {r["items"] for r in json.loads(out3)["curves"]} == {4}


def test_sweep_by_field_with_seeds_and_paired_difference(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1,2",
                         "--by", "steps", "--seeds", "0,1", "--compare", "policy=ttcl:arith-s", "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    first = rep["rows"][0]
    # two seeds' outcomes averaged per item on 16 items: Wilson on the mean (a bootstrap under-covers this few)
    assert first["seeds"] == [0, 1] and first["interval"] in ("wilson-mean", "wilson")
    assert first["config"] == {"n": 1}  # the value as the program took it: it was the string "1"
    assert [b["bin"] for b in first["bins"]] == [1, 3, "all"]
    assert len(first["item_rows"]) == 16 and first["item_rows"][0]["fields"]["steps"] in (1, 3)
    acc = sum(r["correct"] for r in first["item_rows"]) / 16
    assert first["accuracy"] == pytest.approx(acc)
    from ttcl.runtime.analysis.intervals import wilson

    n = 8  # items (a row per item and seed)
    assert (first["lo"], first["hi"]) == pytest.approx(wilson(acc * n, n))
    # the same model under another name: the paired difference is exactly zero
    d = rep["paired_differences"][0]
    assert d["diff"] == 0.0 and d["lo"] == 0.0 and d["hi"] == 0.0
    # within a series, n=2 against n=1 on the same items
    (within,) = [d for d in rep["paired_differences"] if d["a"] == "arith-s n=2" and d["b"] == "arith-s n=1"][:1]
    second = rep["rows"][1]
    assert within["diff"] == pytest.approx(second["accuracy"] - first["accuracy"])
    assert within["flops_ratio"] == pytest.approx(second["flops_per_item"] / first["flops_per_item"])
    # and per bin of --by: each bin's difference and FLOPs ratio are its rows' (the bins' items add up)
    assert [b["bin"] for b in within["bins"]] == [1, 3]
    for b, r1, r2 in zip(within["bins"], first["bins"], second["bins"], strict=False):
        assert b["diff"] == pytest.approx(r2["accuracy"] - r1["accuracy"])
        assert b["flops_ratio"] == pytest.approx(r2["flops"] / r1["flops"])
        assert b["lo"] <= b["diff"] <= b["hi"]
    assert sum(b["items"] for b in within["bins"]) == within["items"]
    assert d["flops_ratio"] == pytest.approx(1.0) and all(b["diff"] == 0.0 for b in d["bins"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "n"], "--pool 'n': expected PARAM=N"),
        (["--greedy", "policy=ttcl:arith-m"], "--greedy needs --pool PARAM=N"),
        (["--seeds", "0,x"], "--seeds '0,x': expected distinct integers"),
        (["--by", "level"], "--by 'level': no item of"),
        (["--pool", "n=4", "--allocate", "field"], "--allocate field needs --by FIELD"),
        (["--pool", "n=4", "--ks", "9"], "--ks '9': expected `all` or k values in 1..4"),
        (["--pool", "n=4", "--sweep", "n=1"], "give --sweep or --pool, not both"),
        (["--pool", "n=0"], "--pool 'n=0': expected PARAM=N"),
        (["--pool", "n=4", "--allocate", "field:3", "--by", "steps"], "--allocate 'field:3': expected `field`"),
        (["--pool", "n=4", "--allocate", "probe:exact"], "--allocate 'probe:exact': expected `field`"),
        (["--pool", "n=4", "--allocate", "probe:0"], "the probe needs M >= 1 samples"),
        (["--pool", "n=4", "--allocate", "probe:8"], "--allocate probe:8: the probe needs 8 samples, the pool draws 4"),
        (["--pool", "n=4", "--allocate", "probe:2:orm"], "--allocate probe:2:orm: no verifier 'orm' scores the pool "
                                                         "(probe verifiers: none)"),
        (["--pool", "n=4", "--allocate", "probe:2:exact"], "--allocate probe:2:exact: `exact` is an exact checker, which "
                                                           "reads the gold answer: a difficulty probe must not"),
        (["--pool", "n=4", "--allocate", "keep:8"], "--allocate keep:8: the probe needs 8 samples, the pool draws 4"),
        (["--pool", "n=4", "--allocate", "keep:0"], "the probe needs M >= 1 samples"),
        (["--pool", "n=4", "--allocate", "probe:2", "--limit", "1"], "--allocate needs at least 2 items"),
        (["--pool", "n=4", "--allocate", "keep:2", "--seeds", "0,1"], "--allocate keep:2: a probe bins each item from "
                                                                      "one run's first samples; give one seed"),
        (["--pool", "n=4", "--allocate", "probe:2:exact", "--seeds", "0,1"], "give one seed (--seed S), not --seeds 0,1"),
        (["--pool", "n=4", "--allocate", "field", "--by", "steps", "--split-seed", "-1"],
         "--split-seed -1: expected a non-negative integer (0 or more)"),
        (["--sweep", "n=1,2,1"], "--sweep 'n=1,2,1': n = 1 is given twice; keep one"),
        (["--sweep", "n=1,,2"], "--sweep 'n=1,,2': an empty value between commas"),
        (["--pool", "n=4", "--pretrain-flops", "policy=-1"], "--pretrain-flops 'policy=-1': a model's training FLOPs are a positive"),
        (["--pool", "n=4", "--pretrain-flops", "policy=nan"], "--pretrain-flops 'policy=nan': a model's training FLOPs are a positive"),
        (["--pool", "m=4"], "--pool m=4: p.ttc has no param `m` (the samples per item); its params: n, temperature"),
        (["--sweep", "n=1", "--traces", "/dev/null"], "--traces /dev/null: not a folder; --traces names a folder"),
        (["--pool", "n=4", "--allocate", "probe:2", "--baseline", "orm_w"],
         "--baseline 'orm_w': not a signal of this pool (signals: pass, strict, maj)"),
    ],
)
def test_bad_options_are_clear_errors(capsys: pytest.CaptureFixture[str], setup: dict[str, Path], args: list[str],
                                      message: str) -> None:
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_pool_over_a_program_without_temperature_is_refused_before_sampling(capsys: pytest.CaptureFixture[str],
                                                                               setup: dict[str, Path]) -> None:
    """Each series' greedy point runs at temperature=0: a program without that param is told so at once, in
    words about --pool (it failed after the pool had run, blaming a `--set temperature=0` never given)."""
    prog = setup["root"] / "notemp.ttc"
    prog.write_text(PROG.replace("param temperature: float = 1.0 in 0.0..2.0\n", "").replace(", temperature = temperature", ""))
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--pool", "n=2")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip() == ("error: --pool n=2: notemp.ttc has no param `temperature` (each series' greedy point (k = 1) "
                           "runs the program at temperature=0); its params: n")


@pytest.mark.parametrize(("edit", "pool", "message"), [
    # QA pass: the pool was sampled, then the greedy point failed on a `--set n=1` never given
    (("n: int = 4 in 1..64", "n: int = 4 in 2..64"), "n=4",
     "--pool n=4: each series' greedy point runs two.ttc at n=1, temperature=0, which it refuses: `--set n=1`: 1 is "
     "outside the range 2..64 of param `n`"),
    # QA pass: `--pool beams=2` on beam search pooled its 8 partial lines as "one pool of 2", every estimate 0
    (("n = n, max_tokens", "n = 2 * n, max_tokens"), "n=4",
     "--pool n=4: at n=4 the pool's sample node (main/drafts) draws 8 candidates, not 4: --pool's param must be that "
     "node's sample count (`n = n`)"),
])
def test_a_pool_the_program_cannot_draw_as_asked_is_refused_before_sampling(
        capsys: pytest.CaptureFixture[str], setup: dict[str, Path], edit: tuple[str, str], pool: str,
        message: str) -> None:
    prog = setup["root"] / "two.ttc"
    prog.write_text(PROG.replace(*edit))
    traces = setup["root"] / "two-traces"
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--pool", pool, "--traces",
                         str(traces))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not traces.exists() or not list(traces.glob("*.jsonl"))  # nothing was sampled


@pytest.mark.parametrize("command", [["eval", "--sweep", "n=1,2"], ["run"]])
def test_by_a_field_holding_a_list_is_refused_before_sampling(capsys: pytest.CaptureFixture[str],
                                                              setup: dict[str, Path], command: list[str]) -> None:
    """It was an internal error (exit 70: unhashable type) after the whole run had been sampled."""
    lines = setup["ds"].read_text().splitlines()
    ds = setup["root"] / "listed.jsonl"
    ds.write_text("".join(json.dumps({**json.loads(line), "k": [i % 2]}) + "\n" for i, line in enumerate(lines)))
    code, out, err = cli(capsys, command[0], str(setup["prog"]), "--dataset", str(ds), *command[1:], "--by", "k")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"{ds}:1: error: --by 'k': the field holds a list; --by groups by a string, number or boolean"


def test_by_a_field_some_items_lack_is_a_note(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """Those items form a bin `no steps` (it was `None`, said nowhere: QA pass)."""
    lines = setup["ds"].read_text().splitlines()
    ds = setup["root"] / "holes.jsonl"
    ds.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "steps" or i % 3}) + "\n"
                          for i, line in enumerate(lines)))
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(ds), "--by", "steps", "--set", "n=1")
    assert code == 0, err
    assert f"note: --by 'steps': 3 of 8 items have no value for it (first: {ds}:1); they are grouped as `no steps`" in err
    assert "no steps: accuracy" in out and "None" not in out
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--by", "steps", "--sweep", "n=1")
    assert code == 0 and "steps=1" in out and "no steps" in out and "None" not in out  # its column was `steps=None`


@pytest.mark.parametrize("keep", [True, False])
def test_ctrl_c_in_a_runs_last_step_stops_the_sweep(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    """A Ctrl-C the run met only after its last step let the sweep start its next configuration and exit 0
    (QA pass): the first Ctrl-C is delivered here just as the first configuration's run returns."""
    import os
    import signal

    from ttcl.runtime.runner import Runner

    real = Runner.run

    def run_then_ctrl_c(self, *args, **kwargs):
        summary = real(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the run's own handler takes it: "stopping after the running step"
        return summary

    monkeypatch.setattr(Runner, "run", run_then_ctrl_c)
    traces = ["--traces", str(tmp_path / "tr")] if keep else []
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1,2", *traces)
    assert code == 130 and out == ""
    if keep:
        assert len(list((tmp_path / "tr").iterdir())) == 1  # the second configuration never started
        n = len(setup["ds"].read_text().splitlines())  # the first configuration finished its items, then the Ctrl-C
        assert (f"interrupted: 0 finished runs and the {n} finished items of the one stopped are kept in "
                f"{tmp_path / 'tr'}; rerun the same command") in err
    else:
        assert "interrupted: nothing was saved (no --traces DIR" in err


def test_items_without_a_gold_answer_are_refused_unless_a_checker_judges(capsys: pytest.CaptureFixture[str],
                                                                        setup: dict[str, Path], tmp_path: Path) -> None:
    """An item with no answer cannot be scored against gold: counting it wrong would report a false 0%."""
    ds = tmp_path / "no_gold.jsonl"
    lines = setup["ds"].read_text().splitlines()
    second = json.loads(lines[1])
    del second["answer"]
    ds.write_text("\n".join([lines[0], json.dumps(second), *lines[2:]]) + "\n")
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--pool", "n=2")
    assert code == 2 and "Traceback" not in err and out == ""
    assert f"{ds}:2: error: the item has no \"answer\"" in err and "--judge TASK" in err
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--pool", "n=2", "--limit", "2",
                         "--judge", "arith", "--json")
    assert code == 0, err
    assert json.loads(out)["judge"] == "arith"


@pytest.mark.parametrize("option", ["--greedy", "--compare"])
def test_a_bad_model_in_a_series_fails_before_any_sampling(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                          tmp_path: Path, option: str) -> None:
    """A typo in the last --greedy/--compare model is an error in a second, not after the whole pool has run."""
    traces = tmp_path / "traces"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--traces", str(traces), option, "policy=ttcl:arith-mm")
    assert code == 2 and "Traceback" not in err
    assert f"{option} 'policy=ttcl:arith-mm': " in err
    assert "model `policy`, overridden to `ttcl:arith-mm`: unknown bundled model 'ttcl:arith-mm'; did you mean" in err
    assert "comes from an override of `policy`" in err and "params = " not in err
    assert not traces.exists() or not any(traces.rglob("*.jsonl"))
    # a typo in the model's name (QA pass: the message quoted a `--model` flag no one typed)
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--traces", str(traces), option, "polcy=ttcl:arith-m")
    assert code == 2 and f"`{option} polcy=ttcl:arith-m`: no model or verifier `polcy`" in err, err
    assert "--model" not in err
    assert err.count(f"{option} polcy") + err.count(f"{option} 'polcy") == 1  # said once (QA pass: twice)


def _orm_allocation(capsys: pytest.CaptureFixture[str], setup: dict[str, Path], spec: str) -> tuple[dict, list]:
    """`ttcl eval --allocate SPEC --baseline orm_best` on a pool of 4 scored by arith-orm: the allocation
    report and the pools read back from the run's own trace."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.analysis.collect import find_pool_nodes, pools_from_trace

    prog = setup["root"] / "orm.ttc"
    prog.write_text(PROG.replace('verifier exact = check("arith")', 'verifier orm = reward("ttcl:arith-orm")')
                    .replace("checked = verify(exact, drafts)", "checked = verify(orm, drafts)"))
    traces = setup["root"] / "traces-orm"
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--pool", "n=4", "--traces",
                         str(traces), "--allocate", spec, "--baseline", "orm_best", "--device", "cpu", "--json")
    assert code == 0, err
    (path,) = traces.glob("arith-s__pool_n=4__*__seed0.jsonl")
    pools = [p.pool for p in pools_from_trace(read_trace(path), find_pool_nodes(compile_program(prog).dag))]
    return json.loads(out)["allocation"], pools


def test_allocation_by_a_verifier_probe(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """`--allocate probe:M:VERIFIER` bins items by the verifier's mean score over the first M samples and
    charges those decodes and passes to every item; the bins come from the trace's own scores."""
    from ttcl.runtime.analysis.allocate import probe_bins, split_halves

    a, pools = _orm_allocation(capsys, setup, "probe:2:orm")
    assert a["bins_from"].startswith("predicted: mean orm score of the first 2 pool samples")
    assert a["baseline"]["signal"] == "orm_best" and a["baseline"]["k"] == 4 and a["report_items"] == 4
    _, cost = probe_bins(pools, 2, split_halves(8, 0), verifier="orm")
    # the probe's charge: its first two decodes and the ORM passes over their distinct texts; not the prompt's
    # prefill, which the configuration run after it pays (QA: it was charged twice)
    for p, c in zip(pools, cost, strict=True):
        passes = p.verifier_flops["orm"] * len(set(p.texts[:2])) / len(set(p.texts))
        assert c == pytest.approx(p.gen_flops[0] + p.gen_flops[1] + passes)
        assert p.verifier_flops["orm"] > 0
    cheapest = a["curve"][0]
    assert cheapest["flops"] >= min(cost)  # every policy pays the probe on top
    # each budget against the best uniform configuration (no probe to pay): never cheaper than it at the bottom
    assert all({"uniform_flops", "vs_uniform", "vs_uniform_lo", "vs_uniform_hi"} <= r.keys() for r in a["curve"])
    assert cheapest["vs_uniform"] < 1.0


def test_allocation_keeping_the_probe(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """`--allocate keep:M:VERIFIER` bins as `probe:M:VERIFIER` does, but every configuration continues from the
    M probe samples (k >= M) and pays their decodes and passes once: the cheapest policy is k = M everywhere,
    costing exactly the probe, and the baseline is the plain pool's."""
    from ttcl.runtime.analysis.allocate import split_halves

    a, pools = _orm_allocation(capsys, setup, "keep:2:orm")  # the same pool as the probe's test (its trace reused)
    assert "which every configuration keeps (k >= 2" in a["bins_from"]
    assert all(int(c.split("@")[1]) >= 2 for r in a["curve"] for c in r["choice"].values())
    report = [p for p, s in zip(pools, split_halves(8, 0), strict=True) if not s]
    probe = [p.shared_flops + p.gen_flops[0] + p.gen_flops[1] + p.verifier_flops["orm"] * len(set(p.texts[:2]))
             / len(set(p.texts)) for p in report]
    cheapest = a["curve"][0]
    assert set(cheapest["choice"].values()) <= {"maj@2", "orm_w@2", "orm_best@2"}
    assert cheapest["flops"] == pytest.approx(sum(probe) / len(probe))
    full = [p.shared_flops + sum(p.gen_flops) + p.verifier_flops["orm"] for p in report]
    assert a["baseline"]["k"] == 4 and a["baseline"]["flops"] == pytest.approx(sum(full) / len(full))


def test_run_keeps_item_fields_and_breaks_down_by_one(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    code, out, err = cli(capsys, "run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--by", "steps",
                         "--set", "n=1", "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert [r["fields"]["steps"] for r in rep["results"]] == [1, 3] * 4
    bins = {b["bin"]: b for b in rep["by"]["bins"]}
    for steps in (1, 3):
        rows = [r for r in rep["results"] if r["fields"]["steps"] == steps]
        assert bins[steps]["items"] == 4
        assert bins[steps]["accuracy"] == sum(r["correct"] for r in rows) / 4
    assert bins["all"]["accuracy"] == rep["accuracy"]


def test_eval_runs_pass_batch_items_and_remote_options_to_each_run(setup: dict[str, Path], tmp_path: Path) -> None:
    """`ttcl eval --batch-items/--ray/--allow-remote` reach every run (they were once dropped silently)."""
    from ttcl.commands.eval import Runs
    from ttcl.commands.run import Wide, _load_items

    items = _load_items(None, setup["ds"], 4, None)
    common = dict(device="cpu", dtype="auto", quiet=True, wide=Wide(None, None, None), allow_remote=[])
    one = Runs(setup["prog"], setup["ds"], items, tmp_path / "one", batch_items=1, **common)
    summary, _ = one.run("arith-s", ["n=2"], [], 0, "b1")
    together = Runs(setup["prog"], setup["ds"], items, tmp_path / "all", batch_items=None, **common)
    summary2, _ = together.run("arith-s", ["n=2"], [], 0, "ball")
    assert summary.batches == 4 * summary2.batches  # one item per batch, against all four at once
    assert [r["answer"] for r in summary.results] == [r["answer"] for r in summary2.results]


def test_an_unwritable_plot_is_refused_before_the_eval(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """A figure that cannot be written (a file stands where its folder should, or it names a folder) is refused
    with exit 2 before any run (it used to fail only after the whole eval, with its reason printed twice)."""
    traces = setup["root"] / "traces-refused"
    (setup["root"] / "afile").write_text("")
    for plot, why in ((setup["root"] / "afile" / "fig.png", "`" + str(setup["root"] / "afile") + "` is not a directory"),
                      (setup["root"], "is a directory")):
        code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                             "--traces", str(traces), "--plot", str(plot), "--device", "cpu")
        assert code == 2 and f"--plot {plot}" in err and why in err and "Traceback" not in err, err
        assert out == "" and not traces.exists()  # nothing ran


def test_the_plot_line_names_the_file_written(capsys: pytest.CaptureFixture[str], setup: dict[str, Path]) -> None:
    """`--plot NAME` without an image suffix writes NAME.png, and the closing line says so (it said NAME). Its
    missing folders are made, as --trace's and `graph -o`'s are (it was refused: "create it")."""
    plot = setup["root"] / "figs" / "new" / "myplot"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--traces", str(setup["root"] / "traces2"), "--plot", str(plot), "--device", "cpu")
    assert code == 0, err
    assert f"plot: {plot}.png" in out.replace("\n", "") and (setup["root"] / "figs" / "new" / "myplot.png").is_file()
    assert not plot.exists()
    # under --json the path was named nowhere (QA pass): a `plot` key, and the line on stderr
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--traces", str(setup["root"] / "traces2"), "--plot", str(plot), "--device", "cpu", "--json")
    assert code == 0 and json.loads(out)["plot"] == f"{plot}.png" and f"plot: {plot}.png" in err, err


def test_the_greedy_point_stays_greedy_under_set_temperature(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """--set temperature=X changes the pool's sampling; the greedy point is still k = 1 at temperature 0."""
    traces = tmp_path / "traces"
    runs = {}
    for extra in ([], ["--set", "temperature=0.5"]):
        code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                             "--traces", str(traces), "--device", "cpu", "--json", *extra)
        assert code == 0, err
        runs[bool(extra)] = json.loads(out)
    plain, hot = runs[False], runs[True]
    assert [r["answer"] for r in hot["item_rows"]["arith-s greedy"]] == [r["answer"] for r in plain["item_rows"]["arith-s greedy"]]
    assert len(list(traces.glob("arith-s__greedy__*"))) == 1  # the same greedy run, reused
    assert len(list(traces.glob("arith-s__pool_n=2__*"))) == 2  # two pools


def test_two_programs_keep_their_own_traces_in_one_directory(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """Same series, params and seed, another program: a trace each, and a rerun reuses its own."""
    other = tmp_path / "q.ttc"
    other.write_text(PROG.replace("return vote(drafts)", "return best(checked)"))
    traces = tmp_path / "traces"
    for prog in (setup["prog"], other, setup["prog"]):
        code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--sweep", "n=2",
                             "--traces", str(traces), "--device", "cpu", "--json")
        assert code == 0, err
        assert "running afresh" not in err
    assert len(list(traces.glob("arith-s__n=2__*__seed0.jsonl"))) == 2


def test_an_edited_dataset_runs_beside_its_old_trace(capsys: pytest.CaptureFixture[str],
                                                     setup: dict[str, Path], tmp_path: Path) -> None:
    """The message blamed "the program, params, models or judge" when only the dataset's content had changed;
    then a changed dataset replaced its trace. The content is now part of the trace's name: the edited file's
    runs get a trace of their own and the old one stays."""
    ds, traces = tmp_path / "d.jsonl", tmp_path / "traces"
    lines = setup["ds"].read_text().splitlines()
    for content in (lines, lines[::-1]):
        ds.write_text("\n".join(content) + "\n")
        code, _, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--sweep", "n=2",
                           "--traces", str(traces), "--device", "cpu", "--json")
        assert code == 0, err
        assert "afresh" not in err
    assert len(list(traces.glob("*.jsonl"))) == 2


def test_a_sweep_over_an_unknown_param_names_the_sweep(capsys: pytest.CaptureFixture[str],
                                                       setup: dict[str, Path]) -> None:
    """`--sweep m=1,2` said "`--set m=1`: no param `m`", an option the user never typed (QA pass); every
    configuration is now compiled before any sampling."""
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1,2",
                         "--sweep", "m=1,2")
    assert code == 2 and out == "" and "Traceback" not in err
    assert "error: `--sweep m=1`: no param `m`" in err and "--set" not in err
    assert "items 100%" not in err  # nothing was sampled first


def test_one_traces_directory_keeps_the_runs_of_two_datasets(capsys: pytest.CaptureFixture[str],
                                                              setup: dict[str, Path], tmp_path: Path) -> None:
    """The trace file names carried no dataset: a second dataset said "the dataset's content changed ... running
    afresh" and replaced the first one's traces (QA pass)."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(setup["ds"].read_text().splitlines(keepends=True)[:4]))
    traces = tmp_path / "traces"
    kept = []
    for ds in (setup["ds"], other, setup["ds"]):
        code, _, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--pool", "n=2",
                           "--traces", str(traces))
        assert code == 0 and "afresh" not in err, err
        kept.append({p.name: p.read_bytes() for p in traces.glob("*.jsonl")})
    assert len(kept[0]) == 2 and len(kept[1]) == 4  # a pool and a greedy point per dataset
    assert set(kept[2]) == set(kept[1])
    assert all(kept[2][k].startswith(v) for k, v in kept[0].items())  # the first dataset's runs, kept and reused


def test_an_eval_says_how_many_items_failed(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            request: pytest.FixtureRequest) -> None:
    """A server that died mid-eval left 9 of 24 items failed, counted wrong, with nothing on stderr (QA pass). A
    failed item is said per run: how many, the first one's error, and how to run them again."""
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)
    first = json.loads(setup["ds"].read_text().splitlines()[0])["question"]
    (tmp_path / "flaky_e1.py").write_text(
        "def score(question, completion):\n"
        f"    if question.strip() == {first.strip()!r}:\n        raise RuntimeError('checker down')\n"
        "    return 0.5\n")
    prog = tmp_path / "p.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier mine = check("flaky")\nparam n: int = 2 in 1..8\n'
                    'strategy main(question: text[<=40]) -> answer {\n'
                    '    d = sample(policy, "{question}\\n", n = n, max_tokens = 40)\n'
                    '    return best(verify(mine, d))\n}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--sweep", "n=2",
                         "--verifier", "flaky=flaky_e1:score", "--device", "cpu")
    assert code == 0, err
    n = len(setup["ds"].read_text().splitlines())
    line = next(x for x in err.splitlines() if "items failed" in x)
    assert line.startswith(f"arith-s: n=2 (seed 0): 1 of {n} items failed (first: item 0: ") and "checker down" in line
    assert line.endswith("they count as wrong; with --traces DIR, running the same command again reruns only them")


@pytest.mark.parametrize("args", [["--sweep", "n=0,2"], ["--set", "n=0"], ["--dataset", "missing.jsonl"],
                                  ["--pool", "n=4", "--ks", "9"]], ids=["sweep", "set", "dataset", "ks"])
def test_an_error_before_any_run_is_json_under_json(setup: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                    args: list[str]) -> None:
    """`ttcl run --json` printed its diagnostics as JSON on stdout; `ttcl eval --json` printed nothing there, and
    a script's json.load of its output failed on an empty string (QA pass)."""
    dataset = ["--dataset", str(setup["ds"])] if "--dataset" not in args else []
    code, out, _ = cli(capsys, "eval", str(setup["prog"]), *dataset, *args, "--json")
    report = json.loads(out)
    assert code == 2 and report["verdict"] == "invalid" and report["exit_code"] == 2
    message = report["diagnostics"][0]["message"]
    assert {"--sweep": "`--sweep n=0`", "--set": "`--set n=0`", "--dataset": "not found", "--pool": "--ks"}[args[0]] \
        in message


def test_a_sweep_value_refused_where_it_is_used_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         setup: dict[str, Path]) -> None:
    """`param more: int = 4 in 0..16` used as `n`: `--sweep more=0,4` said "`n` of `sample` is 0", not which
    sweep value (QA pass)."""
    prog = tmp_path / "sw.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nparam more: int = 4 in 0..16\n'
                    'strategy main(question: text[<=40]) -> answer {\n'
                    '    return vote(sample(policy, "{question}\\n", n = more, max_tokens = 100))\n}\n')
    code, _, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--sweep", "more=0,4")
    assert code == 2 and err.startswith(f"--sweep more=0: {prog}:5:52: error: `n` of `sample` is 0"), err


@pytest.mark.parametrize("args", [["--input", ""], ["--input", "1 +2", "--device", "tpu"]], ids=["input", "device"])
def test_run_json_says_an_option_error_as_json(setup: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                              args: list[str]) -> None:
    """`ttcl run --json` printed JSON for an invalid program only; a bad --input or --device printed nothing on
    stdout (review)."""
    code, out, _ = cli(capsys, "run", str(setup["prog"]), *args, "--json")
    report = json.loads(out)
    assert code == 2 and report["verdict"] == "invalid" and report["diagnostics"][0]["message"]
