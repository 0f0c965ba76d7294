"""Where the bundled models live, and what their cards say.

`ttcl:NAME` refers to a model shipped in this package (`ttcl/zoo/models/NAME/`).
Any other reference must be an existing local directory. Nothing here touches
the network or imports torch: the compiler reads model sizes from here.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from ttcl.errors import TtclRuntimeError
from ttcl.safeio import is_dir, is_file

PREFIX = "ttcl:"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a bundled model's name: one directory, never a path
MODELS_DIR = Path(__file__).resolve().parent / "models"
META_FILE = "ttcl_meta.json"
# Every model `ttcl zoo train` builds (what ships), in recipe order; `ttcl.zoo.family.dependencies`
# says which need which, and the build orders them by that.
FAMILY = ("arith-s", "arith-m", "arith-l", "arith-direct", "arith-revise", "arith-orm", "arith-prm",
          "expr-s", "expr-m", "expr-prm", "expr-revise", "expr-lik",
          "expr-s-narrow8-xlong", "expr-s-narrow8-xlong-lik",
          "countdown-s", "countdown-m", "countdown-l", "countdown-prm",
          "countdown-revise", "countdown-check", "countdown-revise-inline-chk")
# Recipes that are not shipped and that only `ttcl zoo train --only NAME` builds: expr-l did not
# become a working model on this compute (expr-l-long, its shape on expr-m's 3,600 steps, learned
# less than expr-m); expr-s on chains that write the state down
# (expr-s-state, expr-s-trace) was worse than expr-s, and on chains that name each sub-expression
# (expr-s-subst), on 2.5x its steps (expr-s-long) or on 3 and 4 layers (expr-s-deep3; expr-s-deep4, shipped
# for part of 2026-12-06 as a likelihood verifier of 1.86x expr-s's parameters, until a same-size
# one replaced it) no better than a few points, nor on questions of 2-6 or 2-5 operations only (expr-s-mid6,
# expr-s-mid5); countdown-s and countdown-m on more
# steps (countdown-s-long, countdown-m-long) are dev-seed trials; the other *-revise-inline* recipes
# revise in their own draft's context: expr's level with a fresh sample, countdown-revise-inline
# ahead of a T=0.7 one at 2 combinations by revising greedily, as the shipped
# countdown-revise-inline-chk is, which a greedy decode of the question beats; expr-s's parameter count on
# 4 and 8 layers (expr-s-narrow4, expr-s-narrow8, expr-s-narrow8-lik; on 9,000 steps
# expr-s-narrow8-long and its -lik, at 0.86 on held-out items and shipped for part of 2026-12-06, until
# the shipped expr-s-narrow8-xlong-lik, on 18,000 steps, ranked higher), and backward checkers
# (expr-back, expr-back-lik); expr-l-grown, the expr family's third size (expr-m widened to 21x expr-s's
# parameters, then trained on; better than expr-m on held-out items), is built, not shipped, because the
# package's weights are at the 25 MB cap, and expr-m-cont is its control (ttcl/zoo/README.md).
EXPERIMENTAL = ("expr-l", "expr-s-state", "expr-s-trace", "expr-s-subst", "expr-s-long", "expr-s-deep3",
                "countdown-s-long", "countdown-m-long", "expr-revise-inline", "expr-revise-inline-long",
                "countdown-revise-inline", "expr-revise-inline-bal", "countdown-revise-inline-bal",
                "expr-s-mid6", "expr-s-mid5", "expr-l-long", "countdown-revise-hist", "expr-prm-long",
                "expr-s-deep4", "expr-s-deep4-lik", "expr-s-narrow4", "expr-s-narrow8",
                "expr-s-narrow8-lik", "expr-back", "expr-back-lik", "expr-s-narrow8-long",
                "expr-s-narrow8-long-lik", "expr-l-grown", "expr-m-cont", "countdown-s-search", "countdown-s-search-t",
                "countdown-s-search-retry", "countdown-m-search-t")


REFERENCE_BUILDS = Path(__file__).resolve().parent / "reference_builds.json"


def reference_builds() -> dict[str, dict]:
    """Recipes built on request but not shipped (expr-l-grown: the package's weights are at the 25 MB cap), by name:
    the sha256 and build environment of a reference build, and what the model is (`reference_builds.json`)."""
    try:
        models = json.loads(REFERENCE_BUILDS.read_text()).get("models", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in models.items() if isinstance(v, dict)} if isinstance(models, dict) else {}


def shipped_names() -> list[str]:
    """Names of the bundled models that have a meta file (sorted by kind, then size)."""
    if not MODELS_DIR.is_dir():
        return []
    names = [d.name for d in MODELS_DIR.iterdir() if (d / META_FILE).is_file()]
    order = {"policy": 0, "revise": 1, "direct": 2, "orm": 3, "prm": 4, "check": 5, "lik": 6, "backward": 7, "blik": 8}

    def key(name: str) -> tuple[int, int, str]:
        meta = _read_meta(MODELS_DIR / name)
        return (order.get(str(meta.get("kind")), 9), int(meta.get("params_total", 0)), name)

    return sorted(names, key=key)


class UnknownModelError(TtclRuntimeError):
    """A `ttcl:NAME` that no bundled model has (declaring its size would not make it one)."""


def resolve_model(ref: str) -> Path:
    """The local directory for a model reference: `ttcl:NAME` or a directory path."""
    if not isinstance(ref, str) or not ref.strip():
        raise TtclRuntimeError("empty model reference; use ttcl:NAME (see `ttcl models`) or a local directory")
    ref = ref.strip()
    if ref.startswith(PREFIX):
        name = ref[len(PREFIX) :]
        path = MODELS_DIR / name
        if _PLAIN_NAME.fullmatch(name) and ".." not in name and is_file(path / META_FILE):  # never `..` or a path
            return path
        known = shipped_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{PREFIX}{close[0]}'?" if close else ""
        listing = ", ".join(PREFIX + k for k in known) or "none are installed"
        raise UnknownModelError(f"unknown bundled model '{ref}'{hint} (bundled: {listing})")
    path = Path(ref).expanduser()
    if is_dir(path):
        return path
    close = difflib.get_close_matches(ref, [PREFIX + k for k in shipped_names()] + [k for k in shipped_names()], n=1)
    if close:
        name = close[0] if close[0].startswith(PREFIX) else PREFIX + close[0]
        hint = f"; did you mean '{name}'?"
    else:
        hint = ""
    raise TtclRuntimeError(
        f"model '{ref}' is not a bundled model (ttcl:NAME) nor a local directory{hint}. "
        "ttcl never downloads models: pass the path of a local Hugging Face model directory."
    )


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def model_card(ref: str) -> dict[str, Any]:
    """The model's `ttcl_meta.json` (sizes, task, kind, training cost, accuracy), plus its path.

    A local directory without a meta file gets what its `config.json` says."""
    path = resolve_model(ref)
    meta = _read_meta(path)
    if not meta:
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            cfg = {}
        meta = {
            "name": path.name,
            "n_layer": cfg.get("n_layer", cfg.get("num_hidden_layers")),
            "d_model": cfg.get("n_embd", cfg.get("hidden_size")),
            "n_ctx": cfg.get("n_positions", cfg.get("max_position_embeddings")),
        }
    meta["path"] = str(path)
    return meta


def list_models() -> list[dict[str, Any]]:
    """Cards of every bundled model."""
    return [model_card(PREFIX + name) for name in shipped_names()]


__all__ = ["EXPERIMENTAL", "FAMILY", "MODELS_DIR", "PREFIX", "UnknownModelError", "list_models", "model_card", "resolve_model",
           "shipped_names"]
