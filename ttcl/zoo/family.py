"""The shipped family: one recipe per model, and the build that trains, evaluates and
documents each of them (`ttcl zoo train`)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from ttcl.zoo.data import (
    HISTORY_CTX,
    REVISE_INLINE_TEMPLATE,
    REVISE_TEMPLATE,
    VERDICT_NO,
    VERDICT_PROMPT,
    VERDICT_YES,
    DataSpec,
)
from ttcl.zoo.registry import EXPERIMENTAL, FAMILY, MODELS_DIR
from ttcl.zoo.train import LMRecipe, Log, train_lm, write_meta
from ttcl.zoo.verifiers import SampleSpec, VerifierRecipe


def _std(d: int) -> float:
    """Init std 0.6/sqrt(d): GPT-2's fixed 0.02 is too small at these widths and
    stretches the loss plateau."""
    return round(0.6 / math.sqrt(d), 4)


EXPR_DATA = DataSpec(task="expr", steps=(2, 3, 4, 5, 6, 7, 8))
COUNTDOWN_DATA = DataSpec(task="countdown", steps=(2, 3, 4, 5))

LM_RECIPES: dict[str, LMRecipe] = {
    "arith-s": LMRecipe("arith-s", "policy", 32, 2, 2, 160, 4000, batch_size=96, lr=3e-3, init_std=_std(32), seed=1),
    "arith-m": LMRecipe("arith-m", "policy", 64, 2, 2, 160, 1500, lr=3e-3, init_std=_std(64), seed=2),
    "arith-l": LMRecipe("arith-l", "policy", 128, 3, 4, 160, 1200, batch_size=32, lr=2e-3, init_std=_std(128), seed=3),
    "arith-direct": LMRecipe("arith-direct", "direct", 64, 2, 2, 160, 3000, lr=3e-3, init_std=_std(64),
                             seed=4, data=DataSpec(kind="direct")),
    "arith-revise": LMRecipe("arith-revise", "revise", 64, 2, 2, 320, 1500, lr=3e-3, init_std=_std(64),
                             seed=5, data=DataSpec(kind="revise", revise_frac=0.5)),
    # expr (testbed v2): >= 16x apart in parameters, training FLOPs (6*N*D) growing with size,
    # head_dim >= 32 (vLLM's CPU kernels), sized for one thread of a shared 2-core CPU.
    "expr-s": LMRecipe("expr-s", "policy", 64, 2, 2, 160, 3600, batch_size=64, lr=3e-3, init_std=_std(64),
                       seed=11, data=EXPR_DATA),
    "expr-m": LMRecipe("expr-m", "policy", 128, 3, 4, 160, 3600, batch_size=64, lr=2e-3, init_std=_std(128),
                       seed=12, data=EXPR_DATA),
    # revision trained on expr-s's own sampled attempts (the expr-prm training split), from expr-s's weights
    "expr-revise": LMRecipe("expr-revise", "revise", 64, 2, 2, 320, 800, batch_size=64, lr=1e-3,
                            init_std=_std(64), seed=14, init_from="expr-s",
                            data=replace(EXPR_DATA, kind="revise", revise_frac=0.5)),
    # in-context revision (data.REVISE_INLINE_TEMPLATE): drafts and revises in one context, so a
    # revision reuses the draft's KV cache; keeps a right attempt by restating its answer (experimental)
    "expr-revise-inline": LMRecipe("expr-revise-inline", "revise", 64, 2, 2, 320, 2000, batch_size=64, lr=1e-3,
                                   init_std=_std(64), seed=14, init_from="expr-s",
                                   data=replace(EXPR_DATA, kind="revise", revise_frac=0.5, revise_style="inline")),
    "expr-revise-inline-long": LMRecipe("expr-revise-inline-long", "revise", 64, 2, 2, 320, 4000, batch_size=64,
                                        lr=1e-3, init_std=_std(64), seed=14, init_from="expr-s",
                                        data=replace(EXPR_DATA, kind="revise", revise_frac=0.5, revise_style="inline")),
    "expr-revise-inline-bal": LMRecipe("expr-revise-inline-bal", "revise", 64, 2, 2, 320, 2000, batch_size=64,
                                       lr=1e-3, init_std=_std(64), seed=14, init_from="expr-s",
                                       data=replace(EXPR_DATA, kind="revise", revise_frac=0.5, revise_style="inline",
                                                    revise_right_frac=0.5)),
    "expr-l": LMRecipe("expr-l", "policy", 256, 3, 4, 160, 800, batch_size=64, lr=1.5e-3,
                       init_std=_std(256), seed=13, data=EXPR_DATA),
    # expr-l's shape on expr-m's 3,600 steps (4.5x expr-l's 800): is expr-l only undertrained? Tried, one run:
    # between expr-s and expr-m (43% greedy at 4 operations), 103 min on one shared core (experimental)
    "expr-l-long": LMRecipe("expr-l-long", "policy", 256, 3, 4, 160, 3600, batch_size=64, lr=1.5e-3,
                            init_std=_std(256), seed=13, data=EXPR_DATA),
    # expr-m widened by duplication to expr-l's width (8 heads of 32; grow.py), so that it starts as expr-m, then
    # trained on 500 more steps of new questions at a quarter of expr-m's peak rate: a third size that costs
    # 0.56x expr-m's training FLOPs on top of expr-m's, where expr-l from scratch needed more than the build has
    "expr-l-grown": LMRecipe("expr-l-grown", "policy", 256, 3, 8, 160, 500, batch_size=64, lr=5e-4, warmup=50,
                             init_std=_std(256), seed=16, init_from="expr-m", init_noise=1e-3, data=EXPR_DATA),
    # its control: expr-m itself on the same 500 steps (same data seed, rate and schedule), not widened. Is it the
    # width or the extra steps? (experimental)
    "expr-m-cont": LMRecipe("expr-m-cont", "policy", 128, 3, 4, 160, 500, batch_size=64, lr=5e-4, warmup=50,
                            init_std=_std(128), seed=16, init_from="expr-m", data=EXPR_DATA),
    # expr-s's recipe on 2.5x its steps: tried, no better (expr-m jumps at 3,600 steps; expr-s does not)
    "expr-s-long": LMRecipe("expr-s-long", "policy", 64, 2, 2, 160, 9000, batch_size=64, lr=3e-3,
                            init_std=_std(64), seed=11, data=EXPR_DATA),
    # expr-s's width on expr-m's depth and deeper: is depth what expr-s lacks? (experimental)
    "expr-s-deep3": LMRecipe("expr-s-deep3", "policy", 64, 3, 2, 160, 3600, batch_size=64, lr=3e-3,
                             init_std=_std(64), seed=11, data=EXPR_DATA),
    "expr-s-deep4": LMRecipe("expr-s-deep4", "policy", 64, 4, 2, 160, 3600, batch_size=64, lr=3e-3,
                             init_std=_std(64), seed=11, data=EXPR_DATA),
    # expr-s's parameter count spent on depth instead of width: is it depth or size that lets deep4's likelihood
    # rank expr-s's samples? d 48 on 4 layers (1 head of 48) and d 32 on 8 layers (1 head of 32), both within
    # 7% of expr-s's parameters (experimental)
    "expr-s-narrow4": LMRecipe("expr-s-narrow4", "policy", 48, 4, 1, 160, 3600, batch_size=64, lr=3e-3,
                               init_std=_std(48), seed=11, data=EXPR_DATA),
    "expr-s-narrow8": LMRecipe("expr-s-narrow8", "policy", 32, 8, 1, 160, 3600, batch_size=64, lr=3e-3,
                               init_std=_std(32), seed=11, data=EXPR_DATA),
    "expr-s-narrow8-long": LMRecipe("expr-s-narrow8-long", "policy", 32, 8, 1, 160, 9000, batch_size=64, lr=3e-3,
                                    init_std=_std(32), seed=11, data=EXPR_DATA),
    # the reader's training length at the policy's size, one step further: narrow8 on 5x expr-s's steps (experimental)
    "expr-s-narrow8-xlong": LMRecipe("expr-s-narrow8-xlong", "policy", 32, 8, 1, 160, 18000, batch_size=64, lr=3e-3,
                                     init_std=_std(32), seed=11, data=EXPR_DATA),
    # a backward checker of expr-s's shape: reads a derivation, then writes the question it derives
    # (data.BACKWARD_TEMPLATE); its probability of the true question scores a sample (experimental)
    "expr-back": LMRecipe("expr-back", "backward", 64, 2, 2, 160, 3600, batch_size=64, lr=3e-3,
                          init_std=_std(64), seed=15, data=replace(EXPR_DATA, kind="backward")),
    # expr-s's recipe on a training mix without the hardest questions (2-6 and 2-5 operations): 40% of the tokens
    # expr-s's loss averages over are in 7- and 8-operation chains it never solves. Tried, no better (experimental)
    "expr-s-mid6": LMRecipe("expr-s-mid6", "policy", 64, 2, 2, 160, 3600, batch_size=64, lr=3e-3,
                            init_std=_std(64), seed=11, data=replace(EXPR_DATA, steps=(2, 3, 4, 5, 6))),
    "expr-s-mid5": LMRecipe("expr-s-mid5", "policy", 64, 2, 2, 160, 3600, batch_size=64, lr=3e-3,
                            init_std=_std(64), seed=11, data=replace(EXPR_DATA, steps=(2, 3, 4, 5))),
    # expr-s's recipe on chains that name each sub-expression a line reduces (style `subst`)
    "expr-s-subst": LMRecipe("expr-s-subst", "policy", 64, 2, 2, 224, 3600, batch_size=64, lr=3e-3,
                             init_std=_std(64), seed=11, data=replace(EXPR_DATA, style="subst")),
    # expr-s's recipe on chains that write the state down (runtime/tasks/expr.py, styles `state` and
    # `trace`): tried and not shipped, both worse than expr-s (ttcl/zoo/README.md)
    "expr-s-state": LMRecipe("expr-s-state", "policy", 64, 2, 2, 320, 3600, batch_size=64, lr=3e-3,
                             init_std=_std(64), seed=11, data=replace(EXPR_DATA, style="state")),
    "expr-s-trace": LMRecipe("expr-s-trace", "policy", 64, 2, 2, 384, 3600, batch_size=64, lr=3e-3,
                             init_std=_std(64), seed=11, data=replace(EXPR_DATA, style="trace")),
    # countdown (testbed v2, checking easier than solving): 21x apart in parameters, training FLOPs
    # growing with size (s < m < l in 6*N*D), head_dim 32.
    "countdown-s": LMRecipe("countdown-s", "policy", 64, 2, 2, 160, 3000, batch_size=64, lr=3e-3,
                            init_std=_std(64), seed=21, data=COUNTDOWN_DATA),
    "countdown-m": LMRecipe("countdown-m", "policy", 128, 3, 4, 160, 2000, batch_size=64, lr=2e-3,
                            init_std=_std(128), seed=22, data=COUNTDOWN_DATA),
    "countdown-l": LMRecipe("countdown-l", "policy", 256, 3, 8, 160, 1500, batch_size=64, lr=1.5e-3,
                            init_std=_std(256), seed=23, data=COUNTDOWN_DATA),
    # countdown-s on 3x its steps and countdown-m on expr-m's 3,600: are the countdown policies undertrained as
    # expr-m was? (experimental)
    "countdown-s-long": LMRecipe("countdown-s-long", "policy", 64, 2, 2, 160, 9000, batch_size=64, lr=3e-3,
                                 init_std=_std(64), seed=21, data=COUNTDOWN_DATA),
    "countdown-m-long": LMRecipe("countdown-m-long", "policy", 128, 3, 4, 160, 3600, batch_size=64, lr=2e-3,
                                 init_std=_std(128), seed=22, data=COUNTDOWN_DATA),
    # countdown-s's shape on search traces (failed attempts marked, then retried from their last live prefix;
    # Gandhi et al. 2024's "stream of search"), in a 512-token context (experimental)
    "countdown-s-search": LMRecipe("countdown-s-search", "policy", 64, 2, 2, 512, 3000, batch_size=64, lr=3e-3,
                                   init_std=_std(64), seed=21, data=replace(COUNTDOWN_DATA, style="search")),
    # the same with the target restated after every state (`[5 2 4] -> 22`) and more failed attempts
    "countdown-s-search-t": LMRecipe("countdown-s-search-t", "policy", 64, 2, 2, 640, 3000, batch_size=64, lr=3e-3,
                                     init_std=_std(64), seed=21, data=replace(COUNTDOWN_DATA, style="search-target")),
    # countdown-m's recipe on the search-target traces: does searching in context pay at 5x the parameters?
    "countdown-m-search-t": LMRecipe("countdown-m-search-t", "policy", 128, 3, 4, 640, 2000, batch_size=64, lr=2e-3,
                                     init_std=_std(128), seed=22, data=replace(COUNTDOWN_DATA, style="search-target")),
    # search traces without an oracle choosing where to go back to: retry the failed line's numbers
    # (or a random shorter prefix), never a failed move twice while another is left, more failures
    "countdown-s-search-retry": LMRecipe("countdown-s-search-retry", "policy", 64, 2, 2, 640, 3000, batch_size=64,
                                         lr=3e-3, init_std=_std(64), seed=21,
                                         data=replace(COUNTDOWN_DATA, style="search-retry")),
    # revision trained on countdown-s's own sampled attempts (the countdown-prm training split), from its weights
    "countdown-revise": LMRecipe("countdown-revise", "revise", 64, 2, 2, 320, 3000, batch_size=64, lr=1e-3,
                                 init_std=_std(64), seed=24, init_from="countdown-s",
                                 data=replace(COUNTDOWN_DATA, kind="revise", revise_frac=0.7)),
    # countdown-revise in its own draft's context (data.REVISE_INLINE_TEMPLATE; experimental)
    "countdown-revise-inline": LMRecipe("countdown-revise-inline", "revise", 64, 2, 2, 320, 3000, batch_size=64,
                                        lr=1e-3, init_std=_std(64), seed=24, init_from="countdown-s",
                                        data=replace(COUNTDOWN_DATA, kind="revise", revise_frac=0.7,
                                                     revise_style="inline")),
    # the same with half the revision attempts strictly right (the sampled pool holds 7.5%)
    "countdown-revise-inline-bal": LMRecipe("countdown-revise-inline-bal", "revise", 64, 2, 2, 320, 3000,
                                            batch_size=64, lr=1e-3, init_std=_std(64), seed=24,
                                            init_from="countdown-s",
                                            data=replace(COUNTDOWN_DATA, kind="revise", revise_frac=0.7,
                                                         revise_style="inline", revise_right_frac=0.5)),
    # the same from countdown-check's weights (which learned to check a line's arithmetic), on countdown-s's
    # attempts: shipped; its greedy revision beats a T=0.7 fresh sample at 2 combinations at 0.9x its FLOPs
    # (gate d as measured), but not its own greedy decode, and not a fresh sample when sampled at T=0.7
    "countdown-revise-inline-chk": LMRecipe("countdown-revise-inline-chk", "revise", 64, 2, 2, 320, 3000,
                                            batch_size=64, lr=1e-3, init_std=_std(64), seed=24,
                                            init_from="countdown-check", attempts_from="countdown-s",
                                            data=replace(COUNTDOWN_DATA, kind="revise", revise_frac=0.7,
                                                         revise_style="inline")),
    # countdown-revise-inline-chk with up to 3 attempts in context, the earlier ones wrong (data.HISTORY_*):
    # sequential revision as Snell et al. train it, each revision extending the chain's context (experimental):
    # tried, checker-gated chains lose to parallel samples and the history does not help (bench/testbed_sequential.py)
    "countdown-revise-hist": LMRecipe("countdown-revise-hist", "revise", 64, 2, 2, HISTORY_CTX, 3000, batch_size=64,
                                      lr=1e-3, init_std=_std(64), seed=24, init_from="countdown-check",
                                      attempts_from="countdown-s",
                                      data=replace(COUNTDOWN_DATA, kind="revise", revise_frac=0.7,
                                                   revise_style="history")),
    # a generative step checker for countdown (a verifier, the smallest policy's size): from countdown-s's
    # weights, trained to write random valid combinations and a verdict on the target, never aiming at it;
    # `prm("ttcl:countdown-check")` scores what a policy wrote by its probability (runtime/verifier_gen.py)
    "countdown-check": LMRecipe("countdown-check", "check", 64, 2, 2, 160, 4000, batch_size=64, lr=2e-3,
                                init_std=_std(64), seed=43, init_from="countdown-s",
                                data=replace(COUNTDOWN_DATA, kind="check")),
}
# What `prm(...)` needs to read a generative step checker (runtime/verifier_gen.py), in its ttcl_meta.json.
GENERATIVE_CHECK_META = {"verifier": "generative", "input_template": "{question}\n{steps}", "step_end_token": "\n",
                         "result_marker": "=", "answer_marker": "####", "verdict_prompt": VERDICT_PROMPT,
                         "verdict_yes": VERDICT_YES, "verdict_no": VERDICT_NO}

VERIFIER_SAMPLES = SampleSpec(policies=("arith-m", "arith-l"), problems_per_policy=1000, samples_per_problem=4)
# expr: 8 samples per question at T=1.0 from the smallest and the middle policy (64,000 labelled
# samples, 10x the arith verifiers'), so that batches hold whole questions for the ranking loss.
EXPR_SAMPLES = SampleSpec(policies=("expr-s", "expr-m"), problems=(5000, 3000), samples_per_problem=8,
                          holdout_frac=0.1, seed=31, task="expr", steps=EXPR_DATA.steps)
# countdown: 8 samples per question at T=1.0 from the smallest and the middle policy (64,000 labelled samples)
COUNTDOWN_SAMPLES = SampleSpec(policies=("countdown-s", "countdown-m"), problems=(5000, 3000), samples_per_problem=8,
                               holdout_frac=0.1, seed=41, task="countdown", steps=COUNTDOWN_DATA.steps)
VERIFIER_RECIPES: dict[str, VerifierRecipe] = {
    "arith-orm": VerifierRecipe("arith-orm", "orm", init_from="arith-m", train_steps=600, seed=6),
    "arith-prm": VerifierRecipe("arith-prm", "prm", init_from="arith-m", train_steps=600, seed=7),
    # no larger than the smallest policy it scores: initialised from expr-s
    "expr-prm": VerifierRecipe("expr-prm", "prm", init_from="expr-s", train_steps=900, batch_size=64, lr=1e-3,
                               seed=32, group=8, pairwise=1.0, task="expr"),
    # expr-prm's recipe on 8,000 steps (8.9 passes over its questions, against about one): is expr-prm only
    # undertrained? Tried, no: its within-question AUROC on expr-s's samples does not rise (experimental)
    "expr-prm-long": VerifierRecipe("expr-prm-long", "prm", init_from="expr-s", train_steps=8000, batch_size=64,
                                    lr=1e-3, seed=32, group=8, pairwise=1.0, task="expr"),
    # a likelihood verifier of expr-s's size: expr-s's own LM, trained on the same samples so that
    # likelihood("ttcl:expr-lik") ranks a question's right samples above its wrong ones
    "expr-lik": VerifierRecipe("expr-lik", "lik", init_from="expr-s", train_steps=1000, batch_size=64, lr=2e-4,
                               seed=33, group=8, pairwise=1.0, lm=1.0, unlikely=1.0, task="expr"),
    # expr-lik's recipe on expr-s-deep4 (1.86x expr-s): does training on the policy's samples add to what
    # depth gives the likelihood? Tried on dev, no (experimental)
    "expr-s-deep4-lik": VerifierRecipe("expr-s-deep4-lik", "lik", init_from="expr-s-deep4", train_steps=1000,
                                       batch_size=64, lr=2e-4, seed=33, group=8, pairwise=1.0, lm=1.0, unlikely=1.0,
                                       task="expr"),
    # expr-lik's recipe on expr-s-narrow8 (0.95x expr-s's parameters, on 8 layers): a likelihood verifier of the
    # policy's size, trained on its samples (experimental)
    "expr-s-narrow8-lik": VerifierRecipe("expr-s-narrow8-lik", "lik", init_from="expr-s-narrow8", train_steps=1000,
                                         batch_size=64, lr=2e-4, seed=33, group=8, pairwise=1.0, lm=1.0, unlikely=1.0,
                                         task="expr"),
    "expr-s-narrow8-long-lik": VerifierRecipe("expr-s-narrow8-long-lik", "lik", init_from="expr-s-narrow8-long",
                                              train_steps=1000, batch_size=64, lr=2e-4, seed=33, group=8,
                                              pairwise=1.0, lm=1.0, unlikely=1.0, task="expr"),
    "expr-s-narrow8-xlong-lik": VerifierRecipe("expr-s-narrow8-xlong-lik", "lik", init_from="expr-s-narrow8-xlong",
                                               train_steps=1000, batch_size=64, lr=2e-4, seed=33, group=8,
                                               pairwise=1.0, lm=1.0, unlikely=1.0, task="expr"),
    # expr-lik's recipe on the backward checker expr-back: trained on the policy's samples so that its probability
    # of the question after a derivation ranks right derivations first (experimental)
    "expr-back-lik": VerifierRecipe("expr-back-lik", "blik", init_from="expr-back", train_steps=1000, batch_size=64,
                                    lr=2e-4, seed=33, group=8, pairwise=1.0, lm=1.0, unlikely=1.0, task="expr"),
    # no larger than the smallest policy it scores: initialised from countdown-s
    "countdown-prm": VerifierRecipe("countdown-prm", "prm", init_from="countdown-s", train_steps=900, batch_size=64,
                                    lr=1e-3, seed=42, group=8, pairwise=1.0, task="countdown"),
}
SAMPLES_BY_TASK: dict[str, SampleSpec] = {"arith": VERIFIER_SAMPLES, "expr": EXPR_SAMPLES, "countdown": COUNTDOWN_SAMPLES}
# a verifier trains on its task's pool (the first verifier of a task names the pool a revise model reads)
VERIFIER_SAMPLE_SPECS: dict[str, SampleSpec] = {n: SAMPLES_BY_TASK[r.task] for n, r in VERIFIER_RECIPES.items()}
ALL = FAMILY + EXPERIMENTAL  # every recipe: the default build, then what only `--only` builds
assert set(ALL) == {*LM_RECIPES, *VERIFIER_RECIPES} and not set(FAMILY) & set(EXPERIMENTAL)

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
        attempts, init_dir = None, None
        if r.init_from:
            init_dir = out_root / r.init_from
            if not (init_dir / "config.json").is_file():
                from ttcl.errors import TtclRuntimeError

                raise TtclRuntimeError(f"{name} needs {r.init_from} in {out_root}: train it first")
        if (source := attempts_source(name)) is not None:
            policy = r.attempts_from or r.init_from or VERIFIER_SAMPLE_SPECS[source].policies[0]
            attempts = _own_attempts(policy, source, out_root, is_quick, log)
        model, meta = train_lm(r, out, log=log, attempts=attempts, init_dir=init_dir)
        if r.kind == "revise":
            inline = r.data.revise_style in ("inline", "history")
            meta["revise_template"] = REVISE_INLINE_TEMPLATE if inline else REVISE_TEMPLATE
            meta["revise_template_fields"] = ["question", "attempt"]
        if r.kind == "backward":  # not a policy: read by likelihood(...), the question after the steps
            from ttcl.zoo.verifiers import VERIFIER_USAGE

            meta |= {k: v for k, v in VERIFIER_USAGE["blik"].items() if k != "score_meaning"}
        else:
            meta["prompt_template"] = "{question}\n"
            meta["stop"] = "<eos>"
        _record_build(name, meta, log)
        if r.kind == "check":
            meta |= GENERATIVE_CHECK_META
        if r.kind in ("check", "backward"):
            write_meta(out, meta)  # the runtime verifier that scores the card reads it
        if evaluate:
            meta |= evaluate_card(name, model, out_root, meta, is_quick=is_quick, log=log)
        write_meta(out, meta)
        return meta
    if name in VERIFIER_RECIPES:
        from ttcl.zoo.verifiers import cached_rows, sample_verifier_data, train_verifier

        r = VERIFIER_RECIPES[name]
        spec = sample_spec(name, is_quick)
        if is_quick:
            r = quick(r)
        dirs = {p: out_root / p for p in spec.policies}
        missing = [p for p in [*spec.policies, r.init_from] if not (out_root / p / "config.json").is_file()]
        if missing:
            from ttcl.errors import TtclRuntimeError

            raise TtclRuntimeError(f"{name} needs {', '.join(missing)} in {out_root}: train them first")
        from ttcl.zoo.cards import _cache_path

        cache = _cache_path(out, _samples_cache_name(spec, is_quick))
        rows = cached_rows(cache, lambda: sample_verifier_data(spec, dirs, log=log), log)
        model, meta = train_verifier(r, rows, out_root / r.init_from, out, log=log)
        meta["sampled_from"] = list(spec.policies)
        meta["sample_temperature"] = spec.temperature
        _record_build(name, meta, log)
        if evaluate:
            meta |= evaluate_card(name, model, out_root, meta, is_quick=is_quick, log=log)
        write_meta(out, meta)
        return meta
    from ttcl.errors import TtclRuntimeError

    raise TtclRuntimeError(f"no recipe named {name!r}; known: {', '.join(ALL)}")


def evaluate_card(name: str, model, out_root: Path, meta: dict, *, is_quick: bool = False, log: Log = print) -> dict:
    """Evaluate the trained model `name` in out_root/name (`model`: it, loaded) on its card's fixed set and write
    its card (README.md); returns what the evaluation adds to its ttcl_meta.json. A verifier's card scores the
    card samples of the policies in out_root (drawn again where no build saved them)."""
    out = out_root / name
    if name in LM_RECIPES:
        r = LM_RECIPES[name]
        if r.kind in ("check", "backward"):  # a verifier's card: it scores the policies' card samples
            from ttcl.zoo import expr_cards

            policies = [p for p in SAMPLES_BY_TASK[r.data.task].policies if (out_root / p / "config.json").is_file()]
            return expr_cards.evaluate_verifier(out, out, meta, policies, log=log)
        if r.data.task in ("expr", "countdown"):
            from ttcl.zoo import expr_cards

            per_level = 4 if is_quick else expr_cards.CARD_PER_LEVEL
            k = 4 if is_quick else expr_cards.CARD_SAMPLES
            return expr_cards.evaluate_policy(model, out, meta, per_level, k, log=log)
        from ttcl.zoo.cards import evaluate_policy

        per_level = 4 if is_quick else CARD_PER_LEVEL
        k = 4 if is_quick else CARD_SAMPLES
        return evaluate_policy(model, out, meta, per_level, k, CARD_TEMPERATURE, log=log)
    r = VERIFIER_RECIPES[name]
    spec = sample_spec(name, is_quick)
    if spec.task in ("expr", "countdown"):
        from ttcl.zoo import expr_cards

        scorer = out if r.kind in ("lik", "blik") else model  # a lik verifier is read through likelihood(...)
        return expr_cards.evaluate_verifier(scorer, out, meta, list(spec.policies), log=log)
    from ttcl.zoo.cards import evaluate_verifier

    return evaluate_verifier(model, out, meta, out_root, is_quick, log=log)


def _own_attempts(policy: str, source: str, out_root: Path, is_quick: bool, log: Log) -> list[tuple[str, str]]:
    """The policy's own sampled attempts from the verifier `source`'s data (its training split)."""
    from ttcl.zoo.cards import _cache_path
    from ttcl.zoo.verifiers import cached_rows, sample_verifier_data

    spec = sample_spec(source, is_quick)
    cache = _cache_path(out_root / source, _samples_cache_name(spec, is_quick))
    rows = cached_rows(cache, lambda: sample_verifier_data(spec, {p: out_root / p for p in spec.policies}, log=log), log)
    return [(x["question"], x["completion"]) for x in rows if x["policy"] == policy and x["split"] == "train"]


def sample_spec(verifier: str, is_quick: bool = False) -> SampleSpec:
    """Which samples train `verifier` (a few per policy under --quick)."""
    spec = VERIFIER_SAMPLE_SPECS[verifier]
    if is_quick:
        spec = replace(spec, problems_per_policy=40, problems=(), samples_per_problem=min(4, spec.samples_per_problem))
    return spec


def _samples_cache_name(spec: SampleSpec, is_quick: bool) -> str:
    tag = "" if spec.task == "arith" else f"_{spec.task}"
    return f"verifier_samples{tag}{'_quick' if is_quick else ''}"


def attempts_source(name: str) -> str | None:
    """The verifier whose sampled data feeds revise model `name` its own attempts: for a task
    other than arith, the verifier sampling that task (expr-revise: expr-prm's samples)."""
    r = LM_RECIPES.get(name)
    if r is None or r.data.kind != "revise" or r.data.task == "arith":
        return None
    return next((v for v, s in VERIFIER_SAMPLE_SPECS.items() if s.task == r.data.task), None)


def dependencies(name: str, evaluate: bool = True) -> tuple[str, ...]:
    """The models `name`'s build reads, straight from its recipe: an LM's `init_from` and, for a
    revise model trained on sampled attempts, the policies those samples come from; a verifier's
    sampled policies and its `init_from`; with `evaluate`, what its card reads too."""
    if name in LM_RECIPES:
        r = LM_RECIPES[name]
        source = attempts_source(name)
        deps = [*([r.init_from] if r.init_from else []), *(VERIFIER_SAMPLE_SPECS[source].policies if source else ())]
        if r.kind == "check" and evaluate:  # its card scores the policies' card samples
            deps += [p for s in VERIFIER_SAMPLE_SPECS.values() if s.task == r.data.task for p in s.policies]
    elif name in VERIFIER_RECIPES:
        deps = [*VERIFIER_SAMPLE_SPECS[name].policies, VERIFIER_RECIPES[name].init_from]
    else:
        from ttcl.errors import TtclRuntimeError

        raise TtclRuntimeError(f"no recipe named {name!r}; known: {', '.join(ALL)}")
    return tuple(dict.fromkeys(deps))


# The CPU kernels (torch's ATEN_CPU_CAPABILITY) each shipped model was trained with. Float results
# differ between AVX2 and AVX512 kernels, so `ttcl zoo train` runs each build on the kernels its
# shipped file came from (the arith family was trained on an AVX2 machine, the rest on AVX512);
# a CPU that lacks them cannot rebuild that model bit for bit.
SHIPPED_CPU_CAPABILITY = {"arith": "AVX2"}
DEFAULT_CPU_CAPABILITY = "AVX512"


def cpu_capability(name: str) -> str:
    """The CPU kernels `name`'s shipped weights were trained with."""
    if name in LM_RECIPES:
        task = LM_RECIPES[name].data.task
    elif name in VERIFIER_RECIPES:
        task = VERIFIER_RECIPES[name].task
    else:
        return DEFAULT_CPU_CAPABILITY
    return SHIPPED_CPU_CAPABILITY.get(task, DEFAULT_CPU_CAPABILITY)


def set_kernels(name: str) -> None:
    """Run this process on the CPU kernels `name`'s shipped file was trained with; torch reads the setting at its
    first kernel call, so call it before any (a build's worker per model, `ttcl zoo card`)."""
    import os

    os.environ["ATEN_CPU_CAPABILITY"] = cpu_capability(name).lower()


def _record_build(name: str, meta: dict, log: Log) -> None:
    meta["build"] = build_environment()
    want, got = cpu_capability(name), meta["build"]["cpu_capability"]
    if got != want:
        log(f"warning: {name} was shipped from {want} CPU kernels and this build ran on {got}: "
            "its weights will differ from the shipped file's, and so may its card figures (a different, "
            "equally valid model; see 'Reproducing' in ttcl/zoo/README.md)")


# cpuinfo flags that change which kernels torch's BLAS (MKL) and oneDNN pick, so float results
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """The processor a build ran on: vendor, model and the vector flags that matter. Matching
    ATEN_CPU_CAPABILITY is not enough for the same bytes: MKL picks its own kernels per processor
    (measured: every model differs when rebuilt on a processor with AMX; ttcl/zoo/README.md)."""
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    first: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    if not first:
        return {"processor": platform.processor() or platform.machine()}
    flags = set(first.get("flags", "").split())
    return {"vendor": first.get("vendor_id", "?"), "model_name": first.get("model name", "?"),
            "family_model": f"{first.get('cpu family', '?')}/{first.get('model', '?')}",
            "flags": [f for f in CPU_FLAGS if f in flags]}


def build_environment() -> dict:
    """What a bit-for-bit rebuild must match: float results of the training kernels depend on
    the torch and transformers versions, on the CPU's vector instruction set and on the processor
    (MKL's own kernel choice)."""
    import platform

    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "machine": platform.machine(), "cpu": cpu_identity()}


def dump(meta: dict) -> str:
    return json.dumps(meta, indent=2)
