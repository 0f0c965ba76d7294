"""The strategy library: every program checks, cites its source, and fits its declared budget.

The budget bounds on calls and generated tokens do not depend on the model's
size, so they are asserted exactly; FLOPs need the bundled models' specs and
are only required to fit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ttcl.compiler.checks import check_program
from ttcl.compiler.loader import load_program

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"
NAMES = sorted(p.stem for p in PROGRAMS.glob("*.ttc"))

# name -> (calls, gen_tokens) worst case per item with the default params
BOUNDS = {
    "adaptive": (36, 2240),
    "beam_search": (320, 1760),
    "best_of_n": (16, 896),
    "countdown_adaptive": (32, 1872),
    "countdown_beam": (80, 2080),
    "countdown_beam_check": (160, 2080),
    "countdown_beam_prm": (160, 2080),
    "expr_beam": (96, 1536),
    "expr_beam_prm": (192, 1536),
    "countdown_best_of_n": (32, 1872),
    "countdown_kept": (16, 936),
    "countdown_pool": (48, 1872),
    "countdown_revision": (2, 234),
    "countdown_revision_check": (8, 468),
    "countdown_revision_inline": (2, 234),
    "dvts": (320, 1760),
    "expr_adaptive": (32, 1600),
    "expr_kept": (20, 800),
    "expr_pool": (32, 1600),
    "expr_rerank": (80, 1600),
    "expr_weighted": (32, 1600),
    "lookahead": (512, 4224),
    "pool": (48, 1792),
    "pooled_adaptive": (20, 2240),
    "rebase": (320, 1760),
    "revision": (10, 560),
    "self_consistency": (16, 1792),
    "weighted_best_of_n": (32, 1792),
}


def test_the_library_is_complete() -> None:
    assert NAMES == sorted(BOUNDS)


@pytest.mark.parametrize("name", NAMES)
def test_program_checks(name: str) -> None:
    checked = check_program(load_program(PROGRAMS / f"{name}.ttc"))
    module = checked.root.module
    assert checked.entry.name == "main"
    assert module.docstring and re.search(r"\b(19|20)\d\d\b", module.docstring), "the docstring cites its source with a year"
    assert [b.scope for b in module.budgets] in (["item"], ["item", "pooled"])
    assert {lim.unit for lim in module.budgets[0].limits} >= {"calls", "gen_tokens"}


def test_adaptive_imports_weighted_best_of_n() -> None:
    checked = check_program(load_program(PROGRAMS / "adaptive.ttc"), {"wbon.n": "8"})
    assert [i.path for i in checked.program.instances()] == ["", "wbon"]
    assert checked.params["wbon"]["n"] == 8


def _models_installed(name: str) -> bool:
    """The arith zoo and every other bundled model the program names (`"ttcl:NAME"`) are installed."""
    text = (PROGRAMS / f"{name}.ttc").read_text(encoding="utf-8")
    refs = set(re.findall(r'"(ttcl:[\w.-]+)"', text)) - set(re.findall(r'import "(ttcl:[\w.-]+)"', text))
    try:
        from ttcl.zoo.registry import resolve_model

        for ref in sorted(refs | {"ttcl:arith-s", "ttcl:arith-orm", "ttcl:arith-prm", "ttcl:arith-revise"}):
            resolve_model(ref)
    except Exception:  # the zoo's models are trained separately; without them FLOPs cannot be bounded
        return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_program_fits_its_budget(name: str) -> None:
    from ttcl.compiler.pipeline import compile_program

    if not _models_installed(name):
        pytest.skip(f"the bundled models {name}.ttc names are not installed")
    compiled = compile_program(PROGRAMS / f"{name}.ttc")
    assert compiled.report.verdict == "fits"
    total = compiled.report.total
    assert (total["calls"], total["gen_tokens"]) == BOUNDS[name]


@pytest.mark.parametrize("name", NAMES)
def test_program_is_canonically_formatted(name: str) -> None:
    from ttcl.compiler.fmt import format_source

    source = (PROGRAMS / f"{name}.ttc").read_text(encoding="utf-8")
    assert format_source(source, f"{name}.ttc") == source


def test_every_bundled_programs_summary_is_a_whole_clause() -> None:
    """`ttcl programs` cut one summary at the full stop of "Snell et al." (found by a QA pass)."""
    from ttcl.programs import bundled_names, summary

    for name in bundled_names():
        text = summary(name)
        assert text and not text.endswith((" al", " et", " e.g", " i.e", " vs", " Snell")), (name, text)
    assert summary("countdown_revision_check").endswith("compare revisions with parallel samples")


def test_the_language_references_first_example_checks_clean(tmp_path: Path) -> None:
    """docs/language.md's headline program failed `ttcl check` (a 256-token bound and 256 new tokens against the
    bundled models' 160-token context), blamed on an unused `auto` param (found by a QA pass)."""
    import re

    from ttcl.compiler.pipeline import compile_program

    root = Path(__file__).resolve().parent.parent
    first = re.findall(r"```\n(.*?)```", (root / "docs" / "language.md").read_text(), re.S)[0]
    (tmp_path / "doc.ttc").write_text(first)  # alone, as a reader copies it (QA pass: it imported a file beside it)
    report = compile_program(tmp_path / "doc.ttc").report
    assert report.verdict == "fits"
    from ttcl.compiler.fmt import format_source

    assert format_source(first) == first  # shown as `ttcl fmt` writes it (QA pass: it was not)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("countdown_")])
def test_a_countdown_program_takes_the_longest_question(name: str) -> None:
    """An input over its declared `text[<=N]` stops its item (docs/runtime.md): the countdown programs must take
    the longest question `ttcl data countdown` can write, six 10s and a two-digit target (23 characters, one
    token each), which `text[<=22]` refused."""
    from ttcl.runtime.tasks.countdown import NUMBER_MAX, TARGET_SEPARATOR, VALUE_MAX

    longest = " ".join([str(NUMBER_MAX)] * 6) + TARGET_SEPARATOR + str(VALUE_MAX)
    bounds = [int(b) for b in re.findall(r"question: text\[<=(\d+)\]", (PROGRAMS / f"{name}.ttc").read_text())]
    assert bounds and min(bounds) >= len(longest), (name, bounds, len(longest))
