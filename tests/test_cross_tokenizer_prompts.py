"""Text one model writes, read in another model's `sample` prompt (issue 11): the reader's prompt bound
counts that text in the reader's tokens (through bytes), not the writer's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trust_models import write_bpe_policy

from ttcl.cli import main
from ttcl.compiler.budget import SPECIAL_TOKENS
from ttcl.compiler.pipeline import compile_program
from ttcl.compiler.tokenizer_facts import facts_of_dir
from ttcl.zoo.registry import resolve_model


def _program(writer: Path, reader: Path) -> str:
    return (f'ttcl 1\nmodel writer = "{writer}"\nmodel reader = "{reader}"\nbudget per item {{ calls <= 8 }}\n'
            "strategy main(question: text[<=4]) -> answer {\n"
            '    drafts = sample(writer, "{question}\\n", n = 2, max_tokens = 4, temperature = 1.0)\n'
            '    again = sample(reader, "{question}:{drafts}\\n", n = 1, max_tokens = 4, temperature = 0.0)\n'
            "    return vote(again)\n}\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cross")
    return {"root": root, "bpe": write_bpe_policy(root / "bpe", seed=3), "chars": Path(resolve_model("ttcl:arith-s"))}


def test_the_readers_bound_converts_the_writers_text(models: dict[str, Path]) -> None:
    facts = facts_of_dir(models["bpe"])
    assert facts is not None and facts.token_bytes is not None and facts.token_bytes > 1
    report = compile_program(source=_program(models["bpe"], models["chars"])).report
    rows = [r for r in report.rows if r.op == "sample"]
    reader = [r for r in rows if r.node.endswith("again")]
    assert len(reader) == 1
    # {question} (4) + ":" + the writer's 4 tokens of at most token_bytes bytes each + "\n", one special
    assert reader[0].bound["prompt_tokens"] == 4 + 1 + 4 * facts.token_bytes + 1 + SPECIAL_TOKENS


def test_a_run_is_never_refused_for_the_writers_text(capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    prog = models["root"] / "cross.ttc"
    prog.write_text(_program(models["bpe"], models["chars"]))
    ds = models["root"] / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i}+{i}", "answer": f"#### {2 * i}"}) + "\n" for i in range(4)))
    code = main(["run", str(prog), "--dataset", str(ds), "--device", "cpu", "--strict"])
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    assert code == 0, said
    assert "longer than its declared bound" not in said


def test_a_bpe_models_own_sampled_text_is_converted_in_its_own_prompt(models: dict[str, Path]) -> None:
    """Sampled BPE text need not re-encode to as few tokens as were sampled, even by the model that wrote it."""
    facts = facts_of_dir(models["bpe"])
    assert facts is not None and not facts.stable and facts.token_bytes is not None and facts.token_bytes > 1
    report = compile_program(source=_program(models["bpe"], models["bpe"])).report
    reader = [r for r in report.rows if r.op == "sample" and r.node.endswith("again")]
    assert len(reader) == 1
    # {question} (4) + ":" + 4 sampled tokens through bytes + "\n", one special; not 4 + 1 + 4 + 1 + 1
    assert reader[0].bound["prompt_tokens"] == 4 + 1 + 4 * facts.token_bytes + 1 + SPECIAL_TOKENS
