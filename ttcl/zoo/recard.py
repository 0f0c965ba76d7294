"""`ttcl zoo card NAME`: a model card's tables evaluated again from the model's weights, without training.

The card of a zoo model (README.md beside its weights) is written by its build: its tables come from
the model's samples on the card's fixed set. This module copies the model (the shipped one, or a built
one given by directory) into a fresh working root, with the models its card reads (a verifier's card
scores its policies' card samples, which are drawn again from the shipped policies), and runs the same
evaluation the build runs, on the same kernels and thread count, so that on the kind of processor the
model was built on the tables come back exactly; elsewhere, within their intervals. `compare` sets the
new card's table rows against the old card's.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ttcl.errors import TtclRuntimeError

Log = Callable[[str], None]


class RecardError(TtclRuntimeError):
    """A model that has no card recipe, or a directory that holds no such model."""


def card_inputs(name: str) -> tuple[str, ...]:
    """The models `name`'s card evaluation reads besides `name` (policies whose card samples it scores)."""
    from ttcl.zoo.cards import CARD_POLICY
    from ttcl.zoo.family import LM_RECIPES, SAMPLES_BY_TASK, VERIFIER_RECIPES, sample_spec

    if name in LM_RECIPES:
        r = LM_RECIPES[name]
        return tuple(SAMPLES_BY_TASK[r.data.task].policies) if r.kind in ("check", "backward") else ()
    if name in VERIFIER_RECIPES:
        spec = sample_spec(name)
        return tuple(spec.policies) if spec.task in ("expr", "countdown") else (CARD_POLICY,)
    from ttcl.zoo.family import ALL

    raise RecardError(f"no recipe named {name!r}; known: {', '.join(ALL)}")


def load_for_card(out: Path):
    """The trained model in `out`, loaded as its build held it when it evaluated the card."""
    import transformers

    arch = (json.loads((out / "config.json").read_text()).get("architectures") or ["GPT2LMHeadModel"])[0]
    cls = getattr(transformers, arch, None)
    if cls is None or not arch.startswith("GPT2"):
        raise RecardError(f"{out}: architecture {arch!r} is not one of the zoo's GPT-2 models")
    model = cls.from_pretrained(str(out), local_files_only=True)
    model.config._attn_implementation = "sdpa"  # as the build trained and evaluated it
    return model.eval()


def recard(name: str, source: Path, work: Path, *, shipped_root: Path, log: Log = print) -> Path:
    """Evaluate `name`'s card again from the model in `source` into `work/name/README.md` (returned).
    The models its card reads come from `shipped_root` (or, where `source`'s folder holds them, from there)."""
    import torch

    from ttcl.zoo.family import evaluate_card
    from ttcl.zoo.train import THREADS

    needs = card_inputs(name)
    if not (source / "config.json").is_file() or not (source / "ttcl_meta.json").is_file():
        raise RecardError(f"{source}: holds no trained zoo model (no config.json and ttcl_meta.json)")
    meta = json.loads((source / "ttcl_meta.json").read_text())
    if meta.get("name") != name:
        raise RecardError(f"{source}: holds {meta.get('name')!r}, not {name!r}")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("README.md"))
    for dep in needs:
        src = source.parent / dep if (source.parent / dep / "config.json").is_file() else shipped_root / dep
        if not (src / "config.json").is_file():
            raise RecardError(f"{name}'s card reads {dep}'s card samples, and {dep} is neither beside {source} "
                              f"nor shipped")
        shutil.copytree(src, work / dep, ignore=shutil.ignore_patterns("README.md"))
        log(f"[{name}] its card reads {dep}'s card samples: drawing them again from {src}")
    torch.set_num_threads(THREADS)
    from ttcl.zoo.family import VERIFIER_RECIPES, sample_spec

    if name in VERIFIER_RECIPES and sample_spec(name).task == "arith":  # it votes over arith-m's card samples
        for dep in needs:
            evaluate_card(dep, load_for_card(work / dep), work, json.loads((work / dep / "ttcl_meta.json").read_text()),
                          log=log)
    evaluate_card(name, load_for_card(work / name), work, meta, log=log)
    return work / name / "README.md"


@dataclass
class Comparison:
    rows: int  # table rows in the old card
    differ: list[tuple[str, str]]  # (old row, new row) pairs that differ, in order
    missing: list[str]  # old rows with no new counterpart
    added: list[str]  # new rows with no old counterpart

    @property
    def identical(self) -> bool:
        return not (self.differ or self.missing or self.added)


def table_rows(card: str) -> list[str]:
    """The card's table rows (lines that start with `|`), separators left out."""
    return [ln.rstrip() for ln in card.splitlines() if ln.startswith("|") and not set(ln) <= set("|-: ")]


_CI = re.compile(r"^\s*(-?[\d.]+)\s*\[(-?[\d.]+),\s*(-?[\d.]+)\]\s*$")  # `42.0 [32.8, 51.8]`


def outside_intervals(old_row: str, new_row: str) -> list[str] | None:
    """The cells of `new_row` whose figure lies outside `old_row`'s 95% interval in the same cell (written as
    `v [lo, hi]`), by the columns' place (`col 3: 10.0 -> 14.0 [5.5, 17.4]`); [] when every differing cell with
    an interval holds its new figure; None when a differing cell has no interval to judge it by."""
    a, b = old_row.strip("|").split("|"), new_row.strip("|").split("|")
    if len(a) != len(b):
        return None
    out = []
    for col, (x, y) in enumerate(zip(a, b, strict=True), start=1):
        if x.strip() == y.strip():
            continue
        mx, my = _CI.match(x), _CI.match(y)
        if mx is None or my is None:
            return None
        lo, hi, v = float(mx[2]), float(mx[3]), float(my[1])
        if not lo <= v <= hi:
            out.append(f"col {col}: {mx[1]} -> {my[1]} [{mx[2]}, {mx[3]}]")
    return out


def compare(old: str, new: str) -> Comparison:
    a, b = table_rows(old), table_rows(new)
    differ = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    return Comparison(rows=len(a), differ=differ, missing=a[len(b):], added=b[len(a):])
