"""The wheel must carry every subpackage and data file: a package missing from
pyproject's explicit list works in an editable checkout and breaks on install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_source_package_is_listed() -> None:
    cfg = _setuptools()
    dirs = {Path(d): pkg for pkg, d in cfg["package-dir"].items()}
    listed = set(cfg["packages"])
    found: set[str] = set()
    for src, pkg in dirs.items():
        for init in (ROOT / src).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / src)
            found.add(".".join([pkg, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_package_data_globs_match_shipped_files() -> None:
    data = _setuptools()["package-data"]
    assert list((ROOT / "grammar").glob(data["ttcl.grammar"][0])) == [ROOT / "grammar" / "ttcl.lark"]
    assert len(list((ROOT / "programs").glob(data["ttcl.programs"][0]))) >= 7
    weights = list((ROOT / "ttcl" / "zoo").glob("models/*/model.safetensors"))
    assert len(weights) >= 7  # the arith family and the expr testbed
    assert sum(w.stat().st_size for w in weights) <= 25_000_000  # issue 7: at most 25 MB (decimal, the stricter reading)
