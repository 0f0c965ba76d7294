"""Evaluation for the model cards, and the cards themselves (README.md beside each model)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ttcl.runtime.tasks.arith import parse_question
from ttcl.zoo.evaluate import Record, card_table, eval_problems, greedy_acc, mean_metric, run_policy
from ttcl.zoo.registry import MODELS_DIR
from ttcl.zoo.train import Log


def cache_dir() -> Path:
    """Samples kept between build steps (card samples feed the verifier cards). Outside the
    package, so nothing of it ships: $TTCL_ZOO_CACHE or ~/.cache/ttcl/zoo."""
    env = os.environ.get("TTCL_ZOO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ttcl" / "zoo"


def _cache_path(out: Path, name: str) -> Path:
    # keyed by the output root too, so a --quick build never feeds a real one
    tag = "pkg" if out.parent.resolve() == MODELS_DIR.resolve() else hashlib.sha1(str(out.parent.resolve()).encode()).hexdigest()[:10]
    return cache_dir() / tag / f"eval_{name}.jsonl"


def save_records(recs: list[Record], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": r.problem.question, "greedy": r.greedy,
                                        "samples": r.samples}) + "\n" for r in recs))


def load_records(path: Path) -> list[Record]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        p = parse_question(d["question"])
        assert p is not None
        out.append(Record(p, d["greedy"], d["samples"]))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def evaluate_policy(model, out: Path, meta: dict, per_level: int, k: int, temperature: float,
                    log: Log = print) -> dict:
    """Greedy, maj@k and pass@k by difficulty on the fixed evaluation set; writes README.md."""
    import time

    from transformers import AutoTokenizer

    from ttcl.zoo.data import REVISE_TEMPLATE

    tok = AutoTokenizer.from_pretrained(str(out))
    problems = eval_problems(per_level)
    t0 = time.time()
    # The revise model is carded as a plain policy (half its data is plain CoT);
    # revision itself is measured by bench/zoo_table.py.
    recs = run_policy(model, tok, problems, k=k, temperature=temperature)
    rows = card_table(recs, k)
    save_records(recs, _cache_path(out, meta["name"]))
    acc = greedy_acc(recs)
    log(f"[{meta['name']}] eval {time.time() - t0:.0f}s greedy {acc:.1%} " +
        " ".join(f"{r['steps']}:{r['greedy']:.2f}" for r in rows))
    extra = {
        "headline": {"metric": "greedy accuracy, steps 1..8", "value": round(acc, 4)},
        "eval": {"per_level": per_level, "samples": k, "temperature": temperature, "seed": 1234,
                 "by_steps": [{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in r.items()} for r in rows]},
    }
    if meta["kind"] == "revise":
        extra["revise_template"] = REVISE_TEMPLATE
    write_card(out, meta | extra)
    return extra


CARD_POLICY = "arith-m"  # whose card samples the verifier cards vote over


def evaluate_verifier(model, out: Path, meta: dict, out_root: Path, is_quick: bool, log: Log = print) -> dict:
    """Verifier-weighted voting over a policy's card samples (CARD_POLICY), by difficulty."""
    from ttcl.zoo.data import build_tokenizer
    from ttcl.zoo.sampling import score_sequences, score_steps

    path = _cache_path(out, CARD_POLICY)
    if not path.is_file():
        write_card(out, meta)
        return {}
    recs = load_records(path)
    tok = build_tokenizer(model.config.n_positions, padding_side="right")
    flat_q = [r.problem.question for r in recs for _ in r.samples]
    flat_c = [c for r in recs for c in r.samples]
    if meta["kind"] == "orm":
        flat = score_sequences(model, tok, [q + "\n" + c for q, c in zip(flat_q, flat_c, strict=True)])
    else:
        steps = score_steps(model, tok, [q + "\n" for q in flat_q], flat_c)
        flat = [min(s) if s else 0.0 for s in steps]
    i = 0
    for r in recs:
        r.scores = flat[i : i + len(r.samples)]
        i += len(r.samples)
    k = len(recs[0].samples)
    rows = []
    from ttcl.zoo.evaluate import by_level

    for steps_, rs in by_level(recs).items():
        rows.append({"steps": steps_, "n": len(rs), "greedy": round(greedy_acc(rs), 4),
                     f"maj@{k}": round(mean_metric(rs, k, "maj"), 4),
                     f"weighted@{k}": round(mean_metric(rs, k, "weighted"), 4),
                     f"best@{k}": round(mean_metric(rs, k, "best"), 4),
                     f"pass@{k}": round(mean_metric(rs, k, "pass"), 4)})
    extra = {"eval": {"policy": CARD_POLICY, "samples": k, "by_steps": rows, "within": within_question(recs)}}
    log(f"[{meta['name']}] weighted@{k} on {CARD_POLICY}: " + " ".join(f"{r['steps']}:{r[f'weighted@{k}']:.2f}" for r in rows))
    write_card(out, meta | extra)
    return extra


WITHIN_RESAMPLES = 2000  # bootstrap resamples of the questions, seeded: the card's interval is reproducible


def within_question(recs: list[Record]) -> list[dict]:
    """Per difficulty (and all): the verifier's AUROC inside each question that has right and wrong samples,
    averaged over those questions, with a 95% bootstrap interval over them; and the pooled AUROC over every
    sample, which mostly measures how hard the question is. The arith verifier cards gave the pooled figure
    only (QA pass; issue 7 asks every verifier card for the within-question one)."""
    import numpy as np

    from ttcl.zoo.evaluate import auroc, by_level

    out = []
    for steps, rs in [*by_level(recs).items(), ("all", recs)]:
        per_q, flat_s, flat_y = [], [], []
        for r in rs:
            ys = r.outcomes()
            flat_s += list(r.scores or [])
            flat_y += ys
            if 0 < sum(ys) < len(ys):
                per_q.append(auroc(r.scores or [], ys))
        row: dict = {"steps": steps, "questions": len(rs), "mixed": len(per_q),
                     "pooled": round(auroc(flat_s, flat_y), 4) if 0 < sum(flat_y) < len(flat_y) else None}
        if per_q:
            rng = np.random.default_rng(0)
            v = np.asarray(per_q)
            boot = v[rng.integers(0, len(v), size=(WITHIN_RESAMPLES, len(v)))].mean(axis=1)
            row |= {"within": round(float(v.mean()), 4), "lo": round(float(np.quantile(boot, 0.025)), 4),
                    "hi": round(float(np.quantile(boot, 0.975)), 4)}
        out.append(row)
    return out


def _within_table(rows: list[dict]) -> str:
    head = ("| steps | questions | with right and wrong samples | within-question AUROC [95% CI] | pooled AUROC |\n"
            "|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['steps']} | {r['questions']} | {r['mixed']} | "
        + (f"{r['within']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]" if "within" in r else "-")
        + f" | {'-' if r['pooled'] is None else format(r['pooled'], '.3f')} |\n" for r in rows)


def _table(rows: list[dict]) -> str:
    """Accuracy in % with its 95% Wilson interval over the row's n problems (the cards had none: QA pass)."""
    from ttcl.runtime.analysis.intervals import wilson

    if not rows:
        return ""
    cols = list(rows[0])
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        cells = [str(r[c]) if c in ("steps", "n") else
                 "{} [{}, {}]".format(_pct(r[c]), *map(_pct, wilson(r[c] * r["n"], r["n"], 1.96))) for c in cols]
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


_KIND_TEXT = {
    "policy": "a chain-of-thought policy: writes one operation per line, then `#### N`, then `<eos>`",
    "revise": "a chain-of-thought policy also trained to revise: given a question and an attempt it writes a corrected solution",
    "direct": "a direct-answer policy: writes `#### N` with no chain of thought",
    "orm": "an outcome reward model (sequence classification, 1 label)",
    "prm": "a process reward model (token classification, 1 label, read at each step end)",
}


def write_card(out: Path, meta: dict) -> None:
    name = meta["name"]
    lines = [
        f"# {name}",
        "",
        f"Part of ttcl's embedded default model family (`ttcl:{name}`): {_KIND_TEXT.get(meta['kind'], meta['kind'])}, "
        + ("fine-tuned from a policy on that policy family's own samples, labelled by the exact checker, "
           if meta["kind"] in ("orm", "prm") else "trained from scratch ")
        + "on the synthetic `arith` task (`ttcl data arith`), which ships an exact checker "
        "(`check(\"arith\")`). Loads offline with the ordinary transformers `from_pretrained` path.",
        "",
        "| field | value |",
        "|---|---|",
        f"| architecture | `{meta.get('architecture')}` |",
        f"| parameters | {meta.get('params_total'):,} total, {meta.get('params_non_embedding'):,} non-embedding |",
        f"| shape | {meta.get('n_layer')} layers, d_model {meta.get('d_model')}, {meta.get('n_head')} heads, n_ctx {meta.get('n_ctx')} |",
        "| tokenizer | characters (`PreTrainedTokenizerFast`, WordLevel), `<pad>` and `<eos>` |",
        f"| training | {meta.get('train_steps')} steps of {meta.get('batch_size')} sequences, {meta.get('training_tokens'):,} tokens, "
        f"{meta.get('training_flops'):.3g} FLOPs (6·N·D), {meta.get('wall_seconds')} s on a 2-core CPU in the build that made these weights "
        f"(a shared machine; `ttcl models` shows the last whole-zoo build's time), seed {meta.get('seed')} |",
    ]
    if meta.get("init_from"):
        lines.append(f"| initialised from | `ttcl:{meta['init_from']}` (its transformer weights) |")
    lines.append("")
    kind = meta["kind"]
    if kind in ("policy", "revise", "direct"):
        lines += [
            "## Prompt format",
            "",
            "The prompt is the question followed by a newline, e.g. `37 +12 *3 -5\\n` (operations apply left to "
            "right). The model answers "
            + ("`#### 142<eos>`." if kind == "direct" else "`37+12=49\\n49*3=147\\n147-5=142\\n#### 142<eos>`."),
            "",
        ]
        if kind == "revise":
            lines += [
                "### Revision prompt",
                "",
                "`ttcl_meta.json` field `revise_template`, with fields `{question}` and `{attempt}` (the attempt's "
                "text without `<eos>`):",
                "",
                "```",
                meta.get("revise_template", "").replace("\n", "\\n"),
                "```",
                "",
                "The model then writes the corrected full solution, ending in `#### N<eos>`. It was trained on "
                "synthetic wrong attempts (one slipped step, carried through) and on right ones (copied unchanged).",
                "",
            ]
    else:
        use = meta.get("score", "")
        lines += ["## How to score", "", f"- input: `{json.dumps(meta.get('input_template'))[1:-1]}`",
                  f"- score: {use}", f"- meaning: {meta.get('score_meaning')}"]
        if kind == "prm":
            lines += [f"- steps: {meta.get('steps_format')}", "- step end token: `\\n`",
                      f"- aggregate: {meta.get('aggregate')}"]
        lines += [f"- padding: {meta.get('padding_side')} (left padding needs `position_ids = attention_mask.cumsum(-1) - 1`)", ""]
        au = {k: v for k, v in meta.items() if k.startswith("auroc")}
        lines += ["## Held-out AUROC against the exact checker", "",
                  f"On {meta.get('heldout_samples')} held-out samples of {', '.join(meta.get('sampled_from', []))} "
                  f"(problems never seen in training; {100 * meta.get('heldout_positive_rate', 0):.1f}% correct):", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in au.items()]
        lines.append("")
    ev = meta.get("eval")
    if ev:
        if kind in ("orm", "prm"):
            lines += ["## Accuracy by difficulty", "",
                      f"Voting over {ev['samples']} samples of `ttcl:{ev['policy']}` (T=0.8) on the card set "
                      f"(seed 1234), in % with 95% Wilson intervals over the problems: `weighted` sums this verifier's scores per "
                      "answer, `best` keeps the top-scored sample.", ""]
        else:
            lines += ["## Accuracy by difficulty", "",
                      f"Fixed evaluation set (`make_problems(.., seed=1234)`), {ev['per_level']} problems per number of "
                      f"steps; `maj@{ev['samples']}` and `pass@{ev['samples']}` from {ev['samples']} samples at "
                      f"T={ev['temperature']}. Accuracy in %, with its 95% Wilson interval over the problems.", ""]
        lines.append(_table(ev["by_steps"]))
        if ev.get("within"):
            lines += ["## Within-question AUROC", "",
                      f"Against the exact checker, on the same {ev['samples']} samples per problem of "
                      f"`ttcl:{ev['policy']}`: the AUROC inside each problem that has both right and wrong samples, "
                      "averaged over those problems (95% bootstrap interval over them, seed 0), beside the pooled "
                      "AUROC over all samples, which mostly measures how hard the problem is.", "",
                      _within_table(ev["within"])]
    # a model that reads others rebuilds beside the shipped ones
    from ttcl.zoo.family import dependencies

    deps = " --shipped-deps" if dependencies(name) else ""
    lines += ["Reproduce: `ttcl zoo train --only " + name + deps + "`. Regenerate the data: `ttcl data arith --steps 1..8 --n 500 --seed 0`. "
              "Evaluate this card's tables again from the shipped weights, without training: `ttcl zoo card " + name + "`.", ""]
    (out / "README.md").write_text("\n".join(lines))
