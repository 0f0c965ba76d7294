"""Learned verifiers: an outcome reward model (ORM) and a process reward model (PRM).

Both are trained on the policies' own samples, labelled by the exact arith
checkers, starting from a policy's transformer weights:

- ORM: `GPT2ForSequenceClassification`, 1 label. Input `question + "\n" + completion`;
  score = sigmoid(logit) at the last real token = P(final answer is right).
- PRM: `GPT2ForTokenClassification`, 1 label. Input `question + "\n" + lines`, where the
  completion is normalised to its non-empty stripped lines, each followed by "\n";
  the score of step i = sigmoid(logit) at the i-th "\n" after the prompt =
  P(steps 1..i are all right).

The saved tokenizers pad on the right, so `model(**tok(texts, padding=True))` is correct
as is; left padding needs `position_ids = attention_mask.cumsum(-1) - 1`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: parallel builds then must not share a cache
    fcntl = None  # type: ignore[assignment]

from ttcl.zoo.data import BACKWARD_INPUT_TEMPLATE, EOS_ID, PAD_ID, encode, save_tokenizer
from ttcl.zoo.train import THREADS, Log, param_counts, save_weights, write_meta


@dataclass(frozen=True)
class VerifierRecipe:
    name: str
    kind: str  # orm | prm | lik (a causal LM trained so that likelihood(...) ranks, see _lik_scores) | blik (lik
    # on a backward checker: the probability of the question after the derivation, see _back_batch)
    init_from: str  # policy whose transformer weights start the verifier
    train_steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    group: int = 0  # > 0: each batch holds batch_size // group whole questions, `group` samples each
    pairwise: float = 0.0  # weight of the within-question ranking loss (needs group > 0)
    lm: float = 0.0  # lik: weight of the language-modelling loss on the lines before a sample's first error
    unlikely: float = 0.0  # lik: weight of -log(1 - P(line)) on each sample's first wrong line
    task: str = "arith"


@dataclass(frozen=True)
class SampleSpec:
    """Which policies sample the verifier data, on which problems."""

    policies: tuple[str, ...] = ("arith-s", "arith-m")
    problems_per_policy: int = 1200
    samples_per_problem: int = 4
    temperature: float = 1.0
    holdout_frac: float = 0.2
    seed: int = 7
    task: str = "arith"
    steps: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    problems: tuple[int, ...] = ()  # per policy, overriding problems_per_policy


def sample_verifier_data(spec: SampleSpec, model_dirs: dict[str, Path], log: Log = print,
                         only: str | None = None) -> list[dict]:
    """Labelled samples: question, completion, outcome, step labels, split (train/heldout)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate

    if spec.task == "arith":
        from ttcl.runtime.tasks import arith as task
        from ttcl.zoo.evaluate import max_new_tokens
    else:
        from ttcl.zoo.testbed import BEDS

        task = BEDS[spec.task].module  # type: ignore[assignment]
        max_new_tokens = BEDS[spec.task].max_new_tokens  # type: ignore[assignment]
        from ttcl.zoo.testbed import chain_style
    check = getattr(task, "labeller", task.checker)  # expr's: the labels the shipped verifiers were trained on

    torch.set_num_threads(THREADS)
    rows: list[dict] = []
    for pi, name in enumerate(spec.policies):
        if only is not None and name != only:  # one policy's share, exactly as the full run draws it
            continue
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(str(model_dirs[name])).eval()
        tok = AutoTokenizer.from_pretrained(str(model_dirs[name]))
        count = spec.problems[pi] if spec.problems else spec.problems_per_policy
        budget_kw = {} if spec.task == "arith" else {
            "style": chain_style(json.loads((model_dirs[name] / "ttcl_meta.json").read_text()))}
        problems = task.make_problems(count, spec.steps, spec.seed + 101 * pi)
        n_hold = int(len(problems) * spec.holdout_frac)
        by_level: dict[int, list[int]] = {}
        for i, p in enumerate(problems):
            by_level.setdefault(p.steps, []).append(i)
        for steps, idx in sorted(by_level.items()):
            outs = generate(model, tok, [problems[i].prompt for i in idx], n=spec.samples_per_problem,
                            temperature=spec.temperature, max_new_tokens=max_new_tokens(steps, **budget_kw),
                            batch_size=512, seed=spec.seed + steps)
            for i, comps in zip(idx, outs, strict=True):
                q = problems[i].question
                for c in comps:
                    rows.append({
                        "policy": name, "qid": f"{name}/{i}", "question": q, "completion": c, "steps": steps,
                        "outcome": check.outcome(q, c), "step_labels": check.steps(q, c),
                        "split": "heldout" if i < n_hold else "train",
                    })
        acc = sum(r["outcome"] for r in rows if r["policy"] == name) / (len(problems) * spec.samples_per_problem)
        log(f"[verifier data] {name}: {len(problems) * spec.samples_per_problem} samples, "
            f"{acc:.1%} correct, {time.time() - t0:.0f}s")
    return rows


def _orm_batch(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    seqs = [encode(r["question"] + "\n" + r["completion"]) for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    y = torch.tensor([r["outcome"] for r in rows], dtype=torch.float)
    return ids, mask, y


def _prm_batch(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ttcl.zoo.sampling import prm_completion

    newline = encode("\n")[0]
    seqs, targets, lasts = [], [], []
    for r in rows:
        prompt = encode(r["question"] + "\n")
        body = encode(prm_completion(r["completion"]))
        seqs.append(prompt + body)
        t = [-1.0] * len(prompt + body)
        ends = [len(prompt) + j for j, tid in enumerate(body) if tid == newline]
        lasts.append(ends[-1] if ends else len(prompt) - 1)
        for pos, lab in zip(ends, r["step_labels"], strict=False):
            t[pos] = lab
        targets.append(t)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    y = torch.full((len(seqs), width), -1.0)
    for i, (s, t) in enumerate(zip(seqs, targets, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        y[i, : len(t)] = torch.tensor(t)
    return ids, mask, y, torch.tensor(lasts)


def _lik_batch(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What `likelihood(...)` reads (runtime/verifier_gen.py): `{question}\n` then the completion's
    stripped non-empty lines joined by "\n", none after the last. Returns ids, the attention mask
    and the mask of the scored tokens (the completion's)."""
    ids, mask, scored, _ = _lik_batch_lines(rows)
    return ids, mask, scored


def _lik_batch_lines(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[range]]]:
    """_lik_batch, and per row the token positions of each line (with the "\n" that ends it)."""
    from ttcl.zoo.sampling import prm_completion

    newline = encode("\n")[0]
    seqs, starts, lines = [], [], []
    for r in rows:
        prompt = encode(r["question"] + "\n")
        body = encode(prm_completion(r["completion"]).removesuffix("\n"))
        seqs.append(prompt + body)
        starts.append(len(prompt))
        ends = [len(prompt) + j for j, t in enumerate(body) if t == newline] + [len(prompt) + len(body) - 1]
        lines.append([range(a, b + 1) for a, b in zip([len(prompt)] + [e + 1 for e in ends[:-1]], ends, strict=True)])
    return (*_padded(seqs, starts), lines)


def _padded(seqs: list[list[int]], starts: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, the attention mask, and the mask of the scored tokens (each sequence's from its start)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    scored = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, (s, a) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        scored[i, a: len(s)] = True
    return ids, mask, scored


def _back_batch(rows: list[dict], n_ctx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a backward checker's likelihood reads (data.BACKWARD_INPUT_TEMPLATE, data.BACKWARD_TEMPLATE's
    text): the completion's stripped non-empty lines, each followed by "\n", the separator, then the
    question and <eos>, the scored tokens. A text longer than `n_ctx` loses its first tokens."""
    from ttcl.zoo.sampling import prm_completion

    seqs, starts = [], []
    for r in rows:
        head = encode(BACKWARD_INPUT_TEMPLATE.split("{question}")[0].format(steps=prm_completion(r["completion"])))
        seq = head + encode(r["question"]) + [EOS_ID]
        cut = max(0, len(seq) - n_ctx)
        seqs.append(seq[cut:])
        starts.append(max(1, len(head) - cut))
    return _padded(seqs, starts)


def _back_losses(final: torch.Tensor, lp: torch.Tensor, scored: torch.Tensor,
                 batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """A backward checker's language-modelling loss on the questions of strictly right samples (mean per
    token), and the mean of -log(1 - P(question | derivation)) over wrong ones."""
    good = torch.tensor([x["outcome"] > 0.5 and _first_error(x) == len(x["step_labels"]) for x in batch])
    bad = torch.tensor([x["outcome"] <= 0.5 for x in batch])
    keep = scored[:, 1:] & good[:, None]
    nll = -(lp * keep).sum() / keep.sum().clamp(min=1)
    if not bad.any():
        return nll, final.sum() * 0.0
    return nll, -torch.log(-torch.expm1(final[bad].clamp(max=-1e-6))).mean()


def _first_error(x: dict) -> int:
    """The index of the sample's first wrong line (the number of lines when every labelled one is right)."""
    return next((j for j, lab in enumerate(x["step_labels"]) if lab < 0.5), len(x["step_labels"]))


def _lik_losses(lp: torch.Tensor, lines: list[list[range]], batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The language-modelling loss on the lines before each sample's first error (mean per token),
    and the mean of -log(1 - P(line)) over the first wrong lines (`lp` is _lik_scores's, shifted by one)."""
    keep = torch.zeros_like(lp, dtype=torch.bool)
    bad = []
    for i, x in enumerate(batch):
        first = _first_error(x)
        for span in lines[i][:first]:
            keep[i, span.start - 1: span.stop - 1] = True
        if first < len(lines[i]) and first < len(x["step_labels"]):
            span = lines[i][first]
            bad.append(lp[i, span.start - 1: span.stop - 1].sum())
    nll = -(lp * keep).sum() / keep.sum().clamp(min=1)
    if not bad:
        return nll, lp.sum() * 0.0
    log_p = torch.stack(bad).clamp(max=-1e-6)
    return nll, -torch.log(-torch.expm1(log_p)).mean()


def _lik_scores(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the log-probability of its scored tokens (the likelihood score), and the
    per-token log-probabilities (zero where not scored)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0] * scored[:, 1:]
    return lp.sum(1), lp


def _pairwise_loss(final: torch.Tensor, batch: list[dict]) -> torch.Tensor:
    """Within-question ranking: mean over (right, wrong) sample pairs of one question of
    softplus(z_wrong - z_right), on the whole-solution logit."""
    terms = []
    by_q: dict[str, list[int]] = {}
    for i, x in enumerate(batch):
        by_q.setdefault(x.get("qid", x["question"]), []).append(i)
    for idx in by_q.values():
        pos = [i for i in idx if batch[i]["outcome"] > 0.5]
        neg = [i for i in idx if batch[i]["outcome"] <= 0.5]
        if pos and neg:
            zp, zn = final[pos], final[neg]
            terms.append(torch.nn.functional.softplus(zn[None, :] - zp[:, None]).flatten())
    if not terms:
        return final.sum() * 0.0
    return torch.cat(terms).mean()


def train_verifier(r: VerifierRecipe, rows: list[dict], init_dir: Path, out: Path | None,
                   log: Log = print, log_every: int = 100) -> tuple[torch.nn.Module, dict]:
    from transformers import GPT2ForSequenceClassification, GPT2ForTokenClassification

    from ttcl.zoo.evaluate import auroc
    from ttcl.zoo.sampling import score_sequences, score_steps
    from ttcl.zoo.train import LMRecipe, lr_at, make_optimizer

    torch.set_num_threads(THREADS)
    torch.manual_seed(r.seed)
    rng = random.Random(r.seed)
    if r.kind in ("lik", "blik"):  # a causal LM, trained to rank by its likelihood
        from transformers import GPT2LMHeadModel

        cls = GPT2LMHeadModel
        model = cls.from_pretrained(str(init_dir))
    else:
        cls = GPT2ForSequenceClassification if r.kind == "orm" else GPT2ForTokenClassification
        model = cls.from_pretrained(str(init_dir), num_labels=1, pad_token_id=PAD_ID)
    model.config._attn_implementation = "sdpa"
    train = [x for x in rows if x["split"] == "train"]
    held = [x for x in rows if x["split"] == "heldout"]
    sched = LMRecipe(r.name, r.kind, 0, 0, 0, 0, r.train_steps, lr=r.lr, warmup=50)
    opt = make_optimizer(model, sched)
    total, non_emb = param_counts(model)
    log(f"[{r.name}] params total={total:,} non-embedding={non_emb:,} train={len(train)} heldout={len(held)}")
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    t0, tokens, losses = time.time(), 0, []
    model.train()
    order: list[int] = []
    groups: dict[str, list[dict]] = {}
    for x in train:
        groups.setdefault(x.get("qid", x["question"]), []).append(x)
    qids = sorted(groups)
    for step in range(r.train_steps):
        per = r.batch_size // r.group if r.group else r.batch_size
        pool = len(qids) if r.group else len(train)
        if len(order) < per:
            order = list(range(pool))
            rng.shuffle(order)
        if r.group:
            batch = [x for _ in range(per) for x in groups[qids[order.pop()]][: r.group]]
        else:
            batch = [train[order.pop()] for _ in range(per)]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        if r.kind == "lik":
            ids, mask, scored, lines = _lik_batch_lines(batch)
            final, lp = _lik_scores(model, ids, mask, scored)
            nll, unlikely = _lik_losses(lp, lines, batch)
            loss = r.lm * nll + r.unlikely * unlikely
        elif r.kind == "blik":
            ids, mask, scored = _back_batch(batch, model.config.n_positions)
            final, lp = _lik_scores(model, ids, mask, scored)
            nll, unlikely = _back_losses(final, lp, scored, batch)
            loss = r.lm * nll + r.unlikely * unlikely
        elif r.kind == "orm":
            ids, mask, y = _orm_batch(batch)
            logits = model(input_ids=ids).logits[:, 0]  # right padding: last non-pad token
            loss = bce(logits, y).mean()
            final = logits
        else:
            ids, mask, y, last = _prm_batch(batch)
            logits = model(input_ids=ids).logits[..., 0]
            keep = y >= 0
            loss = (bce(logits, y.clamp(min=0)) * keep).sum() / keep.sum().clamp(min=1)
            final = logits[torch.arange(len(batch)), last]
        if r.pairwise and r.group:
            loss = loss + r.pairwise * _pairwise_loss(final, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(mask.sum())
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            log(f"[{r.name}] step {step + 1}/{r.train_steps} loss {sum(losses[-log_every:]) / log_every:.4f} "
                f"{time.time() - t0:.0f}s")
    wall = time.time() - t0
    model.eval()
    from ttcl.zoo.data import build_tokenizer

    tok = build_tokenizer(model.config.n_positions)
    if r.kind in ("lik", "blik"):
        scores = []
        with torch.no_grad():
            for i in range(0, len(held), 256):
                part = held[i: i + 256]
                batch = _lik_batch(part) if r.kind == "lik" else _back_batch(part, model.config.n_positions)
                scores += _lik_scores(model, *batch)[0].tolist()
        au = auroc(scores, [x["outcome"] for x in held])
        extra = {"auroc_outcome": round(au, 4), "auroc_within_question": round(_within_auroc(scores, held), 4)}
    elif r.kind == "orm":
        scores = score_sequences(model, tok, [x["question"] + "\n" + x["completion"] for x in held])
        au = auroc(scores, [x["outcome"] for x in held])
        extra = {"auroc_outcome": round(au, 4)}
    else:
        step_scores = score_steps(model, tok, [x["question"] + "\n" for x in held], [x["completion"] for x in held])
        flat_s = [s for ss in step_scores for s in ss]
        flat_y = [y for x, ss in zip(held, step_scores, strict=True) for y in x["step_labels"][: len(ss)]]
        au = auroc(flat_s, flat_y)
        mins = [min(ss) if ss else 0.0 for ss in step_scores]
        lasts = [ss[-1] if ss else 0.0 for ss in step_scores]
        extra = {"auroc_steps": round(au, 4),
                 "auroc_outcome_min_step": round(auroc(mins, [x["outcome"] for x in held]), 4),
                 "auroc_outcome_last_step": round(auroc(lasts, [x["outcome"] for x in held]), 4)}
        if r.group:
            extra["auroc_within_question_last_step"] = round(_within_auroc(lasts, held), 4)
    log(f"[{r.name}] held-out {extra}")
    meta = {
        "name": r.name,
        "kind": r.kind,
        "task": r.task,
        "architecture": cls.__name__,
        "params_total": total,
        "params_non_embedding": non_emb,
        "n_layer": model.config.n_layer,
        "d_model": model.config.n_embd,
        "n_head": model.config.n_head,
        "n_ctx": model.config.n_positions,
        "seed": r.seed,
        "init_from": r.init_from,
        "train_steps": r.train_steps,
        "batch_size": r.batch_size,
        "training_tokens": tokens,
        "training_flops": 6 * non_emb * tokens,
        "training_flops_formula": "6*N*D (N non-embedding params, D tokens processed; excludes the init policy and sampling)",
        "wall_seconds": round(wall, 1),
        "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 5),
        "heldout_samples": len(held),
        "train_samples": len(train),
        "heldout_positive_rate": round(sum(x["outcome"] for x in held) / max(1, len(held)), 4),
        "recipe": asdict(r),
        **extra,
    }
    meta |= VERIFIER_USAGE[r.kind]
    meta["headline"] = {"metric": "auroc_steps" if r.kind == "prm" else "auroc_outcome", "value": round(au, 4)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_weights(model, out)
        save_tokenizer(out, model.config.n_positions, padding_side="right")
        write_meta(out, meta)
    return model, meta


VERIFIER_USAGE: dict[str, dict] = {
    "lik": {
        "verifier": "likelihood",
        "input_template": "{question}\n{steps}",
        "steps_format": "the completion's non-empty lines, each stripped, joined by '\\n' (none after the last)",
        "step_end_token": "\n",
        "score": "likelihood(MODEL): the causal LM's probability of the steps after '{question}\\n' "
                 "(runtime/verifier_gen.py, LikelihoodVerifier)",
        "score_meaning": "ranks a question's candidates: trained so that right ones get more probability than wrong ones",
    },
    "blik": {
        "verifier": "likelihood",
        "direction": "backward",
        "input_template": BACKWARD_INPUT_TEMPLATE,
        "steps_format": "the completion's non-empty lines, each stripped and followed by '\\n'",
        "step_end_token": "\n",
        "score": "likelihood(MODEL): the causal LM's probability of the question and <eos> after the steps "
                 "and the separator (runtime/verifier_gen.py, BackwardLikelihoodVerifier)",
        "score_meaning": "ranks a question's candidates: a derivation that used the wrong operands derives another question",
    },
    "orm": {
        "num_labels": 1,
        "input_template": "{question}\n{completion}",
        "score": "sigmoid(logits[0]) at the last non-pad token (AutoModelForSequenceClassification does this)",
        "score_meaning": "P(final answer is correct)",
        "padding_side": "right",
    },
    "prm": {
        "num_labels": 1,
        "input_template": "{question}\n{steps}",
        "steps_format": "the completion's non-empty lines, each stripped and followed by '\\n' (the '#### N' line is the last step)",
        "step_end_token": "\n",
        "score": "sigmoid(logits[pos, 0]) at each step_end_token position after the prompt '{question}\\n' (AutoModelForTokenClassification)",
        "score_meaning": "P(every step up to and including this one is correct)",
        "aggregate": "min over steps (or the last step) scores a whole solution",
        "padding_side": "right",
    },
}


def _within_auroc(scores: list[float], rows: list[dict]) -> float:
    """Mean AUROC inside each question that has both right and wrong samples."""
    from ttcl.zoo.evaluate import auroc

    by_q: dict[str, list[int]] = {}
    for i, x in enumerate(rows):
        by_q.setdefault(x.get("qid", x["question"]), []).append(i)
    vals = []
    for idx in by_q.values():
        ys = [rows[i]["outcome"] for i in idx]
        if 0 < sum(ys) < len(ys):
            vals.append(auroc([scores[i] for i in idx], ys))
    return sum(vals) / len(vals) if vals else float("nan")


def save_rows(rows: list[dict], path: Path) -> None:
    """Written whole or not at all (a temporary file renamed into place): an interrupted build
    never leaves a truncated cache for the next one to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def cached_rows(path: Path, make: Callable[[], list[dict]], log: Log = print) -> list[dict]:
    """The rows cached at `path`, made (and saved) by `make()` when absent. Builds running in
    parallel share one cache (arith-orm and arith-prm; expr-prm and expr-revise): an exclusive
    lock on `path`.lock makes the first one sample while the others wait for its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if path.is_file():
            return load_rows(path)
        t0 = time.time()
        rows = make()
        save_rows(rows, path)
        log(f"[verifier data] {len(rows)} samples in {time.time() - t0:.0f}s -> {path}")
        return rows


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
