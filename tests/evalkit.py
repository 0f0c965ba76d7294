"""What the `ttcl eval` tests share: a small arith-s program with an exact checker, its dataset (8 items of 1
and 3 steps, seed 77) and a CLI call that returns (exit code, stdout, stderr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcl.cli import main

PROG = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier exact = check("arith")
param n: int = 4 in 1..64
param temperature: float = 1.0 in 0.0..2.0
budget per item { calls <= 64; gen_tokens <= 4k }
strategy main(question: text[<=40]) -> answer {
    drafts = sample(policy, "{question}\\n", n = n, max_tokens = 60, temperature = temperature)
    checked = verify(exact, drafts)
    return vote(drafts)
}
"""


def eval_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The program and dataset, written once per test module (its `setup` fixture)."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    root = tmp_path_factory.mktemp("eval")
    prog = root / "p.ttc"
    prog.write_text(PROG)
    ds = root / "d.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(8, [1, 3], seed=77))))
    return {"root": root, "prog": prog, "ds": ds}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
