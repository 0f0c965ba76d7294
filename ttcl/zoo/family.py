"""The shipped family: one recipe per model, and the build that trains, evaluates and
documents each of them (`ttcl zoo train`)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ttcl.zoo.data import REVISE_TEMPLATE, DataSpec
from ttcl.zoo.registry import FAMILY, MODELS_DIR
from ttcl.zoo.train import LMRecipe, Log, train_lm, write_meta
from ttcl.zoo.verifiers import SampleSpec, VerifierRecipe


def _std(d: int) -> float:
    """Init std 0.6/sqrt(d): GPT-2's fixed 0.02 is too small at these widths and
    stretches the loss plateau."""
    return round(0.6 / math.sqrt(d), 4)


LM_RECIPES: dict[str, LMRecipe] = {
    "arith-s": LMRecipe("arith-s", "policy", 32, 2, 2, 160, 4000, batch_size=96, lr=3e-3, init_std=_std(32), seed=1),
    "arith-m": LMRecipe("arith-m", "policy", 64, 2, 2, 160, 1500, lr=3e-3, init_std=_std(64), seed=2),
    "arith-l": LMRecipe("arith-l", "policy", 128, 3, 4, 160, 1200, batch_size=32, lr=2e-3, init_std=_std(128), seed=3),
    "arith-direct": LMRecipe("arith-direct", "direct", 64, 2, 2, 160, 3000, lr=3e-3, init_std=_std(64),
                             seed=4, data=DataSpec(kind="direct")),
    "arith-revise": LMRecipe("arith-revise", "revise", 64, 2, 2, 320, 1500, lr=3e-3, init_std=_std(64),
                             seed=5, data=DataSpec(kind="revise", revise_frac=0.5)),
}

VERIFIER_SAMPLES = SampleSpec(policies=("arith-m", "arith-l"), problems_per_policy=1000, samples_per_problem=4)
VERIFIER_RECIPES: dict[str, VerifierRecipe] = {
    "arith-orm": VerifierRecipe("arith-orm", "orm", init_from="arith-m", train_steps=600, seed=6),
    "arith-prm": VerifierRecipe("arith-prm", "prm", init_from="arith-m", train_steps=600, seed=7),
}
ALL = FAMILY
assert set(ALL) == {*LM_RECIPES, *VERIFIER_RECIPES}

# Evaluation for the cards: a fixed problem set, greedy plus k samples at this temperature.
CARD_PER_LEVEL = 50
CARD_SAMPLES = 16
CARD_TEMPERATURE = 0.8


def quick(r: LMRecipe | VerifierRecipe) -> LMRecipe | VerifierRecipe:
    """A seconds-long variant of a recipe, to check that the pipeline runs end to end."""
    return replace(r, train_steps=30)


def train_one(name: str, out_root: Path = MODELS_DIR, *, is_quick: bool = False, log: Log = print,
              evaluate: bool = True) -> dict:
    """Train (and evaluate and document) one shipped model into out_root/name."""
    out = out_root / name
    if name in LM_RECIPES:
        r = LM_RECIPES[name]
        r = quick(r) if is_quick else r
        model, meta = train_lm(r, out, log=log)
        if r.kind == "revise":
            meta["revise_template"] = REVISE_TEMPLATE
            meta["revise_template_fields"] = ["question", "attempt"]
        meta["prompt_template"] = "{question}\n"
        meta["stop"] = "<eos>"
        if evaluate:
            from ttcl.zoo.cards import evaluate_policy

            per_level = 4 if is_quick else CARD_PER_LEVEL
            k = 4 if is_quick else CARD_SAMPLES
            meta |= evaluate_policy(model, out, meta, per_level, k, CARD_TEMPERATURE, log=log)
        write_meta(out, meta)
        return meta
    if name in VERIFIER_RECIPES:
        from ttcl.zoo.verifiers import load_rows, sample_verifier_data, save_rows, train_verifier

        r = VERIFIER_RECIPES[name]
        spec = VERIFIER_SAMPLES
        if is_quick:
            r = quick(r)
            spec = replace(spec, problems_per_policy=40, samples_per_problem=2)
        dirs = {p: out_root / p for p in spec.policies}
        missing = [p for p in [*spec.policies, r.init_from] if not (out_root / p / "config.json").is_file()]
        if missing:
            from ttcl.errors import TtclRuntimeError

            raise TtclRuntimeError(f"{name} needs {', '.join(missing)} in {out_root}: train them first")
        from ttcl.zoo.cards import _cache_path

        cache = _cache_path(out, f"verifier_samples{'_quick' if is_quick else ''}")
        if cache.is_file():
            rows = load_rows(cache)
        else:
            t0 = time.time()
            rows = sample_verifier_data(spec, dirs, log=log)
            save_rows(rows, cache)
            log(f"[verifier data] {len(rows)} samples in {time.time() - t0:.0f}s -> {cache}")
        model, meta = train_verifier(r, rows, out_root / r.init_from, out, log=log)
        meta["sampled_from"] = list(spec.policies)
        meta["sample_temperature"] = spec.temperature
        if evaluate:
            from ttcl.zoo.cards import evaluate_verifier

            meta |= evaluate_verifier(model, out, meta, out_root, is_quick, log=log)
        write_meta(out, meta)
        return meta
    from ttcl.errors import TtclRuntimeError

    raise TtclRuntimeError(f"no recipe named {name!r}; known: {', '.join(ALL)}")


def dump(meta: dict) -> str:
    return json.dumps(meta, indent=2)
