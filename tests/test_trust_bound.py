"""Issue 11 ("Trust"), the static bound: `check` bounds what `run` will do, and refuses what `run` would refuse.

- Reward and PRM passes are bounded with the verifier's own template and
  tokenizer (before: the candidate's prompt in the policy's tokens, so
  `check` said "fits" and `run` stopped every item at the verifier).
- What the runtime rejects (top_p = 0, an empty stop string, a sequence
  past the model's context, `{feedback}` with no feedback verifier, model
  options that contradict the config on disk) is a `check` error.
- End to end, with a byte-level BPE policy and the bundled character-level
  reward model: actual <= bound on every node, and no item stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trust_models import write_bpe_policy, write_orm_with_template

from ttcl.compiler import models
from ttcl.compiler.budget import SPECIAL_TOKENS
from ttcl.compiler.diagnostics import SemanticDiagnosticError
from ttcl.compiler.pipeline import compile_program
from ttcl.zoo.registry import MODELS_DIR

POLICY = 'model policy = "/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64, n_ctx = 160)\n'


def prog(body: str, decls: str = "", bound: int = 20) -> str:
    return ("ttcl 1\n" + POLICY + decls
            + f"strategy main(question: text[<={bound}]) -> answer {{\n{body}\n}}\n")


def errors(source: str) -> list[str]:
    with pytest.raises(SemanticDiagnosticError) as e:
        compile_program(source=source)
    return [d.message for d in e.value.diagnostics]


# ---------------------------------------------------------------- check refuses what run refuses


def test_top_p_zero_is_an_error() -> None:
    assert errors(prog("    return vote(sample(policy, question, n = 2, max_tokens = 5, top_p = 0.0))")) == [
        "`top_p` of `sample` is 0, outside (0..1]"]
    assert errors(prog("    return vote(sample(policy, question, n = 2, max_tokens = 5, top_p = 1.01))")) == [
        "`top_p` of `sample` is 1.01, outside (0..1]"]


def test_an_input_that_shadows_a_model_is_not_called_a_model() -> None:
    """Its use as a model says what it is (the message said "`policy` is a model" and suggested `policy`)."""
    src = ("ttcl 1\n" + POLICY + "strategy helper(policy: text) -> answer {\n"
           "    return vote(sample(policy, policy, n = 1, max_tokens = 8))\n}\n"
           "strategy main(question: text[<=20]) -> answer {\n    return helper(question)\n}\n")
    with pytest.raises(SemanticDiagnosticError) as e:
        compile_program(source=src)
    assert [d.message for d in e.value.diagnostics] == [
        "input `policy` shadows a model of the same name",
        "`model` of `sample` must be a model, but `policy` is a text value here (an input or variable)"]
    assert e.value.diagnostics[1].hint is None


@pytest.mark.parametrize("stop", ['""', '["x", ""]'])
def test_an_empty_stop_string_is_an_error(stop: str) -> None:
    assert errors(prog(f"    return vote(sample(policy, question, n = 2, max_tokens = 5, stop = {stop}))")) == [
        "`stop` of `sample`: a stop string must not be empty"]


def test_an_empty_stop_param_is_an_error() -> None:
    src = prog("    return vote(sample(policy, question, n = 2, max_tokens = 5, stop = s))", 'param s: text = "x"\n')
    assert compile_program(source=src).report.verdict == "no budget"
    with pytest.raises(SemanticDiagnosticError, match="a stop string must not be empty"):
        compile_program(source=src, overrides={"s": ""})


def test_max_tokens_past_the_context_is_an_error() -> None:
    assert errors(prog("    return vote(sample(policy, question, n = 2, max_tokens = 5000))")) == [
        "main/return.sample (sample) may need 5,021 tokens of context; model `policy` has 160"]


def test_an_input_bound_past_the_context_is_an_error() -> None:
    assert errors(prog("    return vote(sample(policy, question, n = 2, max_tokens = 5))", bound=100_000)) == [
        "main/return.sample (sample) may need 100,006 tokens of context; model `policy` has 160"]


def test_feedback_without_a_feedback_verifier_is_an_error() -> None:
    body = ('    d = sample(policy, question, n = 2, max_tokens = 5)\n'
            '    return vote(revise(policy, d, prompt = "{question} {c.text} score: {feedback}", max_tokens = 5))')
    assert errors(prog(body)) == ["`{feedback}` in a revise prompt needs a feedback verifier"]


@pytest.mark.parametrize(("option", "have"), [("params = 1G", "25,472"), ("n_ctx = 4096", "160"), ("n_layer = 12", "2")])
def test_model_options_that_contradict_the_config_on_disk_are_errors(option: str, have: str) -> None:
    models.clear_cache()
    src = ("ttcl 1\n" + f'model policy = "ttcl:arith-s" ({option})\n'
           "strategy main(question: text[<=20]) -> answer {\n    return vote(sample(policy, question, n = 2, max_tokens = 5))\n}\n")
    (message,) = errors(src)
    assert message.startswith(f"model `policy`: model option `{option.split(' = ')[0]} = ")
    assert message.endswith(f"contradicts `ttcl:arith-s` on disk, whose config gives {have}")


def test_model_options_that_agree_with_disk_are_fine() -> None:
    src = ("ttcl 1\n" + 'model policy = "ttcl:arith-s" (params = 25472, n_ctx = 160)\n'
           "strategy main(question: text[<=20]) -> answer {\n    return vote(sample(policy, question, n = 2, max_tokens = 5))\n}\n")
    assert compile_program(source=src).report.verdict == "no budget"


# ---------------------------------------------------------------- the verifier's own template and tokenizer


def _verify_row(source: str) -> dict[str, float]:
    report = compile_program(source=source).report
    (row,) = [r for r in report.rows if r.op == "verify"]
    return row.bound


def test_a_reward_model_is_bounded_with_its_own_template(tmp_path: Path) -> None:
    template = "Question: {question}\nProposed solution: {completion}\nIs it correct?"
    orm = write_orm_with_template(MODELS_DIR / "arith-orm", tmp_path / "orm", template)
    src = ("ttcl 1\nmodel policy = \"ttcl:arith-s\"\n" + f'verifier orm = reward("{orm}")\n'
           "strategy main(question: text[<=10]) -> answer {\n"
           '    d = sample(policy, "{question}\\n", n = 4, max_tokens = 20)\n'
           "    return vote(verify(orm, d), weight = score)\n}\n")
    literal = len("Question: ") + len("\nProposed solution: ") + len("\nIs it correct?")
    assert _verify_row(src)["prompt_tokens"] == 4 * (literal + 10 + 20 + SPECIAL_TOKENS)


def test_a_bpe_policy_with_a_character_level_verifier_converts_lengths(tmp_path: Path) -> None:
    from ttcl.compiler.tokenizer_facts import facts_of_dir

    policy = write_bpe_policy(tmp_path / "bpe")
    facts = facts_of_dir(policy)
    assert facts is not None and facts.token_bytes is not None and facts.token_bytes > 1
    src = (f'ttcl 1\nmodel policy = "{policy}"\nverifier orm = reward("ttcl:arith-orm")\n'
           "strategy main(question: text[<=3]) -> answer {\n"
           '    d = sample(policy, "{question}\\n", n = 4, max_tokens = 3)\n'
           "    return vote(verify(orm, d), weight = score)\n}\n")
    per_item = 3 * facts.token_bytes + 1 + 3 * facts.token_bytes + SPECIAL_TOKENS
    assert _verify_row(src)["prompt_tokens"] == 4 * per_item


def test_a_verifier_without_a_tokenizer_is_said_to_be_unknown(tmp_path: Path) -> None:
    orm = tmp_path / "orm"
    orm.mkdir()
    (orm / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 8, "n_positions": 4096}))
    policy = write_bpe_policy(tmp_path / "bpe")
    src = (f'ttcl 1\nmodel policy = "{policy}"\nverifier orm = reward("{orm}")\n'
           "strategy main(question: text[<=8]) -> answer {\n"
           '    d = sample(policy, "{question}\\n", n = 4, max_tokens = 8)\n'
           "    return vote(verify(orm, d), weight = score)\n}\n")
    (warning,) = compile_program(source=src).report.warnings
    assert "verifier `orm`: cannot relate its tokenizer to the one that wrote the candidates" in warning


def test_shipped_weighted_best_of_n_bounds_the_orm_by_its_template() -> None:
    report = compile_program(Path(__file__).resolve().parent.parent / "programs" / "weighted_best_of_n.ttc").report
    (row,) = [r for r in report.rows if r.op == "verify"]
    # `{question}\n{completion}`: 40 + 1 + 112, one special; the old bound read the candidate's prompt instead
    assert row.bound["prompt_tokens"] == 16 * (40 + 1 + 112 + SPECIAL_TOKENS)


# ---------------------------------------------------------------- end to end: actual <= bound, nothing stopped


def _run(source: Path, dataset: Path) -> dict:
    from ttcl.api import run

    result = run(source, dataset=dataset, device="cpu", seed=3)
    return result.summary.model_dump()


@pytest.mark.parametrize("kind", ["template", "bpe", "likelihood"])
def test_run_never_stops_an_item_that_check_said_fits(tmp_path: Path, kind: str) -> None:
    if kind == "template":
        orm = write_orm_with_template(MODELS_DIR / "arith-orm", tmp_path / "orm", "Question: {question}\nSolution: {completion}\nOK?")
        policy, bound, max_tokens = "ttcl:arith-s", 16, 40
    else:  # a BPE policy's text scored by a character-level model: lengths converted across tokenizers
        orm, policy, bound, max_tokens = "ttcl:arith-orm", str(write_bpe_policy(tmp_path / "bpe")), 3, 3
    scorer = 'likelihood("ttcl:arith-s")' if kind == "likelihood" else f'reward("{orm}")'
    path = tmp_path / "p.ttc"
    path.write_text(f'ttcl 1\nmodel policy = "{policy}"\nverifier orm = {scorer}\n'
                    "budget per item { calls <= 8 }\n"
                    f"strategy main(question: text[<={bound}]) -> answer {{\n"
                    f'    d = sample(policy, "{{question}}\\n", n = 4, max_tokens = {max_tokens}, temperature = 1.0)\n'
                    "    return vote(verify(orm, d), weight = score)\n}\n")
    assert compile_program(path).report.verdict == "fits"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+{i + 1}", "answer": str(2 * i + 1)}) + "\n" for i in range(4)))
    summary = _run(path, data)
    assert summary["stopped"] == 0 and summary["failed"] == 0
    for row in summary["rows"]:
        for unit in ("calls", "prompt_tokens", "gen_tokens", "flops"):
            assert row["actual_max"][unit] <= row["bound"][unit], (row["node"], unit)
