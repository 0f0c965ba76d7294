"""`likelihood(MODEL)`: any causal LM scores a candidate by its probability of the candidate's lines
(runtime/verifier_gen.py, LikelihoodVerifier). Tested with the shipped expr policies on hand-made
right, wrong and malformed solutions, through the runtime and the language, with the compiled
bound. How well it ranks is measured by bench/testbed_gates.py --likelihood, not claimed here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.tasks import expr as E  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR  # noqa: E402

SAME_SIZE = "expr-s-narrow8-xlong-lik"  # the shipped likelihood verifier of expr-s's size

pytestmark = pytest.mark.skipif(not (MODELS_DIR / "expr-m" / "ttcl_meta.json").is_file(), reason="expr-m not shipped")
Q = "(12+7)*3-(30-4); 5*8"
RIGHT = "12+7=19\n30-4=26\n19*3=57\n57-26=31\n5*8=40\n#### 31,40"
# the arithmetic of every line is right, but 7*3 is not a reduction of this question (precedence):
# expr-s's commonest first error (ttcl/zoo/README.md)
ILLEGAL = "7*3=21\n12+21=33\n30-4=26\n33-26=7\n5*8=40\n#### 7,40"
WRONG_VALUE = "12+7=19\n30-4=26\n19*3=56\n56-26=30\n5*8=40\n#### 30,40"


def _verifier(ref: str = "ttcl:expr-m"):
    from ttcl.runtime.verifier_gen import LikelihoodVerifier

    return LikelihoodVerifier(ref, device="cpu", dtype="float32")


def test_the_hand_made_solutions_are_what_they_say() -> None:
    c = E.ExprChecker()
    assert c.strict(Q, RIGHT)
    assert c.outcome(Q, ILLEGAL) == 0.0 and c.first_error(Q, ILLEGAL) == 0
    assert c.outcome(Q, WRONG_VALUE) == 0.0 and c.first_error(Q, WRONG_VALUE) == 2


def test_a_larger_policy_scores_the_right_solution_above_wrong_ones() -> None:
    scores, steps, usage = _verifier().score_steps([(Q, RIGHT), (Q, ILLEGAL), (Q, WRONG_VALUE)])
    assert scores[0] > 10 * scores[1] and scores[0] > 10 * scores[2], scores
    for s in steps:  # cumulative: one score per line, never rising, the last one the score
        assert len(s) == 6 and all(0.0 <= b <= a <= 1.0 for a, b in zip(s, s[1:], strict=False))
    assert scores == [s[-1] for s in steps]
    # where it falls: the illegal first line, and the wrong product on line 3
    assert steps[1][0] < 0.1 * steps[0][0]
    assert steps[2][2] < 0.1 * steps[2][1] and steps[2][1] == pytest.approx(steps[0][1], rel=1e-5)
    assert usage.calls == 3 and usage.flops > 0


def test_it_is_the_models_own_probability_of_the_text() -> None:
    """The score of a whole solution is the product of the model's next-token probabilities over
    every token after the prompt (the lines joined by newlines, none after the last), computed here by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(MODELS_DIR / "expr-s")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    head = tok(Q + "\n", add_special_tokens=False)["input_ids"]
    body = tok(RIGHT, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + body])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    by_hand = sum(float(lp[p - 1, ids[0, p]]) for p in range(len(head), ids.shape[1]))
    (score,), _ = _verifier("ttcl:expr-s").score([(Q, RIGHT)])
    assert math.log(score) == pytest.approx(by_hand, abs=1e-4)


def test_partial_and_malformed_completions_score_without_raising() -> None:
    v = _verifier()
    items = [(Q, "12+7=19"), (Q, ""), (Q, "garbage\n\n####"), (Q, "٣+٤=٧"), ("not a question", RIGHT)]
    scores, steps, _ = v.score_steps(items)
    assert len(steps[0]) == 1 and steps[1] == [] and scores[1] == 0.0
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores)


def test_a_model_that_is_not_a_causal_lm_is_a_clear_error() -> None:
    with pytest.raises(TtclRuntimeError, match="needs a causal language model.*GPT2ForTokenClassification"):
        _verifier("ttcl:expr-prm")


def test_a_program_ranks_with_it_within_the_compiled_bound(tmp_path: Path) -> None:
    """`likelihood("ttcl:expr-m")` in a program: it compiles, runs, and every node's spend per item
    stays within `ttcl check`'s bound (one forward pass of expr-m per candidate)."""
    import ttcl
    from ttcl.compiler.pipeline import compile_program

    src = ('ttcl 1\nmodel policy = "ttcl:expr-s"\nverifier lik = likelihood("ttcl:expr-m")\n'
           "budget per item {\n    flops <= 1e10\n}\n"
           "strategy main(question: text[<=48]) -> answer {\n"
           '    pool = sample(policy, "{question}\\n", n = 4, max_tokens = 100, temperature = 0.7)\n'
           "    return vote(verify(lik, pool), weight = score)\n}\n")
    prog = tmp_path / "rerank.ttc"
    prog.write_text(src)
    rows = compile_program(source=src, file="t.ttc").report.rows
    verify_row = next(r for r in rows if r.op == "verify")
    assert verify_row.bound["calls"] == 4 and verify_row.bound["flops"] > 0
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line + "\n" for line in E.iter_jsonl(E.make_problems(4, 4, seed=3))))
    out = ttcl.run(prog, dataset=data, judge="expr", device="cpu")
    s = out.summary
    assert s.items == 4 and s.failed == 0 and len(out.answers) == 4
    for row in s.rows:
        for unit, spent in row.actual_max.items():
            assert spent <= row.bound.get(unit, math.inf) + 1e-6, (row.node, unit)


def test_a_bad_likelihood_declaration_names_the_line() -> None:
    from ttcl.compiler.pipeline import compile_program
    from ttcl.errors import TtclError

    src = ('ttcl 1\nmodel policy = "ttcl:expr-s"\nverifier lik = likelihood()\n'
           "strategy main(question: text[<=48]) -> answer {\n"
           '    pool = sample(policy, "{question}\\n", n = 4, max_tokens = 100)\n'
           "    return best(verify(lik, pool))\n}\n")
    with pytest.raises(TtclError) as e:
        compile_program(source=src, file="t.ttc")
    assert "t.ttc:3" in str(e.value) and "likelihood(model)" in str(e.value)


def _run_library_program(name: str, items: int, seed: int, tmp_path: Path, capsys) -> list[dict]:
    """`ttcl run programs/NAME.ttc --json` on `items` expr questions of 2 operations at n = 4: every item
    answers a tuple judged by the checker, and no node spends more than its compiled bound. Its verify rows."""
    from ttcl.cli import main

    ds = tmp_path / "e.jsonl"
    ds.write_text("".join(line + "\n" for line in E.iter_jsonl(E.make_problems(items, 2, seed=seed))))
    prog = Path(__file__).resolve().parents[1] / "programs" / f"{name}.ttc"
    code = main(["run", str(prog), "--dataset", str(ds), "--set", "n=4", "--judge", "expr", "--device", "cpu",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["items"] == items and out["failed"] == 0
    assert all("," in r["answer"] for r in out["results"])
    for r in out["rows"]:
        for unit, spent in r["actual_max"].items():
            assert spent <= r["bound"].get(unit, math.inf) + 1e-6, (r["node"], unit)
    return [r for r in out["rows"] if r["op"] == "verify"]


def test_the_library_rerank_program_scores_every_candidate_with_each_verifier(tmp_path: Path, capsys) -> None:
    """programs/expr_rerank.ttc: expr-s's pool, scored by expr-m's, expr-s's and expr-s-narrow8-xlong-lik's likelihoods,
    expr-prm and the exact checker; the answer is the likelihood-weighted vote, a tuple judged by the checker."""
    verify = _run_library_program("expr_rerank", 3, 31, tmp_path, capsys)
    assert len(verify) == 5 and all(r["ran"] == 3 for r in verify)


@pytest.mark.skipif(not (MODELS_DIR / SAME_SIZE / "ttcl_meta.json").is_file(), reason=f"{SAME_SIZE} not shipped")
def test_the_library_weighted_program_votes_with_the_same_size_verifier(tmp_path: Path, capsys) -> None:
    """programs/expr_weighted.ttc: expr-s's samples, each scored once by the verifier of its size; the
    answer is the likelihood-weighted vote, a tuple judged by the checker, within the compiled bound."""
    verify = _run_library_program("expr_weighted", 4, 37, tmp_path, capsys)
    assert len(verify) == 1 and verify[0]["ran"] == 4


def test_likelihood_on_a_server_is_refused_before_anything_runs(tmp_path: Path, capfd) -> None:
    from ttcl.cli import main

    prog = tmp_path / "ep.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:expr-s"\nverifier lik = likelihood("http://127.0.0.1:9/v1?model=x")\n'
                    "strategy main(question: text[<=48]) -> answer {\n"
                    '    pool = sample(policy, "{question}\\n", n = 2, max_tokens = 100)\n'
                    "    return best(verify(lik, pool))\n}\n")
    code = main(["run", str(prog), "--input", "1+2; 3*4", "--device", "cpu"])
    err = capfd.readouterr().err
    assert code == 2 and "a likelihood verifier on a server is not supported" in err and "Traceback" not in err


def test_the_trained_likelihood_score_is_what_the_runtime_reads() -> None:
    """A `lik` verifier is trained on `_lik_scores` (ttcl/zoo/verifiers.py) and read by
    `likelihood(...)`: both must be the same number, or the training ranks something else."""
    from transformers import AutoModelForCausalLM

    from ttcl.zoo.verifiers import _lik_batch, _lik_scores

    items = [(Q, RIGHT), (Q, ILLEGAL), (Q, WRONG_VALUE), (Q, "  12+7=19\n\n30-4=26  \n")]
    names = ["expr-s"] + [n for n in ("expr-lik", SAME_SIZE) if (MODELS_DIR / n / "ttcl_meta.json").is_file()]
    for name in names:  # expr-s's tokenizer pads on the left, expr-lik's (a trained verifier's) on the right
        runtime, _, _ = _verifier(f"ttcl:{name}").score_steps(items)
        model = AutoModelForCausalLM.from_pretrained(str(MODELS_DIR / name)).eval()
        rows = [{"question": q, "completion": c} for q, c in items]
        with torch.no_grad():
            trained = _lik_scores(model, *_lik_batch(rows))[0].tolist()
        assert [math.log(s) for s in runtime] == pytest.approx(trained, abs=1e-3), name
        assert trained[0] > trained[1] and trained[0] > trained[2], name


@pytest.mark.skipif(not (MODELS_DIR / SAME_SIZE / "ttcl_meta.json").is_file(), reason=f"{SAME_SIZE} not shipped")
def test_the_same_size_verifier_reads_expr_s_lines_as_a_likelihood_verifier() -> None:
    """`likelihood("ttcl:expr-s-narrow8-xlong-lik")`: an LM of expr-s's size on 8 layers, trained on the
    policies' samples, the verifier of the policy's size that ranks expr-s's samples on expr
    (ttcl/zoo/README.md): it loads offline with its init model shipped beside it, is no larger than the
    policy, and gives a right solution far more probability than the same lines with an illegal step or
    a wrong value."""
    meta = json.loads((MODELS_DIR / SAME_SIZE / "ttcl_meta.json").read_text())
    small = json.loads((MODELS_DIR / "expr-s" / "ttcl_meta.json").read_text())
    assert meta["kind"] == "lik" and meta["n_layer"] == 8 and meta["params_total"] <= small["params_total"]
    assert (MODELS_DIR / meta["init_from"] / "ttcl_meta.json").is_file()  # rebuildable with --shipped-deps
    scores, _, _ = _verifier(f"ttcl:{SAME_SIZE}").score_steps([(Q, RIGHT), (Q, ILLEGAL), (Q, WRONG_VALUE)])
    assert scores[0] > 10 * scores[1] and scores[0] > 10 * scores[2], scores


@pytest.mark.skipif(not (MODELS_DIR / "expr-lik" / "ttcl_meta.json").is_file(), reason="expr-lik not shipped")
def test_the_shipped_likelihood_verifier_ranks_through_the_language_and_refuses_prm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """expr-lik loads offline as a causal LM of expr-s's size, `likelihood("ttcl:expr-lik")` in a
    program scores and ranks the hand-made solutions, and `prm(...)` or `reward(...)` on it is refused
    when the program is compiled (`ttcl check`, exit 2, at the declaration), naming the fix."""
    import ttcl
    from ttcl.cli import main
    from ttcl.compiler.diagnostics import SemanticDiagnosticError
    from ttcl.compiler.pipeline import compile_program

    meta = json.loads((MODELS_DIR / "expr-lik" / "ttcl_meta.json").read_text())
    policy = json.loads((MODELS_DIR / "expr-s" / "ttcl_meta.json").read_text())
    assert meta["kind"] == "lik" and meta["verifier"] == "likelihood"
    assert meta["params_total"] <= policy["params_total"]  # no larger than the policy it scores
    scores, steps, _ = _verifier("ttcl:expr-lik").score_steps([(Q, RIGHT), (Q, ILLEGAL), (Q, WRONG_VALUE)])
    assert scores[0] > 10 * scores[1] and scores[0] > 10 * scores[2], scores
    src = ('ttcl 1\nmodel policy = "ttcl:expr-s"\nverifier v = {decl}\n'
           "budget per item {{\n    flops <= 1e10\n}}\n"
           "strategy main(question: text[<=48]) -> answer {{\n"
           '    pool = sample(policy, "{{question}}\\n", n = 4, max_tokens = 100, temperature = 0.7)\n'
           "    return vote(verify(v, pool), weight = score)\n}}\n")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line + "\n" for line in E.iter_jsonl(E.make_problems(2, 3, seed=3))))
    prog = tmp_path / "lik.ttc"
    prog.write_text(src.format(decl='likelihood("ttcl:expr-lik")'))
    out = ttcl.run(prog, dataset=data, judge="expr", device="cpu")
    assert out.summary.items == 2 and out.summary.failed == 0
    for ctor, what in (("prm", "a PRM"), ("reward", "a reward model")):  # refused when compiled, with the position
        with pytest.raises(SemanticDiagnosticError) as err:
            compile_program(source=src.format(decl=f'{ctor}("ttcl:expr-lik")'), file="t.ttc")
        d = err.value.diagnostics[0]
        assert (d.span.line, d.span.column) == (3, 14), d
        assert f"read by its likelihood, not as {what}" in d.message
        assert d.hint == 'verifier v = likelihood("ttcl:expr-lik")'
    prog.write_text(src.format(decl='prm("ttcl:expr-lik")'))
    for command in (["check", str(prog)], ["run", str(prog), "--input", "2+3; 4*5", "--device", "cpu"]):
        code = main(command)
        out = capsys.readouterr()
        assert code == 2 and "lik.ttc:3:14: error" in out.err and "Traceback" not in out.out + out.err, out
    # the run-time guard, for a scorer built from a DAG that did not come through the checks
    from ttcl.compiler.dag import ModelRef, VerifierRef
    from ttcl.runtime.verifier_adapter import model_scorer

    span = err.value.diagnostics[0].span
    ref = VerifierRef(name="v", kind="prm", span=span, agg="last",
                      model=ModelRef(name="v", ref="ttcl:expr-lik", module="<t>", span=span))
    with pytest.raises(TtclRuntimeError, match=r"read by its likelihood.*\n  hint: likelihood\(\"ttcl:expr-lik\"\)"):
        model_scorer(ref, {}, device="cpu", dtype="float32")


def test_testbed_gates_pairs_two_verifiers_on_the_same_samples(tmp_path: Path) -> None:
    """bench/testbed_gates.py prints the middle bins' within-question AUROC with an interval and
    keeps it per question in --json; --pair subtracts two runs over their common questions, and
    refuses runs on different samples or files it cannot read (exit 2)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "testbed_gates.py"
    runs = {}
    for name, ref in (("self", "ttcl:expr-s"), ("m", "ttcl:expr-m")):
        out = tmp_path / f"{name}.json"
        p = subprocess.run([sys.executable, str(script), "--policy", "ttcl:expr-s", "--verifier", ref, "--likelihood",
                            "--per-level", "6", "--k", "4", "--seed", "555", "--guess-reference", "500",
                            "--json", str(out)],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert "within-question AUROC at the middle difficulties (4..6)" in p.stdout
        runs[name] = json.loads(out.read_text())
    mid = runs["m"]["within_auroc_middle"]
    assert mid["questions"] == len(mid["by_question"]) and all(0.0 <= v <= 1.0 for v in mid["by_question"].values())
    p = subprocess.run([sys.executable, str(script), "--pair", str(tmp_path / "self.json"), str(tmp_path / "m.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    common = set(mid["by_question"]) & set(runs["self"]["within_auroc_middle"]["by_question"])
    diff = sum(mid["by_question"][q] - runs["self"]["within_auroc_middle"]["by_question"][q] for q in common)
    if common:
        assert f"{diff / len(common):+.3f} [" in p.stdout and f"over {len(common)} questions" in p.stdout
    other = dict(runs["m"], seed=777001)
    (tmp_path / "other.json").write_text(json.dumps(other))
    p = subprocess.run([sys.executable, str(script), "--pair", str(tmp_path / "self.json"), str(tmp_path / "other.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "differ in seed" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, str(script), "--pair", str(tmp_path / "self.json"), str(tmp_path / "none.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "none.json" in p.stderr and "Traceback" not in p.stderr
