"""Cards for the testbed v2 families (`expr-*`, `countdown-*`): evaluation on the held-out card
set and README.md.

The card set is `ttcl.zoo.testbed.BEDS[task].problems(CARD_PER_LEVEL)` (seed
`testbed.EVAL_SEED`, never drawn by training). A policy card reports greedy,
maj@16, pass@16 and strict coverage per difficulty with 95% Wilson
intervals; a verifier card reports its pooled and within-question AUROC and
weighted/best-of-16 on each policy's card samples (cached by the policy
builds, so the verifier card needs no new sampling).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ttcl.zoo.registry import FAMILY
from ttcl.zoo.train import Log

CARD_PER_LEVEL = 100
CARD_SAMPLES = 16
CARD_TEMPERATURE = 0.7  # chosen on the dev set (seed 555, steps 3..5: maj@16 and pass@16 vs 0.5 and 1.0), not on the card set


def _cache(out: Path, name: str) -> Path:
    from ttcl.zoo.cards import _cache_path

    return _cache_path(out, f"expr_{name}")


def save_items(items, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": it.problem.question, "greedy": it.greedy,
                                        "samples": it.samples}) + "\n" for it in items))


def load_items(path: Path, task: str = "expr"):
    from ttcl.zoo.testbed import BEDS, Item

    parse_question = BEDS[task].module.parse_question
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        p = parse_question(d["question"])
        assert p is not None
        out.append(Item(p, d["greedy"], d["samples"]))
    return out


def _bundled(name: str) -> bool:
    """Whether the package ships `name` (the default build's models); other recipes are built on request."""
    return name in FAMILY


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def policy_rows(items, k: int) -> list[dict]:
    from ttcl.zoo.testbed import (
        by_steps,
        distinct_correct_chains,
        greedy_right,
        method_right,
        wilson,
    )

    rows = []
    for steps, its in by_steps(items).items():
        n = len(its)
        g = sum(greedy_right(it) for it in its)
        row: dict = {"steps": steps, "n": n, "greedy": g / n, "greedy_ci": wilson(g, n)}
        if k:
            for m in ("maj", "pass", "strict"):
                v = sum(method_right(it, m, k) for it in its)
                row[f"{m}@{k}"] = v / n
                row[f"{m}@{k}_ci"] = wilson(v, n)
            row["sample_acc"] = sum(sum(it.right()) for it in its) / (n * k)
            row["distinct_correct_chains"] = sum(distinct_correct_chains(it) for it in its) / n
        rows.append(row)
    return rows


def evaluate_policy(model, out: Path, meta: dict, per_level: int, k: int, log: Log = print) -> dict:
    from transformers import AutoTokenizer

    from ttcl.zoo.testbed import BEDS, EVAL_SEED, chain_style, greedy_right, run_policy

    bed = BEDS[meta.get("task", "expr")]
    tok = AutoTokenizer.from_pretrained(str(out))
    t0 = time.time()
    items = run_policy(model, tok, bed.problems(per_level), k=k, temperature=CARD_TEMPERATURE,
                       style=chain_style(meta))
    save_items(items, _cache(out, meta["name"]))
    rows = policy_rows(items, k)
    acc = sum(greedy_right(it) for it in items) / len(items)
    log(f"[{meta['name']}] eval {time.time() - t0:.0f}s greedy {acc:.1%} "
        + " ".join(f"{r['steps']}:{r['greedy']:.2f}" for r in rows))
    extra = {
        "headline": {"metric": f"greedy accuracy, steps {bed.steps[0]}..{bed.steps[-1]}", "value": round(acc, 4)},
        "eval": {"per_level": per_level, "samples": k, "temperature": CARD_TEMPERATURE, "seed": EVAL_SEED,
                 "by_steps": [_rounded(r) for r in rows]},
    }
    write_card(out, meta | extra)
    return extra


def _card_items(policy_dir: Path, name: str, task: str, log: Log):
    """The policy's card samples: those its build saved, else drawn again from the policy in
    `policy_dir` exactly as its card draws them (same problems, seed and temperature)."""
    path = _cache(policy_dir, name)
    if path.is_file():
        return load_items(path, task)
    if not (policy_dir / "config.json").is_file():
        return None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.testbed import BEDS, chain_style, run_policy

    log(f"[{name}] drawing its card samples again (none saved in {policy_dir})")
    model = AutoModelForCausalLM.from_pretrained(str(policy_dir), local_files_only=True).eval()
    style = chain_style(json.loads((policy_dir / "ttcl_meta.json").read_text()))
    items = run_policy(model, AutoTokenizer.from_pretrained(str(policy_dir)), BEDS[task].problems(CARD_PER_LEVEL),
                       k=CARD_SAMPLES, temperature=CARD_TEMPERATURE, style=style)
    save_items(items, path)
    return items


def _step_scores(model, meta: dict, questions: list[str], completions: list[str]) -> list[list[float]]:
    """Per-step scores: a PRM's token-classifier head, or (`model` the directory of a generative
    step checker) the runtime's `prm(...)` scorer, exactly as a program would score."""
    from ttcl.runtime.verifier_gen import GenerativeStepVerifier, is_generative, likelihood_verifier

    # a lik verifier is scored as a program scores it, by likelihood(...); a generative checker by prm(...)
    lik = meta.get("kind") in ("lik", "blik", "backward")
    cls = likelihood_verifier if lik else GenerativeStepVerifier if is_generative(meta) else None
    if cls is not None:
        v = cls(str(model), device="cpu", dtype="float32")
        return v.step_scores([(q.removesuffix("\n"), c) for q, c in zip(questions, completions, strict=True)])
    from ttcl.zoo.data import build_tokenizer
    from ttcl.zoo.sampling import score_steps

    return score_steps(model, build_tokenizer(model.config.n_positions, padding_side="right"), questions, completions)


def evaluate_verifier(model, out: Path, meta: dict, policies: list[str], log: Log = print) -> dict:
    """AUROCs and weighted/best-of-k of this verifier (last-step score) on each policy's card samples;
    `model` is a PRM, or the directory of a generative step checker or of a `lik` verifier."""
    from ttcl.zoo.testbed import (
        BEDS,
        EVAL_SEED,
        by_steps,
        method_right,
        pooled_auroc,
        within_question_auroc,
    )

    task = meta.get("task", "expr")
    MIDDLE = BEDS[task].middle  # noqa: N806
    per_policy = []
    for name in policies:
        items = _card_items(out.parent / name, name, task, log)
        if items is None:
            log(f"[{meta['name']}] no card samples of {name} and no {name} in {out.parent}: skipped")
            continue
        qs = [it.problem.question + "\n" for it in items for _ in it.samples]
        cs = [c for it in items for c in it.samples]
        steps = _step_scores(model, meta, qs, cs)
        flat = [s[-1] if s else 0.0 for s in steps]
        i = 0
        for it in items:
            it.scores = flat[i : i + len(it.samples)]
            i += len(it.samples)
        k = len(items[0].samples)
        rows = []
        for st, its in by_steps(items).items():
            wq, nq = within_question_auroc(its)
            rows.append({"steps": st, "n": len(its), "pooled_auroc": round(pooled_auroc(its), 4),
                         "within_auroc": round(wq, 4), "within_questions": nq,
                         f"maj@{k}": round(sum(method_right(x, "maj", k) for x in its) / len(its), 4),
                         f"weighted@{k}": round(sum(method_right(x, "weighted", k) for x in its) / len(its), 4),
                         f"best@{k}": round(sum(method_right(x, "best", k) for x in its) / len(its), 4),
                         f"pass@{k}": round(sum(method_right(x, "pass", k) for x in its) / len(its), 4)})
        mid = [it for it in items if it.problem.steps in MIDDLE]
        wq, nq = within_question_auroc(mid)
        per_policy.append({"policy": name, "samples": k, "pooled_auroc": round(pooled_auroc(items), 4),
                           "within_auroc_middle": round(wq, 4), "within_questions_middle": nq,
                           "by_steps": rows})
        # the log prints the card's rounded figures (QA pass: 0.763 here, 0.762 on the card, rounded twice)
        log(f"[{meta['name']}] on {name}: pooled AUROC {round(pooled_auroc(items), 4):.3f}, within-question "
            f"(steps {MIDDLE[0]}..{MIDDLE[-1]}) {round(wq, 4):.3f} over {nq} questions")
    extra: dict = {"eval": {"seed": EVAL_SEED, "policies": per_policy}}
    if per_policy:
        first = per_policy[0]
        extra["headline"] = {"metric": f"within-question auroc on {first['policy']}, steps "
                                       f"{MIDDLE[0]}..{MIDDLE[-1]}", "value": first["within_auroc_middle"]}
    write_card(out, meta | extra)
    return extra


def _rounded(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, float):
            out[k] = round(v, 4)
        elif isinstance(v, tuple):
            out[k] = [round(x, 4) for x in v]
        else:
            out[k] = v
    return out


def _ci(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_ci"]
    return f"{_pct(r[key])} [{_pct(lo)}, {_pct(hi)}]"


_POLICY_TEXT = {
    "expr": "a chain-of-thought policy: one reduction per line, then `#### v1,v2,...`, then `<eos>`",
    "countdown": "a chain-of-thought policy: one combination of two available numbers per line, then "
                 "`#### EXPRESSION`, then `<eos>`",
}
# expr policies trained on the chain styles that write the state down (runtime/tasks/expr.py)
_STYLE_TEXT = {
    "state": ("a chain-of-thought policy: per line, the question rewritten with one operation reduced, then "
              "`#### v1,v2,...`, then `<eos>`",
              "The prompt is the question and a newline, e.g. `(12+7)*3-(30-4); 5*8\\n`. Each line rewrites the "
              "question with one operation replaced by its value (chain style `state`), in any valid order, and "
              "the model ends with the values in question order: `19*3-(30-4); 5*8\\n19*3-26; 5*8\\n57-26; 5*8"
              "\\n31; 5*8\\n31; 40\\n#### 31,40<eos>`."),
    "trace": ("a chain-of-thought policy: per line, one operation and the question rewritten with it reduced, "
              "then `#### v1,v2,...`, then `<eos>`",
              "The prompt is the question and a newline, e.g. `(12+7)*3-(30-4); 5*8\\n`. Each line writes one "
              "operation and the question rewritten with it replaced by its value (chain style `trace`), in any "
              "valid order, and the model ends with the values in question order: `12+7=19 -> 19*3-(30-4); "
              "5*8\\n30-4=26 -> 19*3-26; 5*8\\n...\\n5*8=40 -> 31; 40\\n#### 31,40<eos>`."),
    "subst": ("a chain-of-thought policy: per line, one operation, written as the sub-expression it reduces "
              "and that sub-expression with its operands' values, then `#### v1,v2,...`, then `<eos>`",
              "The prompt is the question and a newline, e.g. `(12+7)*3-(30-4); 5*8\\n`. Each line reduces one "
              "operation (chain style `subst`), in any valid order: an operation on two literals as `12+7=19`, "
              "any other as its sub-expression, the values substituted, and its value (`(12+7)*3=19*3=57`); "
              "the model ends with the values in question order: `30-4=26\\n12+7=19\\n(12+7)*3=19*3=57\\n"
              "(12+7)*3-(30-4)=57-26=31\\n5*8=40\\n#### 31,40<eos>`."),
}
_STEPS_TEXT = {"expr": "operations over all expressions", "countdown": "the count of numbers minus one"}
_PROMPT_TEXT = {
    "expr": "The prompt is the question and a newline, e.g. `(12+7)*3-(30-4); 5*8\\n`. The model reduces "
            "one operation per line in any valid order and ends with the values in question order: "
            "`12+7=19\\n30-4=26\\n19*3=57\\n57-26=31\\n5*8=40\\n#### 31,40<eos>`.",
    "countdown": "The prompt is the question and a newline, e.g. `3 7 5 2 -> 22\\n`. The model combines two "
                 "available numbers per line, writing the numbers left in brackets, stops once it has made the "
                 "target, and ends with the whole expression, which must use given numbers at most once each and "
                 "equal the target: `7-3=4 [5 2 4]\\n4*5=20 [2 20]\\n20+2=22 [22]\\n#### (7-3)*5+2<eos>`.",
}


def _revise_mix(meta: dict) -> str:
    """How a reviser's data splits between its own attempts and plain solutions."""
    frac = meta.get("recipe", {}).get("data", {}).get("revise_frac", 0.5)
    if frac == 0.5:
        return "attempts (half the data) and plain solutions (the other half)"
    return f"attempts ({round(100 * frac)}% of the data) and plain solutions (the rest)"


def _inline_reviser(meta: dict) -> bool:
    """A reviser that revises in its own draft's context (`DataSpec.revise_style == "inline"`)."""
    return meta.get("recipe", {}).get("data", {}).get("revise_style") in ("inline", "history")


def _revise_text(meta: dict, task: str) -> str:
    """What a reviser does and what it was trained on (a separate or an in-context reviser)."""
    init = meta.get("init_from")
    attempts = meta.get("recipe", {}).get("attempts_from") or init
    if _inline_reviser(meta):
        return ("an in-context reviser: it drafts a solution to `{question}\\n` as a policy does, and after its "
                "draft and `\\nfix:\\n` (`{question}\\n{attempt}\\nfix:\\n`) it restates the answer line to "
                "keep the draft or writes a whole new solution, so a runtime with a prefix cache computes only "
                f"`fix:` and the revision; trained from `ttcl:{init}`'s weights on {attempts}'s own sampled "
                + _revise_mix(meta) + "; a strictly right attempt's target is its answer line restated, any "
                "other's a right solution; `revise_template` in `ttcl_meta.json`")
    return ("a reviser: given `{question}\\nattempt:\\n{attempt}\\nfix:\\n` it writes a full solution; "
            f"trained from `ttcl:{init}`'s weights on {attempts}'s own sampled " + _revise_mix(meta)
            + ("; a strictly right attempt is kept as its own target, any other is paired with a right "
               "solution" if task == "countdown" else "") + "; `revise_template` in `ttcl_meta.json`")


def _own_split_lines(meta: dict) -> list[str]:
    """A verifier card's AUROCs on its own held-out split of the sample pool."""
    au = {k: v for k, v in meta.items() if k.startswith("auroc")}
    if not au:
        return []
    return [f"On its own held-out split ({meta.get('heldout_samples'):,} samples of questions never trained on):",
            "", *(f"- {k}: {v:.3f}" for k, v in au.items()), ""]


def write_card(out: Path, meta: dict) -> None:
    name, kind = meta["name"], meta["kind"]
    task = meta.get("task", "expr")
    from ttcl.zoo.testbed import chain_style

    policy_text, prompt_text = _STYLE_TEXT.get(chain_style(meta), (_POLICY_TEXT[task], _PROMPT_TEXT[task]))
    what = {"policy": policy_text,
            "prm": "a process reward model (token classification, 1 label, read at each step end), trained on "
                   f"its policies' own samples labelled by the exact `{task}` checker, with a within-question "
                   "ranking loss on the last step's score",
            "revise": _revise_text(meta, task),
            "check": "a generative step checker (a causal LM used as a process verifier): trained from "
                     f"`ttcl:{meta.get('init_from')}`'s weights to write random valid combinations (no goal) and "
                     "a verdict on whether the last value is the target; `prm(\"ttcl:" + name + "\")` scores each "
                     "line by the probability it gives what the policy wrote",
            "lik": "a likelihood verifier (a causal LM read by `likelihood(\"ttcl:" + name + "\")`): "
                   f"`ttcl:{meta.get('init_from')}`'s weights trained on its policies' own samples, labelled by "
                   f"the exact `{task}` checker, so that within a question the right samples get more probability "
                   "than the wrong ones (a within-question ranking loss on the whole text's log-probability, "
                   "-log(1 - P(line)) on each sample's first wrong line, and the language-modelling loss on "
                   "the lines before it)"}.get(kind, kind)
    lines = [
        f"# {name}", "",
        f"Part of ttcl's testbed v2 ({'`ttcl:' + name + '`' if _bundled(name) else 'built, not bundled'}): {what}. Task: `{task}` (`ttcl data {task}`), whose exact "
        f"checker is `check(\"{task}\")` (outcome, steps, and with `agg` a process scorer). Loads offline "
        "with the ordinary transformers `from_pretrained` path.", "",
        "| field | value |", "|---|---|",
        f"| architecture | `{meta.get('architecture')}` |",
        f"| parameters | {meta.get('params_total'):,} total, {meta.get('params_non_embedding'):,} non-embedding |",
        f"| shape | {meta.get('n_layer')} layers, d_model {meta.get('d_model')}, {meta.get('n_head')} "
        f"head{'s' if meta.get('n_head') != 1 else ''} (head_dim {meta.get('d_model', 0) // max(1, meta.get('n_head', 1))}), n_ctx {meta.get('n_ctx')} |",
        "| tokenizer | characters (`PreTrainedTokenizerFast`, WordLevel), `<pad>` and `<eos>` |",
        f"| training | {meta.get('train_steps')} steps of {meta.get('batch_size')} sequences, "
        f"{meta.get('training_tokens'):,} tokens, {meta.get('training_flops'):.3g} FLOPs (6·N·D), "
        f"{meta.get('wall_seconds')} s on one thread of a shared 2-core CPU in the build that made these weights "
        f"(`ttcl models` shows the last whole-zoo build's time), seed {meta.get('seed')} |",
    ]
    if (g := meta.get("grown_from")):
        lines.append(f"| grown from | `ttcl:{g['name']}` (d_model {g['d_model']}, {g['n_head']} heads), widened by "
                     "duplication so that it starts computing that model's function (ttcl/zoo/grow.py), plus "
                     f"noise of std {g['noise_std']:g}; with {g['name']}'s training, "
                     f"{meta.get('training_flops_with_init'):.3g} training FLOPs |")
    elif meta.get("init_from"):
        lines.append(f"| initialised from | `ttcl:{meta['init_from']}` |")
    if meta.get("sampled_from"):
        lines.append(f"| trained on samples of | {', '.join('`ttcl:' + p + '`' for p in meta['sampled_from'])} "
                     f"({meta.get('train_samples'):,} labelled samples) |")
    lines.append("")
    ev = meta.get("eval") or {}
    if kind in ("policy", "revise"):
        lines += ["## Prompt format", "", prompt_text, ""]
        if ev:
            k = ev["samples"]
            lines += ["## Accuracy by difficulty (held-out card set)", "",
                      f"`ttcl.zoo.testbed.BEDS[\"{task}\"].problems({ev['per_level']})` (seed {ev['seed']}), "
                      f"{ev['per_level']} items per difficulty (`steps`: {_STEPS_TEXT[task]}); {k} samples at "
                      f"T={ev['temperature']}. "
                      "In %, with 95% Wilson intervals. `strict`: some sample right with every step right.", "",
                      f"| steps | greedy | maj@{k} | pass@{k} | strict@{k} | sample acc | distinct correct chains / {k} |",
                      "|---|---|---|---|---|---|---|"]
            for r in ev["by_steps"]:
                lines.append(f"| {r['steps']} | {_ci(r, 'greedy')} | {_ci(r, f'maj@{k}')} | {_ci(r, f'pass@{k}')} | "
                             f"{_ci(r, f'strict@{k}')} | {_pct(r['sample_acc'])} | {r['distinct_correct_chains']:.2f} |")
            lines.append("")
    elif kind == "check":
        lines += ["## How to score", "", "- input: `{question}\\n{steps}` (the completion's non-empty stripped "
                  "lines each followed by `\\n`), then `?` when the completion has a `####` line",
                  "- step score: the product over steps so far of the probability of the tokens after `=` "
                  "(the value and the numbers left); the `####` line scores all its tokens; the verdict "
                  "P(`y`) / (P(`y`) + P(`n`)) after `?` is the last factor. The last score ranks whole "
                  "solutions (runtime/verifier_gen.py, `ttcl_meta.json` says how)",
                  "- one forward pass per completion, the cost of a PRM of the same size", ""]
    elif kind == "lik":
        lines += ["## How to score", "", f"- `likelihood(\"ttcl:{name}\")` (runtime/verifier_gen.py): input "
                  "`{question}\\n` then the completion's non-empty stripped lines joined by `\\n` (none after the "
                  "last); the score is the model's probability of those lines, cumulative per line, so a "
                  "partial solution is scored too", "- one forward pass per completion, the cost of a pass of "
                  f"`ttcl:{meta.get('init_from')}`, the policy it was trained from", ""]
        lines += _own_split_lines(meta)
    elif kind in ("backward", "blik"):
        lines += ["## How to score", "", f"- `likelihood(\"ttcl:{name}\")` (runtime/verifier_gen.py, a backward "
                  "checker): input the completion's non-empty stripped lines each followed by `\\n`, then `?`, "
                  "then the question and `<eos>`; the score is the model's probability of the question and "
                  "`<eos>`, one score per completion (a partial solution is not scored line by line)",
                  "- one forward pass per completion, the cost of a pass of a policy of its shape", ""]
        lines += _own_split_lines(meta) if kind == "blik" else []
    else:
        lines += ["## How to score", "", "- input: `{question}\\n{steps}`, the completion's non-empty stripped "
                  "lines each followed by `\\n`", "- score: sigmoid(logit) at each step-end `\\n` after the "
                  "question = P(every step so far is right); the last step's score ranks whole solutions",
                  "- padding: right", ""]
        lines += _own_split_lines(meta)
    if kind not in ("policy", "revise"):
        for pol in ev.get("policies", []):
            k = pol["samples"]
            lines += [f"## On `ttcl:{pol['policy']}` samples (held-out card set, seed {ev['seed']})", "",
                      f"Pooled AUROC {pol['pooled_auroc']:.3f}; within-question AUROC at the middle difficulties "
                      f"{pol['within_auroc_middle']:.3f} over {pol['within_questions_middle']} questions "
                      "with both right and wrong samples. Accuracy in %:", "",
                      f"| steps | pooled AUROC | within-question AUROC | maj@{k} | weighted@{k} | best@{k} | pass@{k} |",
                      "|---|---|---|---|---|---|---|"]
            for r in pol["by_steps"]:
                lines.append(f"| {r['steps']} | {r['pooled_auroc']:.3f} | {r['within_auroc']:.3f} | "
                             f"{_pct(r[f'maj@{k}'])} | {_pct(r[f'weighted@{k}'])} | {_pct(r[f'best@{k}'])} | "
                             f"{_pct(r[f'pass@{k}'])} |")
            lines.append("")
    if kind == "revise" and _inline_reviser(meta):
        lines += ["## Revision against a fresh sample (gate d)", "",
                  f"`python bench/testbed_revision.py --task {task} --inline --reviser ttcl:{name} --seed SEEDS "
                  "--per-level 150 --fresh 4` drafts at T=0.7, revises greedily in the draft's context, and "
                  "prints round 1 - fresh and revision's own flips per bin, with the FLOPs of each, and "
                  "round 1 - the model's own greedy decode of the question (`--revise-temperature 0.7` "
                  "samples the revision at the fresh sample's temperature instead): ttcl/zoo/README.md, "
                  "\"Gate (d) on twenty more evaluation sets\" and \"Is the gain revision's, or greedy "
                  "decoding's?\".", ""]
    if _bundled(name):
        # a model that reads others rebuilds beside the shipped ones
        from ttcl.zoo.family import dependencies

        deps = " --shipped-deps" if dependencies(name) else ""
        lines += [f"Reproduce: `ttcl zoo train --only {name}{deps}` (writes to `./ttcl-zoo/{name}`; see ttcl/zoo/README.md). "
                  f"Evaluate this card's tables again from the shipped weights, without training: "
                  f"`ttcl zoo card {name}`.", ""]
    else:  # a recipe the package does not ship: built where the user asks, from the shipped models it reads
        lines += [f"Not bundled in the package: build it with `ttcl zoo train --only {name} --shipped-deps` "
                  f"(writes to `./ttcl-zoo/{name}`) and pass that directory where a model is asked for "
                  "(`--model policy=./ttcl-zoo/" + name + "`); see ttcl/zoo/README.md.", ""]
    (out / "README.md").write_text("\n".join(lines))
