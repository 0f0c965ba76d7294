"""In-context revision: a `revise` whose prompt restates the draft right after the draft's own
prompt (the default `{c.prompt}{c.text}\\n`, or a card template such as expr-revise-inline's
`{question}\\n{attempt}\\nfix:\\n`) is served from the draft's KV cache when the same model wrote
the draft, so the ledger charges only the marker and the revision. The compiler's bound stays the
worst case (every prompt prefilled from scratch). Real shipped models, no mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import ttcl  # noqa: E402
from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.runtime.jobs import in_context  # noqa: E402

SOURCE = r'''ttcl 1
model drafter = "{drafter}"
model reviser = "{reviser}"
budget per item {{
    calls <= 8
    flops <= 1e9
}}
strategy main(question: text[<=24]) -> answer {{
    draft = sample(drafter, "{{question}}\n", n = 2, max_tokens = 36, temperature = 0.7)
    fixed = revise(reviser, draft, max_tokens = 36, temperature = 0.0{rounds})
    return vote(fixed)
}}
'''


def _program(tmp_path: Path, drafter: str, reviser: str, rounds: int = 1) -> Path:
    path = tmp_path / "rev.ttc"
    path.write_text(SOURCE.format(drafter=drafter, reviser=reviser,
                                  rounds=f", rounds = {rounds}" if rounds > 1 else ""))
    return path


def test_only_what_the_same_model_continues_keeps_its_cache(tmp_path: Path) -> None:
    same = compile_program(_program(tmp_path, "ttcl:expr-s", "ttcl:expr-s")).dag
    assert in_context(same.nodes.values()) == {"main/draft"}
    other = compile_program(_program(tmp_path, "ttcl:expr-s", "ttcl:expr-m")).dag
    assert in_context(other.nodes.values()) == frozenset()
    rounds = compile_program(_program(tmp_path, "ttcl:expr-s", "ttcl:expr-m", rounds=2)).dag
    assert in_context(rounds.nodes.values()) == {"main/fixed"}  # round 2 continues round 1's text


def _revise_row(tmp_path: Path, drafter: str, reviser: str):
    res = ttcl.run(_program(tmp_path, drafter, reviser), inputs=["(12+7)*3; 5*8", "40-3*9"], device="cpu", seed=3)
    (row,) = [r for r in res.summary.rows if r.op == "revise"]
    return row, res


def test_a_revision_by_the_drafting_model_is_charged_only_what_follows_the_draft(tmp_path: Path) -> None:
    row, res = _revise_row(tmp_path, "ttcl:expr-s", "ttcl:expr-s")
    # per candidate: the "\n" after the draft, and the draft's last token when it ended at max_tokens
    assert 0 < row.actual_max["prompt_tokens"] <= 2 * 2, row.actual_max
    # the bound still prefills every revision prompt from scratch: sound whatever the cache holds
    assert row.bound["prompt_tokens"] >= 2 * len("40-3*9\n\n")
    assert row.actual_max["flops"] <= row.bound["flops"]
    other, _ = _revise_row(tmp_path, "ttcl:expr-s", "ttcl:expr-m")
    # another model cannot reuse the draft's cache: the whole prompt, draft included, is prefilled
    assert other.actual_max["prompt_tokens"] > 2 * len("40-3*9\n\n")
    assert row.actual_mean["flops"] < other.actual_mean["flops"]
