"""A model must fit where a program uses it, and `ttcl check` says so at the use (compiler/model_kinds.py).

The bundled models are real instances of each head: arith-s (a causal LM), arith-orm (a
SequenceClassification reward model), arith-prm (a TokenClassification PRM), countdown-check (a
causal LM that is a generative step checker) and expr-lik (a causal LM read by its likelihood).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcl.cli import main
from ttcl.compiler.diagnostics import SemanticDiagnosticError
from ttcl.compiler.pipeline import compile_program

SRC = ('ttcl 1\nmodel policy = "{policy}"\nverifier v = {verifier}\n\n'
       "strategy main(question: text[<=64]) -> answer {{\n"
       '    drafts = sample(policy, "{{question}}\\n", n = 2, max_tokens = 32)\n'
       "    return best(verify(v, drafts))\n}}\n")


def _error(policy: str, verifier: str, **kw: object):
    with pytest.raises(SemanticDiagnosticError) as err:
        compile_program(source=SRC.format(policy=policy, verifier=verifier), file="k.ttc", **kw)
    return err.value.diagnostics[0]


@pytest.mark.parametrize(("verifier", "says", "hint"), [
    ('prm("ttcl:arith-s")', "`prm(...)` needs a PRM, and `ttcl:arith-s` is a causal language model: its config.json says GPT2LMHeadModel",
     'verifier v = likelihood("ttcl:arith-s"), or a policy: model NAME = "ttcl:arith-s"'),
    ('reward("ttcl:arith-s")', "`reward(...)` needs a reward model, and `ttcl:arith-s` is a causal language model",
     'verifier v = likelihood("ttcl:arith-s"), or a policy: model NAME = "ttcl:arith-s"'),
    ('reward("ttcl:arith-prm")', "`ttcl:arith-prm` is a PRM (a TokenClassification head): its config.json says GPT2ForTokenClassification",
     'verifier v = prm("ttcl:arith-prm")'),
    ('prm("ttcl:arith-orm")', "`ttcl:arith-orm` is a reward model (a SequenceClassification head)",
     'verifier v = reward("ttcl:arith-orm")'),
    ('likelihood("ttcl:arith-orm")', "`likelihood(...)` needs a causal language model, and `ttcl:arith-orm` is a reward model",
     'verifier v = reward("ttcl:arith-orm")'),
    # a generative step checker is read as a PRM (QA pass: the hint said likelihood(...), which then ran)
    ('reward("ttcl:countdown-check")', "`ttcl:countdown-check` is a generative step checker, read as a PRM, not as a "
     'reward model (its ttcl_meta.json says "verifier": "generative")', 'verifier v = prm("ttcl:countdown-check")'),
    ('likelihood("ttcl:countdown-check")', "`ttcl:countdown-check` is a generative step checker, read as a PRM, not "
     "as a causal language model", 'verifier v = prm("ttcl:countdown-check")'),
])
def test_a_verifier_of_the_wrong_kind_is_refused_at_its_declaration(verifier: str, says: str, hint: str) -> None:
    d = _error("ttcl:arith-s", verifier)
    assert (d.span.line, d.span.column) == (3, 14), d
    assert says in d.message and hint in (d.hint or ""), (d.message, d.hint)


def test_a_judge_needs_a_causal_language_model() -> None:
    src = SRC.format(policy="ttcl:arith-s", verifier='judge(grader, "Is this right? {c.text}")').replace(
        "\nverifier", '\nmodel grader = "ttcl:arith-prm"\nverifier')
    with pytest.raises(SemanticDiagnosticError) as err:
        compile_program(source=src, file="k.ttc")
    d = err.value.diagnostics[0]
    assert d.span.line == 4 and "`judge` needs a causal language model, and model `grader` (`ttcl:arith-prm`) is a PRM" in d.message
    compile_program(source=src.replace("arith-prm", "arith-m"), file="k.ttc")


@pytest.mark.parametrize("verifier", ['reward("ttcl:arith-orm")', 'prm("ttcl:arith-prm")', 'prm("ttcl:countdown-check")',
                                      'likelihood("ttcl:expr-m")', 'likelihood("ttcl:arith-s")', 'check("arith")'])
def test_each_model_in_its_own_constructor_compiles(verifier: str) -> None:
    compile_program(source=SRC.format(policy="ttcl:arith-s", verifier=verifier), file="k.ttc")


def test_a_classifier_cannot_be_the_policy_not_even_through_an_override(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = _error("ttcl:arith-orm", 'check("arith")')
    assert (d.span.line, d.span.column) == (6, 21), d  # the model argument of `sample`
    assert "`sample` needs a causal language model, and model `policy` (`ttcl:arith-orm`) is a reward model" in d.message
    assert 'verifier NAME = reward("ttcl:arith-orm")' in (d.hint or "")
    prog = tmp_path / "ok.ttc"
    prog.write_text(SRC.format(policy="ttcl:arith-s", verifier='check("arith")'))
    for command in (["check", str(prog), "--model", "policy=ttcl:arith-prm"],
                    ["run", str(prog), "--input", "1 +2", "--device", "cpu", "--model", "policy=ttcl:arith-prm"]):
        code = main(command)
        out = capsys.readouterr()
        assert code == 2, out
        assert "ok.ttc:6:21: error: `sample` needs a causal language model" in out.err
        assert "bound by an override of `policy`" in out.err and "Traceback" not in out.out + out.err


def test_an_unknown_head_is_left_to_the_run(tmp_path: Path) -> None:
    """A directory whose config names no known head (here: none at all) compiles; the run decides."""
    import json
    import shutil

    from ttcl.zoo.registry import resolve_model

    d = tmp_path / "m"
    shutil.copytree(resolve_model("ttcl:arith-s"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("architectures", None)
    (d / "config.json").write_text(json.dumps(cfg))
    compile_program(source=SRC.format(policy=str(d), verifier=f'reward("{d}")'), file="k.ttc")


SERVER = "http://127.0.0.1:9/v1?model=m&local=ttcl:{twin}&engine={engine}"  # compiling contacts no server


@pytest.mark.parametrize(("verifier", "says"), [
    (f'prm("{SERVER.format(twin="arith-prm", engine="vllm")}")', "verifier `v`: a prm verifier on a server is not supported"),
    (f'likelihood("{SERVER.format(twin="expr-lik", engine="vllm")}")', "a likelihood verifier on a server is not supported"),
    ('judge(policy, "{{c.text}} ok?")', "a judge reads next-token log-probabilities, which transformers-serve does not"),
])
def test_a_verifier_a_server_cannot_run_is_refused_by_check(verifier: str, says: str) -> None:
    """`ttcl run` refused these at start; `ttcl check` passed them, exit 0 (QA pass)."""
    d = _error(SERVER.format(twin="arith-s", engine="transformers-serve"), verifier)
    assert says in d.message, d.message


def test_the_verifiers_a_server_runs_compile() -> None:
    for verifier in (f'reward("{SERVER.format(twin="arith-orm", engine="vllm")}")', 'judge(policy, "{{c.text}} ok?")'):
        compile_program(source=SRC.format(policy=SERVER.format(twin="arith-s", engine="vllm"), verifier=verifier),
                        file="k.ttc")


def test_a_served_id_that_is_no_directory_here_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`transformers serve ttcl/zoo/models/arith-m` (the README's line) names its model by that relative path;
    from another directory the check said "a model that is not on this machine" and not which (QA pass)."""
    from ttcl.errors import TtclError

    monkeypatch.chdir(tmp_path)
    src = SRC.format(policy="http://127.0.0.1:9/v1?model=ttcl/zoo/models/arith-m&engine=transformers-serve",
                     verifier='check("arith")').replace("verifier v", "budget per item { flops <= 1e9 }\nverifier v")
    with pytest.raises(TtclError) as e:
        compile_program(source=src, file="k.ttc")
    said = str(e.value)
    assert "serves `ttcl/zoo/models/arith-m`, which is not a model directory on this machine" in said, said
    assert "relative to the server's working directory" in said and "local=DIR" in said
