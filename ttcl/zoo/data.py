"""Character vocabulary, tokenizer files and training batches for the zoo models.

The tokenizer is a `PreTrainedTokenizerFast` over a `tokenizers` WordLevel
model that splits text into single characters, so `AutoTokenizer` loads it
from a model directory with no custom code. Training encodes with the same
table directly (`encode`), which is faster than the tokenizer and identical
to it (tests check both agree).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ttcl.runtime.tasks.arith import Problem, generate

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
CHARS = "0123456789+-*/=#:?.,()<>[]!;'\"_ \n" + string.ascii_lowercase + string.ascii_uppercase
VOCAB: dict[str, int] = {t: i for i, t in enumerate((*SPECIALS, *CHARS))}
PAD_ID, EOS_ID, UNK_ID = VOCAB[PAD], VOCAB[EOS], VOCAB[UNK]

# `revise` prompt: the runtime fills it and the model writes a corrected solution.
REVISE_TEMPLATE = "{question}\nattempt:\n{attempt}\nfix:\n"
# In-context revision (`DataSpec.revise_style="inline"`): the attempt stays where the model wrote
# it, right after the question, so the prompt extends the draft's own context and a runtime with a
# prefix cache computes only the marker and the revision. A strictly right attempt is answered by
# restating its answer line (a few tokens); any other by a whole right solution.
# A backward checker reads a derivation and then writes the question it derives (`backward` data): its
# probability of the true question, given what a policy wrote, is low where a line used the wrong operands.
BACKWARD_TEMPLATE = "{steps}\n?"
# The same text as the runtime's `input_template` fills it (runtime/verifier_gen.py,
# BackwardLikelihoodVerifier), where {steps} holds every line followed by "\n".
BACKWARD_INPUT_TEMPLATE = "{steps}?{question}"
REVISE_INLINE_TEMPLATE = "{question}\n{attempt}\nfix:\n"
# Sequential revision with history (`revise_style="history"`, countdown): the same template, whose
# {attempt} holds every attempt so far joined by HISTORY_JOIN, so each revision extends the last one's
# context; up to HISTORY_MAX attempts, the earliest dropped first beyond HISTORY_CTX tokens.
HISTORY_JOIN, HISTORY_MAX, HISTORY_CTX = "\nfix:\n", 3, 512


def encode(text: str) -> list[int]:
    return [VOCAB.get(ch, UNK_ID) for ch in text]


def build_tokenizer(model_max_length: int, padding_side: str = "left"):  # -> PreTrainedTokenizerFast
    """The HF tokenizer for the character vocabulary (left padding for batched generation;
    the reward models pad on the right)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side=padding_side,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    return fast


def save_tokenizer(out: Path, model_max_length: int, padding_side: str = "left") -> None:
    build_tokenizer(model_max_length, padding_side).save_pretrained(str(out))


# ---------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """A prompt and the target completion (the loss covers the completion and EOS only)."""

    prompt: str
    completion: str


def cot_example(p: Problem) -> Example:
    return Example(p.prompt, p.solution)


def direct_example(p: Problem) -> Example:
    return Example(p.prompt, f"#### {p.answer}")


def corrupt_solution(p: Problem, rng: random.Random) -> str:
    """A plausible wrong attempt: one step gets a wrong result (or is skipped) and the
    chain continues correctly from the wrong value, as a policy's slip would."""
    vals = p.values
    k = rng.randrange(p.steps)
    lines = [f"{vals[i]}{op}{x}={vals[i + 1]}" for i, (op, x) in enumerate(p.ops[:k])]
    kind = rng.random()
    op, x = p.ops[k]
    right = vals[k + 1]
    if kind < 0.6:
        wrong = right + rng.choice([-10, -2, -1, 1, 2, 10, 100, -100])
        if wrong < 0 or wrong == right:
            wrong = right + 1
    elif kind < 0.8 and right >= 10:
        digits = list(str(right))
        i = rng.randrange(len(digits))
        digits[i] = str((int(digits[i]) + rng.randint(1, 9)) % 10)
        wrong = int("".join(digits)) if digits[0] != "0" else right + 1
        if wrong == right:
            wrong = right + 1
    else:
        wrong = right + rng.randint(1, 30)
    lines.append(f"{vals[k]}{op}{x}={wrong}")
    v = wrong
    for op2, x2 in p.ops[k + 1 :]:
        nv = v + x2 if op2 == "+" else v - x2 if op2 == "-" else v * x2
        lines.append(f"{v}{op2}{x2}={nv}")
        v = nv
    if rng.random() < 0.15 and len(lines) > 1:  # sometimes the attempt stops early
        lines = lines[: rng.randrange(1, len(lines))]
    lines.append(f"#### {v}")
    return "\n".join(lines)


def revise_example(p: Problem, rng: random.Random, p_correct: float = 0.25) -> Example:
    attempt = p.solution if rng.random() < p_correct else corrupt_solution(p, rng)
    return Example(REVISE_TEMPLATE.format(question=p.question, attempt=attempt), p.solution)


@dataclass(frozen=True)
class DataSpec:
    """What a model trains on. `revise_frac` of the examples are revision pairs."""

    kind: str = "policy"  # policy | direct | revise | check (countdown's generative step checker)
    steps: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    revise_frac: float = 0.5
    task: str = "arith"  # arith | expr | countdown
    revise_style: str = "apart"  # apart: REVISE_TEMPLATE | inline: REVISE_INLINE_TEMPLATE | history (countdown)
    revise_right_frac: float | None = None  # share of revision attempts that are strictly right (None: as sampled)
    style: str = "ops"  # expr's chain of thought: ops | state | trace | subst (runtime/tasks/expr.py, STYLES);
    # countdown's: search (runtime/tasks/countdown.py, search_trace), any other the plain derivation


def _pick_attempt(spec: DataSpec, rng: random.Random, attempts: Sequence[tuple[str, str]],
                  strict: Callable[[str, str], bool]) -> tuple[str, str]:
    """A random attempt; with `spec.revise_right_frac`, a strictly right one with that probability
    (drawn by rejection, so the pool needs no index; at most 10,000 draws, else any)."""
    q, attempt = attempts[rng.randrange(len(attempts))]
    if spec.revise_right_frac is None:
        return q, attempt
    want = rng.random() < spec.revise_right_frac
    for _ in range(10_000):
        if strict(q, attempt.strip()) == want:
            break
        q, attempt = attempts[rng.randrange(len(attempts))]
    return q, attempt


def _inline_revise(q: str, attempt: str, right: bool, solve: Callable[[], str]) -> Example:
    """An in-context revision example: a strictly right attempt is kept by restating its answer
    line; any other is answered by a whole right solution (`solve()`, drawn only then)."""
    target = attempt.splitlines()[-1].strip() if right else solve()
    return Example(REVISE_INLINE_TEMPLATE.format(question=q, attempt=attempt), target)


_WRONG: dict[int, tuple[Sequence[tuple[str, str]], dict[str, list[str]]]] = {}


def _wrong_attempts_by_question(attempts: Sequence[tuple[str, str]],
                                strict: Callable[[str, str], bool]) -> dict[str, list[str]]:
    """Each question's strictly wrong attempts, in pool order, checked once per pool (kept for the
    one pool being trained on)."""
    hit = _WRONG.get(id(attempts))
    if hit is None or hit[0] is not attempts:
        groups: dict[str, list[str]] = {}
        for q, a in attempts:
            if not strict(q, a.strip()):
                groups.setdefault(q, []).append(a.strip())
        _WRONG.clear()
        hit = _WRONG[id(attempts)] = (attempts, groups)
    return hit[1]


def _history_revise(q: str, last: str, right: bool, wrong: list[str], rng: random.Random,
                    solve: Callable[[], str]) -> Example:
    """A revision after 1..HISTORY_MAX attempts at one question: the earlier ones drawn from the
    question's other wrong attempts (a checker-gated chain revises only rejected attempts), the last
    one as sampled; answered as an inline revision of the last (restate a strictly right one)."""
    k = rng.randint(1, HISTORY_MAX)
    earlier = rng.sample(wrong, min(k - 1, len(wrong)))
    target = _inline_revise(q, last, right, solve).completion
    while earlier and len(q) + sum(len(a) + len(HISTORY_JOIN) for a in earlier) + len(last) + len(target) + 8 > HISTORY_CTX:
        earlier.pop(0)
    return Example(REVISE_INLINE_TEMPLATE.format(question=q, attempt=HISTORY_JOIN.join([*earlier, last])), target)


def draw_examples(spec: DataSpec, rng: random.Random, n: int,
                  attempts: Sequence[tuple[str, str]] | None = None) -> list[Example]:
    if spec.task == "expr":
        return _draw_expr(spec, rng, n, attempts)
    if spec.task == "countdown":
        return _draw_countdown(spec, rng, n, attempts)
    out: list[Example] = []
    for _ in range(n):
        p = generate(rng.choice(spec.steps), rng)
        if spec.kind == "direct":
            out.append(direct_example(p))
        elif spec.kind == "revise" and rng.random() < spec.revise_frac:
            out.append(revise_example(p, rng))
        else:
            out.append(cot_example(p))
    return out


def _draw_expr(spec: DataSpec, rng: random.Random, n: int,
               attempts: Sequence[tuple[str, str]] | None = None) -> list[Example]:
    """Expr policies see every question with a uniformly random valid reduction order, so the
    data shows several chains per question. Revise data (`revise_frac` of it) pairs a policy's
    own sampled attempt (`attempts`: question, completion) with a right solution."""
    from ttcl.runtime.tasks import expr

    if spec.kind not in ("policy", "revise", "backward"):
        raise ValueError(f"expr data has no kind {spec.kind!r}")
    if spec.kind == "revise" and not attempts:
        raise ValueError("expr revise data needs the policy's own attempts")
    out: list[Example] = []
    for _ in range(n):
        if spec.kind == "revise" and rng.random() < spec.revise_frac:
            q, attempt = _pick_attempt(spec, rng, attempts, expr.labeller.strict)  # type: ignore[arg-type]
            p = expr.parse_question(q)
            assert p is not None
            attempt = attempt.strip()
            if spec.revise_style == "inline":
                out.append(_inline_revise(q, attempt, expr.labeller.strict(q, attempt),  # the shipped data's labels
                                          lambda p=p: p.solution(rng, spec.style)))
                continue
            out.append(Example(REVISE_TEMPLATE.format(question=q, attempt=attempt), p.solution(rng, spec.style)))
            continue
        p = expr.generate(rng.choice(spec.steps), rng)
        if spec.kind == "backward":
            out.append(Example(BACKWARD_TEMPLATE.format(steps=p.solution(rng, spec.style)), p.question))
            continue
        out.append(Example(p.prompt, p.solution(rng, spec.style)))
    return out


def _draw_countdown(spec: DataSpec, rng: random.Random, n: int,
                    attempts: Sequence[tuple[str, str]] | None = None) -> list[Example]:
    """Countdown policies see each question with the random derivation that made its target
    (any two available numbers at each step), so the data shows many different chains. Revise
    data (`revise_frac` of it) pairs a policy's own sampled attempt with the attempt itself when
    it is strictly right (keep what is right) and otherwise a random right solution."""
    from ttcl.runtime.tasks import countdown

    if spec.kind not in ("policy", "revise", "check"):
        raise ValueError(f"countdown data has no kind {spec.kind!r}")
    if spec.kind == "revise" and not attempts:
        raise ValueError("countdown revise data needs the policy's own attempts")
    if spec.kind == "check":
        return [countdown_check_example(rng.choice(spec.steps), rng) for _ in range(n)]
    out: list[Example] = []
    for _ in range(n):
        if spec.kind == "revise" and rng.random() < spec.revise_frac:
            q, attempt = _pick_attempt(spec, rng, attempts, countdown.checker.strict)  # type: ignore[arg-type]
            attempt = attempt.strip()
            parsed = countdown.parse_question(q)
            assert parsed is not None
            kept = countdown.checker.strict(q, attempt)
            if spec.revise_style == "history":
                wrong = list(_wrong_attempts_by_question(attempts, countdown.checker.strict).get(q, []))  # type: ignore[arg-type]
                if not kept:
                    wrong.remove(attempt)  # the others: this draw is the last attempt
                out.append(_history_revise(q, attempt, kept, wrong, rng, lambda parsed=parsed: parsed.solution(rng)))
                continue
            if spec.revise_style == "inline":
                out.append(_inline_revise(q, attempt, kept, lambda parsed=parsed: parsed.solution(rng)))
                continue
            target = attempt if kept else parsed.solution(rng)
            out.append(Example(REVISE_TEMPLATE.format(question=q, attempt=attempt), target))
            continue
        p = countdown.generate(rng.choice(spec.steps), rng)
        out.append(Example(p.prompt, p.solution(rng, spec.style) if spec.style.startswith("search") else p.solution()))
    return out


# The generative step checker's verdict: after a completion, VERDICT_PROMPT, then YES or NO.
VERDICT_PROMPT, VERDICT_YES, VERDICT_NO = "?", "y", "n"


def countdown_check_example(steps: int, rng: random.Random) -> Example:
    """Training text for a generative step checker of countdown (`kind="check"`): a random walk
    of valid combinations (1..`steps` of them, no goal), its expression, then a verdict on
    whether the walk's last value is the question's target. Half the questions take the walk's
    end as the target (the first time the walk makes it), half another target, so a line's
    result tells nothing of the target: the model learns the arithmetic and the bookkeeping of
    each line, not the policy's pull towards claiming the target."""
    from ttcl.runtime.tasks import countdown as C

    while True:
        numbers = [rng.randint(C.NUMBER_MIN, C.NUMBER_MAX) for _ in range(steps + 1)]
        pool, lines = list(numbers), []
        for _ in range(rng.randint(1, steps)):
            i, j = rng.sample(range(len(pool)), 2)
            ops = [op for op in C.OPS if C.combine(pool[i], op, pool[j]) is not None]
            if not ops:
                break
            op = rng.choice(ops)
            v = C.combine(pool[i], op, pool[j])
            assert v is not None
            lines.append((pool[i], op, pool[j], v))
            pool = [x for k, x in enumerate(pool) if k not in (i, j)] + [v]
        if not lines:
            continue
        end = lines[-1][3]
        made = {line[3] for line in lines[:-1]}
        if rng.random() < 0.5 and end not in numbers and end not in made:
            target, verdict = end, VERDICT_YES
        else:
            target = C.generate(steps, rng).target
            if target == end:
                continue
            verdict = VERDICT_NO
        question = " ".join(map(str, numbers)) + C.TARGET_SEPARATOR + str(target)
        body = "\n".join([*C.step_lines(numbers, lines), f"{C.ANSWER_MARKER} {C.expression_of(numbers, lines)}"])
        return Example(question + C.PROMPT_SEPARATOR, f"{body}\n{VERDICT_PROMPT}{verdict}")


def collate(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Right-padded (input_ids, attention_mask, labels) and the number of target tokens."""
    seqs = []
    for ex in examples:
        prompt, target = encode(ex.prompt), [*encode(ex.completion), EOS_ID]
        seqs.append((prompt, target))
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    n_target = 0
    for i, (a, b) in enumerate(seqs):
        row = a + b
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(a) : len(row)] = torch.tensor(b)
        n_target += len(b)
    return ids, mask, labels, n_target
