"""`--judge NAME`: answers judged right by a registered exact checker instead of equality with the gold answer.

A countdown question usually has several right expressions; the dataset holds
one. Judged by `check("countdown")`, every right expression counts. The
end-to-end tests run the shipped `ttcl:countdown-s` on `ttcl data countdown`
items and check each verdict in the report against `checker.outcome` by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.shipped import available
from ttcl.cli import main
from ttcl.runtime.judge import JudgeError, make_judge
from ttcl.runtime.tasks import get_checker
from ttcl.runtime.tasks.countdown_answers import canonical
from ttcl.runtime.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "programs" / "countdown_pool.ttc"
needs_model = pytest.mark.skipif(not available("ttcl:countdown-s"), reason="bundled countdown-s not installed")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def passes(question: str, answer: str | None) -> bool:
    return answer is not None and get_checker("countdown").outcome(question, "#### " + answer) == 1.0


# ---------------------------------------------------------------- the judge itself


def test_gold_judge_is_equality_and_needs_gold() -> None:
    judge = make_judge(None)
    assert judge.name == "gold" and make_judge("gold").name == "gold"
    assert judge("7 3 1 -> 10", "1*3+7", "1*3+7") is True
    assert judge("7 3 1 -> 10", "1*3+7", "3+1*7") is False  # right, but not the gold string
    assert judge("7 3 1 -> 10", None, "1*3+7") is None


def test_gold_read_as_the_answers_are() -> None:
    """A run whose answers come from countdown's extractor (canonical expressions) reads the gold
    the same way, so one computation written in another order equals the gold; reading twice is
    reading once (a trace records the gold as read)."""
    judge = make_judge(None)
    judge.read_gold = lambda g: get_checker("countdown").extract("#### " + g)
    q = "7 3 1 -> 10"
    answer = get_checker("countdown").extract("#### 7+1*3")
    assert judge(q, "1*3+7", answer) is True
    assert judge.gold_of("1*3+7") == answer == judge.gold_of(judge.gold_of("1*3+7"))
    assert judge(q, "1*3+7", get_checker("countdown").extract("#### 7+3")) is False  # right, another computation
    assert judge(q, None, answer) is None


def test_checker_judge_accepts_every_right_expression() -> None:
    judge = make_judge("countdown")
    q = "7 3 1 -> 10"
    for right in ("1*3+7", "3+1*7", "7+3*1", "(7+3)/1", "7+3"):
        assert judge(q, "1*3+7", right) is True, right
        assert judge(q, None, right) is True, right  # no gold needed
    for wrong in ("7+3+1", "7*3", "1+(7+3)", "3+(1+7)", "10", "", None):
        assert judge(q, "1*3+7", wrong) is False, wrong
    assert make_judge("arith")("3 +4", None, "7") is True and make_judge("arith")("3 +4", None, "8") is False


@pytest.mark.parametrize(("name", "question"), [
    ("countdown", "10  5 6 -> 65"),  # one space doubled: the checker's reading of the question fails
    ("countdown", "3 +4"), ("arith", "10 5 6 -> 65"), ("expr", "10 5 6 -> 65"),  # another task's question
])
def test_a_question_the_checker_cannot_read_is_ungraded_not_wrong(name: str, question: str) -> None:
    """Every answer, the gold one too, was judged wrong: accuracy 0.000 and exit 0 (QA pass)."""
    from ttcl.runtime.judge import JudgeError

    with pytest.raises(JudgeError, match=f"is not one the `{name}` checker reads"):
        make_judge(name)(question, "65", "65")
    assert all(get_checker(n).reads(q) for n, q in [("countdown", "10 5 6 -> 65"), ("arith", "3 +4"),
                                                     ("expr", "9+49; 28-21+40")])


@pytest.mark.parametrize("score", [float("nan"), 1.5, -0.1])
def test_a_checker_outcome_outside_0_1_leaves_the_item_ungraded(score: float) -> None:
    """A user's checker that returned NaN or 1.5 counted the answer wrong without a word, where None or a string
    failed the judge (QA pass): an outcome outside [0, 1] is the checker's fault, so the item is ungraded."""
    from ttcl.runtime.judge import Judge
    from ttcl.runtime.tasks import FunctionChecker

    judge = Judge("odd", FunctionChecker("odd", lambda q, c: score))
    with pytest.raises(JudgeError, match=r"--judge odd: its checker returned .* an outcome is a number in \[0, 1\]"):
        judge("3 +4", "7", "7")
    assert Judge("odd", FunctionChecker("odd", lambda q, c: 1.0))("3 +4", "7", "7") is True


def test_a_checker_whose_reads_raises_leaves_the_item_ungraded() -> None:
    """`reads` was called outside the judge's guard: arith's raised on a 5,000-digit question (now it says it cannot
    read it) and `ttcl run --judge arith` ended with exit 70, losing every item (QA pass)."""
    from ttcl.runtime.judge import Judge

    class Raises:
        name = "raises"

        def reads(self, question: object) -> bool:
            raise ValueError("no")

        def outcome(self, question: object, completion: object) -> float:
            return 1.0

    with pytest.raises(JudgeError, match="--judge raises: ValueError: no"):
        Judge("raises", Raises())("3 +4", "7", "7")  # type: ignore[arg-type]
    with pytest.raises(JudgeError, match="is not one the `arith` checker reads"):
        make_judge("arith")("1" + "0" * 5000 + " +1", "1", "1")


def test_unknown_judge_names_the_known_ones() -> None:
    with pytest.raises(JudgeError) as e:
        make_judge("countdwn")
    assert e.value.exit_code == 2
    msg = str(e.value)
    assert "\n" not in msg and "did you mean 'countdown'?" in msg and "gold" in msg and "arith" in msg


@pytest.mark.parametrize("command", ["run", "eval"])
def test_bad_judge_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    ds = tmp_path / "d.jsonl"
    ds.write_text('{"question": "7 3 1 -> 10", "answer": "#### 1*3+7"}\n')
    extra = ["--pool", "n=2"] if command == "eval" else []
    code, out, err = cli(capsys, command, str(PROGRAM), "--dataset", str(ds), "--judge", "nope", *extra)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --judge 'nope': no checker") and "countdown" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_judge_that_reads_no_question_is_refused_before_any_model_loads(capsys: pytest.CaptureFixture[str],
                                                                          tmp_path: Path, command: str) -> None:
    """An arith dataset judged by countdown was found only after the whole run, and a sweep exited 0 (QA pass)."""
    ds = tmp_path / "d.jsonl"
    ds.write_text('{"question": "19 *2", "answer": "38"}\n{"question": "3 +4", "answer": "7"}\n')
    extra = ["--sweep", "n=1,2"] if command == "eval" else []
    code, out, err = cli(capsys, command, str(PROGRAM), "--dataset", str(ds), "--judge", "countdown", *extra)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip() == (f"error: --judge countdown: no question of {ds} is one the `countdown` checker reads "
                           f"(first: {ds}:1, '19 *2'); judge by the gold answer (leave --judge out) or by the "
                           "dataset's own task")


# ---------------------------------------------------------------- end to end on countdown-s


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ttcl.runtime.tasks.countdown import iter_jsonl, make_problems

    path = tmp_path_factory.mktemp("judge") / "cd.jsonl"
    path.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(8, [2, 3], seed=8080))))
    return path


@needs_model
def test_run_judges_by_the_checker(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path) -> None:
    trace = tmp_path / "t.jsonl"
    args = ["run", str(PROGRAM), "--dataset", str(data), "--set", "n=8", "--device", "cpu", "--json"]
    code, out, err = cli(capsys, *args, "--judge", "countdown", "--trace", str(trace))
    assert code == 0, err
    judged = json.loads(out)
    assert judged["header"]["judge"] == "countdown" and read_trace(trace).header.judge == "countdown"
    for r in judged["results"]:
        assert r["correct"] == passes(r["question"], r["answer"]), r
    assert judged["correct"] == sum(passes(r["question"], r["answer"]) for r in judged["results"])
    assert judged["graded"] == len(judged["results"]) == 8
    # the same run judged by gold equality: the same answers, right only where they equal the gold string
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    gold = json.loads(out)
    assert gold["header"]["judge"] == "gold"
    assert [r["answer"] for r in gold["results"]] == [r["answer"] for r in judged["results"]]
    assert all(r["correct"] == (r["answer"] == r["gold"]) for r in gold["results"])
    # the program reads answers with check("countdown")'s extractor: the gold is recorded as read
    golds = [json.loads(line)["answer"].rsplit("#### ", 1)[1] for line in data.read_text().splitlines()]
    assert [r["gold"] for r in gold["results"]] == [canonical(g) for g in golds]
    # every pooled candidate of the judged trace, judged by hand: some right expression is not the gold one
    pools = [n.outputs for recs in read_trace(trace).nodes.values() for n in recs if n.node_id == "main/pool"]
    questions = {r["item"]: (r["question"], r["gold"]) for r in judged["results"]}
    right_not_gold = [c["answer"] for i, recs in read_trace(trace).nodes.items() for n in recs
                      if n.node_id == "main/pool" for c in n.outputs
                      if passes(questions[i][0], c["answer"]) and c["answer"] != questions[i][1]]
    assert len(pools) == 8 and right_not_gold, "no right non-gold expression among 64 samples"
    # a trace is never resumed under another judge
    code, out, err = cli(capsys, *args, "--trace", str(trace), "--resume")
    assert code == 2 and "the judge differs from the one this trace was written with" in err and "'countdown', now 'gold'" in err


@needs_model
def test_a_trace_whose_answers_were_read_as_written_is_never_resumed(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path, data: Path) -> None:
    """A trace records how its answers were read; one written before countdown's answers were read
    canonically (its header has no `answers`) is not resumed, since its votes counted other answers,
    and `ttcl eval` runs it afresh instead of reusing it."""
    trace = tmp_path / "t.jsonl"
    args = ["run", str(PROGRAM), "--dataset", str(data), "--set", "n=4", "--device", "cpu", "--judge", "countdown"]
    code, _, err = cli(capsys, *args, "--trace", str(trace), "--limit", "2")
    assert code == 0, err
    assert read_trace(trace).header.answers == "countdown canonical 1"
    lines = trace.read_text().splitlines()
    old = json.loads(lines[0])
    del old["answers"]  # as a trace written before the canonical reading
    trace.write_text("\n".join([json.dumps(old), *lines[1:]]) + "\n")
    code, _, err = cli(capsys, *args, "--trace", str(trace), "--resume")
    assert code == 2 and "the way answers are read differs from the one this trace was written with" in err
    assert "(as written, before 2026-12-06, now 'countdown canonical 1')" in err


@needs_model
def test_eval_pool_pass_at_k_counts_every_right_expression(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           data: Path) -> None:
    traces = tmp_path / "traces"
    code, out, err = cli(capsys, "eval", str(PROGRAM), "--dataset", str(data), "--pool", "n=4", "--by", "steps",
                         "--judge", "countdown", "--traces", str(traces), "--device", "cpu", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["judge"] == "countdown" and "judged by check('countdown')" in rep["title"]
    assert rep["bins"] == [2, 3, "all"] and rep["pool"]["ks"] == [1, 2, 4]
    (pool_path,) = traces.glob("countdown-s__pool_n=4__*__seed0.jsonl")
    (greedy_path,) = traces.glob("countdown-s__greedy__*__seed0.jsonl")
    for path in (pool_path, greedy_path):
        assert read_trace(path).header.judge == "countdown"
    trace = read_trace(pool_path)
    some_right: dict[int, bool] = {}
    for idx, rec in trace.items.items():
        cands = next(n.outputs for n in trace.nodes[idx] if n.node_id == "main/pool")
        assert len(cands) == 4
        some_right[idx] = any(passes(rec.question, c["answer"]) for c in cands)
    steps = {idx: rec.fields["steps"] for idx, rec in trace.items.items()}
    for b in (2, 3, "all"):
        want = [some_right[i] for i in some_right if b == "all" or steps[i] == b]
        (row,) = [c for c in rep["curves"] if c["signal"] == "pass" and c["k"] == 4 and c["bin"] == b]
        assert row["accuracy"] == pytest.approx(sum(want) / len(want)), b
    # the greedy baseline is judged the same way
    g = read_trace(greedy_path)
    greedy_right = [passes(rec.question, rec.answer) for rec in g.items.values()]
    (row,) = [r for r in rep["greedy"] if r["bin"] == "all"]
    assert row["accuracy"] == pytest.approx(sum(greedy_right) / len(greedy_right))
    assert all(r["correct"] == passes(g.items[r["item"]].question, r["answer"])
               for r in rep["item_rows"]["countdown-s greedy"])


@needs_model
def test_a_users_checker_judges(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path,
                                monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)  # forget the names registered here
    (tmp_path / "judge_checks_i8.py").write_text(
        "def even(question, completion):\n    return 1.0 if len(completion) % 2 == 0 else 0.0\n\n"
        "def boom(question, completion):\n    raise ValueError('boom')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    args = ["run", str(PROGRAM), "--dataset", str(data), "--set", "n=2", "--device", "cpu", "--json"]
    code, out, err = cli(capsys, *args, "--verifier", "even=judge_checks_i8:even", "--judge", "even")
    assert code == 0, err
    res = json.loads(out)["results"]
    assert all(r["correct"] == (r["answer"] is not None and len("#### " + r["answer"]) % 2 == 0) for r in res)
    code, out, err = cli(capsys, *args, "--verifier", "boom=judge_checks_i8:boom", "--judge", "boom")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["graded"] == 0 and summary["accuracy"] is None
    assert all(r["correct"] is None and "ValueError: boom" in r["failures"]["judge"] for r in summary["results"])


# ---------------------------------------------------------------- a judge that raises: ungraded, never wrong

needs_arith = pytest.mark.skipif(not available("ttcl:arith-s"), reason="bundled arith-s not installed")
FAILING = ("def odd(question, completion):  # raises on odd-length questions, else the exact arith checker\n"
           "    if len(question) % 2:\n        raise RuntimeError('odd')\n"
           "    from ttcl.runtime.tasks import get_checker\n"
           "    return get_checker('arith').outcome(question, completion)\n\n"
           "def boom(question, completion):\n    raise RuntimeError('boom')\n")


@pytest.fixture
def failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A user's checker module that raises on some items (`odd`) or on all (`boom`), and 8 arith items
    of which 2 have an even-length question."""
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)
    (tmp_path / "judge_fail_q3.py").write_text(FAILING)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    ds = tmp_path / "a.jsonl"
    lines = list(iter_jsonl(make_problems(8, [1, 3], seed=77)))
    ds.write_text("".join(line + "\n" for line in lines))
    odd = [i for i, line in enumerate(lines) if len(json.loads(line)["question"]) % 2]
    assert 0 < len(odd) < len(lines)
    return {"ds": ds, "odd": odd, "n": len(lines), "root": tmp_path}


@needs_arith
def test_run_leaves_items_the_judge_failed_on_ungraded(capsys: pytest.CaptureFixture[str],
                                                       failing: dict[str, Any]) -> None:
    args = ["run", str(ROOT / "programs" / "self_consistency.ttc"), "--dataset", str(failing["ds"]), "--set", "n=2",
            "--device", "cpu"]
    code, out, err = cli(capsys, *args, "--verifier", "j=judge_fail_q3:odd", "--judge", "j", "--json")
    assert code == 0, err
    rep = json.loads(out)
    graded = [r for r in rep["results"] if r["correct"] is not None]
    assert [r["item"] for r in rep["results"] if r["correct"] is None] == failing["odd"]
    assert rep["graded"] == len(graded) == failing["n"] - len(failing["odd"]) and rep["judge_failed"] == len(failing["odd"])
    assert rep["accuracy"] == pytest.approx(sum(r["correct"] for r in graded) / len(graded))
    assert (f"judge `j` failed on {len(failing['odd'])} of {failing['n']} items (first: RuntimeError: odd on item "
            f"{failing['odd'][0]})") in err
    # --strict: an item the judge could not grade fails CI like a failed or stopped one
    code, out, err = cli(capsys, *args, "--verifier", "j=judge_fail_q3:odd", "--judge", "j", "--strict")
    assert code == 3 and f"and the judge failed on {len(failing['odd'])} (ungraded); exit 3" in err
    assert f"/{failing['n'] - len(failing['odd'])} graded, {len(failing['odd'])} ungraded)" in out
    # failing on every item: n/a for that reason, not "no gold answers"
    code, out, err = cli(capsys, *args, "--verifier", "b=judge_fail_q3:boom", "--judge", "b")
    assert code == 0 and "accuracy: n/a (judge failed on every item)" in out and "no gold answers" not in out
    assert f"judge `b` failed on {failing['n']} of {failing['n']} items (first: RuntimeError: boom on item 0)" in err


@needs_arith
def test_eval_sweep_counts_no_ungraded_item_as_wrong(capsys: pytest.CaptureFixture[str],
                                                     failing: dict[str, Any]) -> None:
    args = ["eval", str(ROOT / "programs" / "best_of_n.ttc"), "--dataset", str(failing["ds"]), "--sweep", "n=1,2",
            "--by", "steps", "--device", "cpu"]
    code, out, err = cli(capsys, *args, "--verifier", "j=judge_fail_q3:odd", "--judge", "j", "--json")
    assert code == 0, err
    rep = json.loads(out)
    n_graded = failing["n"] - len(failing["odd"])
    assert err.count(f"judge `j` failed on {len(failing['odd'])} of {failing['n']} items") == 2  # one per run
    acc = {}
    for row in rep["rows"]:
        right = {r["item"]: r["correct"] for r in row["item_rows"]}
        assert [i for i, c in right.items() if c is None] == failing["odd"]
        want = sum(bool(c) for c in right.values()) / n_graded
        assert row["graded"] == n_graded and row["items"] == failing["n"]
        assert row["accuracy"] == pytest.approx(want) and row["lo"] <= want <= row["hi"]
        (allbin,) = [b for b in row["bins"] if b["bin"] == "all"]
        assert allbin["accuracy"] == pytest.approx(want) and allbin["graded"] == n_graded
        for b in row["bins"]:
            assert b["accuracy"] is None or b["graded"] > 0
        acc[row["config"]["n"]] = want
    (d,) = rep["paired_differences"]
    assert d["items"] == n_graded and d["of_items"] == failing["n"]
    assert d["diff"] == pytest.approx(acc[2] - acc[1])
    code, out, err = cli(capsys, *args, "--verifier", "j=judge_fail_q3:odd", "--judge", "j")
    assert code == 0 and f"paired over {n_graded} graded items of {failing['n']}" in out
    # the judge fails on every item: no accuracy, no interval, no difference
    code, out, err = cli(capsys, *args, "--verifier", "b=judge_fail_q3:boom", "--judge", "b", "--json")
    assert code == 0, err
    rep = json.loads(out)
    for row in rep["rows"]:
        assert row["graded"] == 0 and row["accuracy"] is None and row["lo"] is None and row["hi"] is None
        assert all(b["accuracy"] is None for b in row["bins"])
    (d,) = rep["paired_differences"]
    assert d["items"] == 0 and d["diff"] is None and d["lo"] is None
    code, out, err = cli(capsys, *args, "--verifier", "b=judge_fail_q3:boom", "--judge", "b")
    assert "n/a: judge failed on every item" in out and "n/a (no item graded in both)" in out


@needs_arith
def test_eval_pool_leaves_ungraded_items_out_of_every_table(capsys: pytest.CaptureFixture[str],
                                                            failing: dict[str, Any]) -> None:
    traces = failing["root"] / "traces"
    args = ["eval", str(ROOT / "programs" / "pool.ttc"), "--dataset", str(failing["ds"]), "--pool", "n=2",
            "--by", "steps", "--allocate", "field", "--traces", str(traces), "--device", "cpu"]
    code, out, err = cli(capsys, *args, "--verifier", "j=judge_fail_q3:odd", "--judge", "j", "--json")
    assert code == 0, err
    rep = json.loads(out)
    graded = [i for i in range(failing["n"]) if i not in failing["odd"]]
    assert rep["ungraded_items"] == failing["odd"] and rep["graded"] == len(graded) and rep["items"] == failing["n"]
    assert f"--pool: judge `j` failed on {len(failing['odd'])} of {failing['n']} items' pools" in err
    # pass@2 by hand over the graded items only
    (path,) = traces.glob("arith-s__pool_n=2__*__seed0.jsonl")
    trace = read_trace(path)
    check = get_checker("arith")
    right = [any(check.outcome(trace.items[i].question, "#### " + c["answer"]) == 1.0 for c in cands
                 if c["answer"] is not None)
             for i in graded for cands in [next(n.outputs for n in trace.nodes[i] if n.node_id == "main/pool")]]
    (row,) = [c for c in rep["curves"] if c["signal"] == "pass" and c["k"] == 2 and c["bin"] == "all"]
    assert row["items"] == len(graded) and row["accuracy"] == pytest.approx(sum(right) / len(right))
    assert all(g["items"] <= len(graded) for g in rep["greedy"])
    assert all(d["items"] == len(graded) for d in rep["greedy_vs_pool"])
    assert rep["allocation"]["select_items"] + rep["allocation"]["report_items"] == len(graded)
    # every item ungraded: nothing to report, said as bad input
    code, out, err = cli(capsys, *args, "--verifier", "b=judge_fail_q3:boom", "--judge", "b")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"judge `b` failed on {failing['n']} of {failing['n']} items' pools" in err and "no item is graded" in err


def test_every_checker_reads_ascii_digits_only() -> None:
    """countdown refused `٤٩` (Arabic-Indic digits, which `\\d` and int() read) while arith and expr counted it as
    49 (QA pass): one rule for the three."""
    assert get_checker("arith").outcome("51 -2", "#### 49") == 1.0
    assert get_checker("arith").outcome("51 -2", "#### \u0664\u0669") == 0.0
    assert get_checker("expr").outcome("9+49; 28-21+40", "#### 58,47") == 1.0
    assert get_checker("expr").outcome("9+49; 28-21+40", "#### \u0665\u0668,47") == 0.0
    assert get_checker("countdown").outcome("10 5 6 -> 65", "#### 10*6+5") == 1.0
    assert get_checker("countdown").outcome("10 5 6 -> 65", "#### \u0661\u0660*6+5") == 0.0
