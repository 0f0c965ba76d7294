"""Golden invalid programs: each `*__invalid.ttc` must fail with exactly the diagnostics in its `.expected` file.

A first line `# set: k=v k2=v2` passes `--set` overrides. Regenerate the
expected files with `TTCL_UPDATE_GOLDEN=1 pytest tests/test_checks_golden.py`,
then read the diff: the expected text is the specification.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ttcl.compiler.checks import check_program
from ttcl.compiler.diagnostics import DiagnosticError
from ttcl.compiler.loader import load_program
from ttcl.compiler.params import parse_set_overrides

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "invalid"
CASES = sorted(GOLDEN.glob("*__invalid.ttc"))


def render_failure(path: Path) -> str:
    """Load and check `path` as the CLI would, and return the rendered diagnostics."""
    source = path.read_text(encoding="utf-8")
    first = source.splitlines()[0] if source else ""
    overrides = parse_set_overrides(first.removeprefix("# set:").split()) if first.startswith("# set:") else {}
    shown = path.relative_to(ROOT).as_posix()
    try:
        check_program(load_program(path, file=shown), overrides)
    except DiagnosticError as e:
        return e.render() + "\n"
    raise AssertionError(f"{shown} was expected to fail, but it checks")


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix("__invalid.ttc") for p in CASES])
def test_golden_invalid(path: Path) -> None:
    got = render_failure(path)
    expected_path = path.with_name(path.name.removesuffix("__invalid.ttc") + ".expected")
    if os.environ.get("TTCL_UPDATE_GOLDEN") == "1":
        expected_path.write_text(got, encoding="utf-8")
    assert expected_path.exists(), f"missing {expected_path.name}; run with TTCL_UPDATE_GOLDEN=1"
    assert got == expected_path.read_text(encoding="utf-8")
