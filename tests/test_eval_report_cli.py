"""`ttcl eval`'s reports on the bundled arith-s: overlays of a sweep on a pool, exchange and total compute,
series names, pools the budget cuts, and the plot's failure path (tests/test_eval_cli.py has the rest)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.evalkit import PROG, cli, eval_setup
from tests.shipped import available
from ttcl.runtime.trace import read_trace

pytestmark = pytest.mark.skipif(not available("ttcl:arith-s"), reason="bundled arith-s not installed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return eval_setup(tmp_path_factory)

def test_a_late_plot_failure_keeps_the_table_and_says_why_once() -> None:
    """A figure that fails while it is written (after the checks) is one clear error, its reason said once."""
    from ttcl.commands.eval import _write
    from ttcl.errors import TtclRuntimeError

    def fail() -> None:
        open("/nonexistent-dir/x.png", "wb")

    with pytest.raises(TtclRuntimeError) as e:
        _write(fail, Path("/nonexistent-dir/x.png"))
    assert str(e.value) == "/nonexistent-dir/x.png: error: cannot write the plot: No such file or directory"


def test_exchange_cells_say_when_the_reference_gets_nothing_right() -> None:
    from ttcl.commands.eval_cells import _ratio

    assert _ratio({"reference_zero": True, "ratio": math.nan, "ratio_lo": math.nan, "ratio_hi": math.nan}) == "n/a: ref. 0"
    assert _ratio({"reference_zero": False, "ratio": math.inf, "ratio_lo": 0.5, "ratio_hi": math.inf}) == "-"
    assert _ratio({"reference_zero": False, "ratio": 0.25, "ratio_lo": 0.2, "ratio_hi": math.inf}) == "0.25 [0.2, inf]"


def test_the_saving_line_says_no_saving_within_float_noise_of_1x() -> None:
    """A policy that matches the baseline only at k = N costs the baseline's FLOPs up to float rounding:
    that is no saving, not "below 1x"."""
    from ttcl.commands.eval_cells import _saving_note

    assert _saving_note(1.0 - 1e-15) == " (no saving)"
    assert _saving_note(0.8) == " (below 1x: it costs more than the baseline)"
    assert _saving_note(1.3) == ""


def test_overlay_pairs_a_sweep_with_the_pool_at_equal_flops(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """A sweep's rows on the pool's plane: each pool signal read at the row's FLOPs, and the paired
    difference over the same items, whose mean is exactly the row's accuracy minus that reading."""
    traces, sweep = tmp_path / "traces", tmp_path / "sweep.json"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1,2",
                         "--by", "steps", "--traces", str(traces), "--device", "cpu", "--json")
    assert code == 0, err
    sweep.write_text(out)
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                         "--by", "steps", "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu", "--json",
                         "--plot", str(tmp_path / "fig.png"))
    assert code == 0, err
    assert "that sweep was run" not in err
    assert (tmp_path / "fig.png").stat().st_size > 10_000  # the sweep drawn as one dotted line on each panel
    rep = json.loads(out)
    points = [p for p in rep["overlay"] if p["signal"] is None]
    assert {p["group"] for p in points} == {"p: arith-s"} and {p["config"] for p in points} == {"n=1", "n=2"}
    reads = [p for p in rep["overlay"] if p["signal"] is not None]
    # labelled by program, series and config, so two programs' sweeps of one series stay apart
    assert {(p["label"], p["bin"]) for p in points} == {(f"p: arith-s n={n}", b) for n in (1, 2) for b in (1, 3, "all")}
    assert {p["signal"] for p in reads} == {"pass", "strict", "maj"}
    paired = [r for r in reads if not math.isnan(r["pool_accuracy"])]
    assert paired, "no run fell inside the pool's FLOPs range"
    for r in paired:
        d = r["paired"]
        assert d["diff"] == pytest.approx(r["accuracy"] - r["pool_accuracy"])
        assert d["lo"] <= d["diff"] <= d["hi"] and d["items"] == r["items"]
    # n=1 decodes one sample: it sits at the pool's k=1 point, where every signal is the pool's first draw's accuracy
    one = next(r for r in paired if r["label"] == "p: arith-s n=1" and r["bin"] == "all" and r["signal"] == "pass")
    k1 = next(c for c in rep["curves"] if c["signal"] == "pass" and c["k"] == 1 and c["bin"] == "all")
    assert one["flops"] == pytest.approx(k1["flops"], rel=0.25) and one["pool_accuracy"] == pytest.approx(k1["accuracy"], abs=0.01)
    # and the printed table carries the paired differences
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                         "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu")
    assert code == 0, err
    assert "overlaid runs against the pool" in out
    cell = next(r for r in paired if r["label"] == "p: arith-s n=2" and r["bin"] == "all")
    assert f"{cell['pool_accuracy']:.3f}" in out and f"{cell['paired']['diff']:+.3f} [" in out


def test_an_overlay_from_other_items_is_a_clear_error_before_sampling(capsys: pytest.CaptureFixture[str],
                                                                     setup: dict[str, Path], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.json"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1",
                         "--limit", "3", "--traces", str(tmp_path / "tr"), "--device", "cpu", "--json")
    assert code == 0, err
    sweep.write_text(out)
    traces = tmp_path / "pool-traces"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                         "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu")
    assert code == 2 and "its rows cover 3 items, this eval 8" in err and "Traceback" not in err
    assert not list(traces.glob("*.jsonl"))  # nothing was sampled
    (tmp_path / "bad.json").write_text("{}")
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=4",
                         "--overlay", str(tmp_path / "bad.json"), "--device", "cpu")
    assert code == 2 and "expected the --json output of a `ttcl eval --sweep` run" in err
    # the same number of items, other questions (QA pass: paired "over the same items" and reported, exit 0)
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    other = tmp_path / "other.jsonl"
    other.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(3, [1, 3], seed=78))))
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(other), "--pool", "n=4",
                         "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu")
    assert code == 2 and "it was run on other items than this eval's" in err, err
    old = json.loads(sweep.read_text())
    del old["items_digest"]  # a file written before the digest: its items' golds tell
    sweep.write_text(json.dumps(old))
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(other), "--pool", "n=4",
                         "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu")
    assert code == 2 and "it was run on other items than this eval's" in err, err
    assert not list(traces.glob("*.jsonl"))  # nothing was sampled
    # the same items, judged otherwise (QA pass: gold-equality rows were paired with a checker-judged pool)
    sweep.write_text(json.dumps(old | {"judge": "gold"}))
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--limit", "3",
                         "--pool", "n=4", "--judge", "arith", "--traces", str(traces), "--overlay", str(sweep),
                         "--device", "cpu")
    assert code == 2 and "its rows were judged by `gold`, this eval's by `arith`; rerun the sweep with --judge arith" \
        in err, err
    assert not list(traces.glob("*.jsonl"))


def test_an_overlay_swept_without_by_says_only_its_all_rows_overlay(capsys: pytest.CaptureFixture[str],
                                                                    setup: dict[str, Path], tmp_path: Path) -> None:
    """The per-bin rows were silently missing when the sweep had no --by (found by a QA pass)."""
    traces, sweep = tmp_path / "traces", tmp_path / "sweep.json"
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1",
                         "--traces", str(traces), "--device", "cpu", "--json")
    assert code == 0, err
    sweep.write_text(out)
    code, _, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                       "--by", "steps", "--traces", str(traces), "--overlay", str(sweep), "--device", "cpu", "--json")
    assert code == 0, err
    assert f"--overlay {sweep}: that sweep was run without --by, so only its `all` rows are overlaid" in err


def test_a_series_on_a_server_is_labelled_by_the_model_it_serves() -> None:
    """It was labelled `arith-s&engine=transforme…`, the tail of the pinned URL (QA pass)."""
    from ttcl.commands.eval import short_name

    assert short_name("http://127.0.0.1:8000/v1?model=/models/zoo/arith-s&engine=transformers-serve") == "arith-s"
    assert short_name("http://127.0.0.1:8000/v1?local=ttcl:arith-l") == "arith-l"
    assert short_name("http://127.0.0.1:8000/v1") == "127.0.0.1:8000/v1"
    assert short_name("ttcl:expr-m") == "expr-m" and short_name("/models/llama-1b/") == "llama-1b"


def test_an_item_without_a_whole_pool_leaves_the_tables_not_the_curves(capsys: pytest.CaptureFixture[str],
                                                                       setup: dict[str, Path]) -> None:
    """One item that fails before sampling (its question is over the program's text[<=40]) has an empty pool: it
    is left out of every table and said on stderr (QA: it emptied every curve, ks = [], exit 0, not a word)."""
    lines = setup["ds"].read_text().splitlines()
    bad = json.loads(lines[2])
    bad["question"] = " ".join(["1 +1"] * 12)
    ds = setup["root"] / "one_long.jsonl"
    ds.write_text("\n".join([*lines[:2], json.dumps(bad), *lines[3:]]) + "\n")
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--pool", "n=4", "--device", "cpu",
                         "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["pool"]["ks"] == [1, 2, 4] and rep["short_pool_items"] == [2]
    assert {r["k"] for r in rep["curves"]} == {1, 2, 4} and all(r["items"] == 7 for r in rep["curves"])
    assert ("--pool: 1 of 8 items drew fewer candidates than the pool of 4 (or no greedy answer): they stopped, "
            "failed or were shrunk by the program's `on_exhaust` (first: item 2, with 0): left out of every table, "
            "greedy point, exchange and allocation") in err.splitlines()
    # no item with a whole pool: nothing to report, said as such (exit 2)
    ds.write_text(json.dumps(bad) + "\n")
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(ds), "--pool", "n=4", "--device", "cpu")
    assert code == 2 and "no item has a full pool, so there is no curve to report" in err and "Traceback" not in err


def test_total_compute_counts_the_references_greedy_decode_per_query(capsys: pytest.CaptureFixture[str],
                                                                      setup: dict[str, Path], tmp_path: Path) -> None:
    """Snell's Q = R * D_pretrain(B) / tokens per query of B, whose F_B is its greedy decode's FLOPs: the tokens
    per query are that decode's too. They were the item's whole tokens, the ORM passes the program made on the
    greedy answer included (QA pass: Q 2-3x too low on the README's main job)."""
    prog = tmp_path / "orm.ttc"
    prog.write_text(PROG.replace('verifier exact = check("arith")', 'verifier orm = reward("ttcl:arith-orm")')
                    .replace("verify(exact, drafts)", "verify(orm, drafts)"))
    traces = tmp_path / "traces"
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--pool", "n=2", "--greedy",
                         "policy=ttcl:arith-m", "--traces", str(traces), "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    trace = read_trace(next(traces.glob("arith-m__greedy__*.jsonl")))
    decode = [r.cost["tokens"] for i in trace.items for r in trace.nodes[i] if r.op == "sample"]
    whole = [rec.cost["tokens"] for rec in trace.items.values()]
    assert len(decode) == len(whole) == 8 and sum(decode) < sum(whole)  # the ORM read the greedy answer too
    rows = [r for r in rep["total_compute"] if r["reference"] == "arith-m greedy"]
    assert rows
    from ttcl.runtime.verifiers import model_meta

    tokens_b = model_meta("ttcl:arith-m")["training_tokens"]
    for r in rows:
        assert r["queries"] == pytest.approx(r["R"] * tokens_b / (sum(decode) / len(decode)))


@pytest.mark.parametrize("on_exhaust", ["shrink", "stop"])
def test_a_pool_the_budget_cuts_is_said(capsys: pytest.CaptureFixture[str], setup: dict[str, Path], tmp_path: Path,
                                        on_exhaust: str) -> None:
    """QA pass: --pool n=4 under a budget of 2 calls drew pools of 2 while the title and --json said 4 and
    k = 4 vanished without a word; a budget that stops every pool was "fewer candidates than the pool of 1"."""
    prog = tmp_path / "cut.ttc"
    prog.write_text(PROG.replace("budget per item { calls <= 64; gen_tokens <= 4k }",
                                 f"budget per item {{ calls <= 2; on_exhaust = {on_exhaust} }}"))
    code, out, err = cli(capsys, "eval", str(prog), "--dataset", str(setup["ds"]), "--pool", "n=4", "--ks", "1,4",
                         "--device", "cpu", "--json")
    if on_exhaust == "stop":
        assert code == 2 and "8 of 8 items drew fewer candidates than the pool of 4" in err, err
        return
    assert code == 0, err
    assert ("note: --pool n=4: every item's pool holds at most 2 candidates, not 4: the program's budget cuts it "
            "(`on_exhaust`; see `ttcl check --set n=4`), so the curves stop at k = 2 (no estimate for k = 4)") in err
    rep = json.loads(out)
    assert rep["pool"]["n"] == 4 and rep["pool"]["drawn"] == 2 and rep["pool"]["ks"] == [1]


def test_two_series_of_one_short_name_stay_two(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                               tmp_path: Path) -> None:
    """A server and its local twin (here: a bundled model by its name and by its directory) were both named
    `arith-s`: two pools ran and one series was reported, the other dropped without a word (QA pass)."""
    other = str(Path(__file__).resolve().parent.parent / "ttcl" / "zoo" / "models" / "arith-s")
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--compare", f"policy={other}", "--greedy", f"policy={other}", "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    series = {r["series"] for r in rep["curves"]}
    assert series == {"arith-s (ttcl:arith-s)", f"arith-s ({other})"}, series
    assert {g["model"] for g in rep["greedy"]} == series  # the --greedy one is the --compare one's greedy point


def test_a_model_path_with_brackets_is_shown_as_written(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """The progress bar read a series' name as markup: `[red]` vanished, and a closing tag was exit 70."""
    import shutil

    odd = tmp_path / "m[red]"
    shutil.copytree(Path(__file__).resolve().parent.parent / "ttcl" / "zoo" / "models" / "arith-s", odd)
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--sweep", "n=1",
                         "--model", f"policy={odd}", "--device", "cpu")
    assert code == 0, err
    assert "m[red]: n=1 (seed 0)" in err, err


def test_a_pool_report_shows_the_gap_to_a_larger_models_greedy(capsys: pytest.CaptureFixture[str],
                                                               setup: dict[str, Path]) -> None:
    """The exchange said a series reached a larger model's greedy accuracy at a fraction of its FLOPs, and nothing
    said whether that model was better than the series' own greedy answer at all (QA pass: +0.033 [-0.056,
    +0.122] on the README's main job). The gap is paired per bin, as the item rows hold it."""
    code, out, err = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                         "--by", "steps", "--greedy", "policy=ttcl:arith-l", "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    rows = {(r["series"], r["reference"], str(r["bin"])): r for r in rep["greedy_gap"]}
    assert {k[:2] for k in rows} == {("arith-s", "arith-l greedy")}
    for value in rep["bins"]:
        gap = rows[("arith-s", "arith-l greedy", str(value))]
        greedy = [g for g in rep["greedy"] if str(g["bin"]) == str(value)]
        by = {g["model"]: g["accuracy"] for g in greedy}
        assert gap["diff"] == pytest.approx(by["arith-l"] - by["arith-s"])
        assert gap["lo"] <= gap["diff"] <= gap["hi"]
    _, text, _ = cli(capsys, "eval", str(setup["prog"]), "--dataset", str(setup["ds"]), "--pool", "n=2",
                     "--by", "steps", "--greedy", "policy=ttcl:arith-l", "--device", "cpu")
    assert "the gap compute must close" in text and "arith-l greedy - arith-s greedy" in text


def test_total_compute_charges_a_verifiers_rule_its_verifiers_training() -> None:
    """Only the policy's pretraining was charged, where a verifier's rule also needs the verifier (and the model it
    was initialised from): on expr that lineage costs about what the reference's pretraining did (QA pass)."""
    from ttcl.commands.eval_report import model_meta, verifier_training

    def flops(name: str) -> float:
        return float(model_meta("m", {"m": f"ttcl:{name}"})["training_flops"])

    assert verifier_training("maj", {"policy": "ttcl:countdown-s"}, "countdown-s") == (0.0, [])
    refs = {"policy": "ttcl:countdown-s", "check_lm": "ttcl:countdown-check"}
    # countdown-check was initialised from countdown-s, the series' own policy: counted once, as the policy
    assert verifier_training("check_lm_best", refs, "countdown-s") == (flops("countdown-check"), ["countdown-check"])
    refs = {"policy": "ttcl:expr-s", "lik": "ttcl:expr-s-narrow8-xlong-lik"}
    got, trained = verifier_training("lik_w", refs, "expr-s")
    assert trained == ["expr-s-narrow8-xlong-lik", "expr-s-narrow8-xlong"]
    assert got == pytest.approx(flops("expr-s-narrow8-xlong-lik") + flops("expr-s-narrow8-xlong"))
