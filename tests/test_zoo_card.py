"""`ttcl zoo card NAME`: a card's tables evaluated again from the shipped weights, compared with the card."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shipped import available

from ttcl.zoo.recard import compare, table_rows
from ttcl.zoo.registry import MODELS_DIR

CARD = """# m

| field | value |
|---|---|
| parameters | 1 |

| steps | greedy |
|---|---|
| 2 | 42.0 [32.8, 51.8] |
| 3 | 10.0 [5.5, 17.4] |
"""


def test_a_differing_row_is_judged_by_the_cards_intervals() -> None:
    from ttcl.zoo.recard import outside_intervals

    old = "| 3 | 10.0 [5.5, 17.4] | 11.0 [6.2, 18.6] | 5.8 |"
    assert outside_intervals(old, "| 3 | 14.0 [8.5, 22.4] | 11.0 [6.2, 18.6] | 5.8 |") == []
    assert outside_intervals(old, "| 3 | 19.0 [12.0, 27.0] | 11.0 [6.2, 18.6] | 5.8 |") == ["col 2: 10.0 -> 19.0 [5.5, 17.4]"]
    assert outside_intervals(old, "| 3 | 10.0 [5.5, 17.4] | 11.0 [6.2, 18.6] | 6.1 |") is None  # no interval there


def test_table_rows_and_compare() -> None:
    assert table_rows(CARD) == ["| field | value |", "| parameters | 1 |", "| steps | greedy |",
                                "| 2 | 42.0 [32.8, 51.8] |", "| 3 | 10.0 [5.5, 17.4] |"]
    assert compare(CARD, CARD + "\nprose changed\n").identical
    c = compare(CARD, CARD.replace("10.0 [5.5, 17.4]", "11.0 [6.2, 18.6]"))
    assert not c.identical and c.rows == 5
    assert c.differ == [("| 3 | 10.0 [5.5, 17.4] |", "| 3 | 11.0 [6.2, 18.6] |")]
    shorter = compare(CARD, CARD.replace("| 3 | 10.0 [5.5, 17.4] |\n", ""))
    assert shorter.missing == ["| 3 | 10.0 [5.5, 17.4] |"] and not shorter.differ


def test_a_card_passes_only_when_every_differing_row_lies_within_its_intervals() -> None:
    from ttcl.commands.zoo import card_failures
    from ttcl.zoo.recard import outside_intervals

    def failures(new: str) -> int:
        c = compare(CARD, new)
        return card_failures(c, [outside_intervals(a, b) for a, b in c.differ])

    assert failures(CARD.replace("10.0 [5.5, 17.4]", "11.0 [6.2, 18.6]")) == 0  # within the interval
    assert failures(CARD.replace("10.0 [5.5, 17.4]", "19.0 [12.0, 27.0]")) == 1  # outside it
    assert failures(CARD.replace("| parameters | 1 |", "| parameters | 2 |")) == 1  # no interval to judge by
    assert failures(CARD.replace("| 3 | 10.0 [5.5, 17.4] |\n", "")) == 1  # a row missing


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ttcl.cli", "zoo", "card", *args], capture_output=True, text=True,
                          timeout=600)


def _same_processor_kind(meta: dict) -> bool:
    """Whether this machine's vendor is the one that built the model (its card rows then come back exactly:
    ttcl/zoo/README.md, "Reproducing")."""
    from ttcl.zoo.family import cpu_identity

    built = (meta.get("build") or {}).get("cpu") or {}
    return bool(built) and built.get("vendor") == cpu_identity().get("vendor")


@pytest.mark.skipif(not available("ttcl:countdown-s"), reason="needs the shipped countdown-s")
def test_a_card_evaluated_again_names_the_row_that_differs(tmp_path: Path) -> None:
    """A copy of the shipped countdown-s whose card claims a wrong greedy figure at 3 combinations: the command
    evaluates the weights again and names that row, with the figure the weights give."""
    model = tmp_path / "countdown-s"
    shutil.copytree(MODELS_DIR / "countdown-s", model)
    card = (model / "README.md").read_text()
    (row,) = [ln for ln in table_rows(card) if ln.startswith("| 3 |")]
    greedy = row.split("|")[2].strip()
    wrong = row.replace(greedy, "99.0 [95.0, 99.9]", 1)
    (model / "README.md").write_text(card.replace(row, wrong))
    out = tmp_path / "new"
    proc = _cli("ttcl:countdown-s", "--model", str(model), "--out", str(out))
    assert proc.returncode == 1, proc.stderr  # a row outside the card's interval: a verdict (it was exit 0)
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("countdown-s: ") and "table rows differ from its card" in lines[0]
    assert f"  card: {wrong}" in lines
    new_rows = table_rows((out / "README.md").read_text())
    assert len(new_rows) == len(table_rows(card))
    verdict = f"        (outside the card's 95% interval: col 2: 99.0 -> {greedy.split(' ')[0]} [95.0, 99.9])"
    if _same_processor_kind(json.loads((model / "ttcl_meta.json").read_text())):
        # the kind of processor that built it: the weights give the shipped card's row back, and only it differs
        assert lines == [lines[0], f"  card: {wrong}", f"  now:  {row}", verdict,
                         "countdown-s: 1 of 11 rows lie outside the card's 95% intervals, have none to judge them by, "
                         "or are missing or new: exit 1"]
        assert lines[0].startswith("countdown-s: 1 of 11 table rows differ")
        assert new_rows == table_rows(card)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch",), "error: invalid value for NAME: no zoo model named 'nosuch' (known: "),
        (("expr-lk",), "error: invalid value for NAME: no zoo model named 'expr-lk'; did you mean 'expr-lik'? (known: "),
        (("expr-l-grown",), "error: invalid value for NAME: expr-l-grown is not shipped: build it with "
                            "`ttcl zoo train --only expr-l-grown --shipped-deps`, then give --model ./ttcl-zoo/expr-l-grown"),
    ],
)
def test_bad_names_are_one_line(args: tuple[str, ...], message: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and "Traceback" not in proc.stderr, proc.stderr


def test_a_folder_without_the_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(CARD)
    proc = _cli("countdown-s", "--model", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path}: holds no trained zoo model (no config.json and ttcl_meta.json)"
    (tmp_path / "README.md").unlink()
    proc = _cli("countdown-s", "--model", str(tmp_path))
    assert proc.returncode == 2 and f"{tmp_path} has no card (README.md)" in proc.stderr, proc.stderr
    proc = _cli("countdown-s", "--model", str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: invalid value for --model: {tmp_path / 'nope'} does not exist"), proc.stderr


def test_every_shipped_card_is_what_the_card_writer_writes_from_its_meta(tmp_path: Path) -> None:
    """The figures in a card are the ones its ttcl_meta.json records (which `ttcl models` and the tests read)."""
    from ttcl.zoo import cards, expr_cards
    from ttcl.zoo.registry import FAMILY

    for name in FAMILY:
        meta = json.loads((MODELS_DIR / name / "ttcl_meta.json").read_text())
        out = tmp_path / name
        out.mkdir()
        (cards if meta.get("task") == "arith" else expr_cards).write_card(out, meta)
        assert (out / "README.md").read_text() == (MODELS_DIR / name / "README.md").read_text(), name


def test_within_question_auroc_averages_inside_each_mixed_question() -> None:
    """The arith verifier cards' within-question table: per problem with right and wrong samples, the AUROC of
    its samples' scores; a problem with only right (or only wrong) samples has none and is counted apart."""
    from ttcl.runtime.tasks.arith import make_problems
    from ttcl.zoo.cards import within_question
    from ttcl.zoo.evaluate import Record

    p1, p2 = make_problems(2, [1], seed=3)
    right = [f"{p.question.replace(' ', '')}={p.answer}\n#### {p.answer}" for p in (p1, p2)]
    wrong = [f"{p.question.replace(' ', '')}={p.answer + 1}\n#### {p.answer + 1}" for p in (p1, p2)]
    recs = [Record(p1, samples=[right[0], wrong[0], wrong[0]], scores=[0.9, 0.2, 0.95]),  # AUROC 0.5
            Record(p2, samples=[right[1], right[1]], scores=[0.1, 0.3])]  # only right: no within figure
    assert [r.outcomes() for r in recs] == [[1.0, 0.0, 0.0], [1.0, 1.0]]
    rows = within_question(recs)
    assert [r["steps"] for r in rows] == [1, "all"]
    row = rows[-1]
    assert (row["questions"], row["mixed"], row["within"], row["lo"], row["hi"]) == (2, 1, 0.5, 0.5, 0.5)
    assert row["pooled"] == 0.3333  # right 0.9, 0.1, 0.3 against wrong 0.2, 0.95: 2 of 6 pairs in order
