"""Model verifiers behind one batch interface: `score(items) -> (scores, usage)`.

An item is (question, completion). Every verifier scores a whole list in one
batched pass and reports what it spent with the shared cost model: calls are
sequences scored, prompt_tokens the tokens pushed through, flops
`forward_flops(spec, 0, len)` per sequence (a judge reuses the policy's
prefix cache, so it is charged only what it computes).

How a reward model reads its input and turns logits into a score is taken
from the model's `ttcl_meta.json` when present:
  input_template   "{question}\\n{completion}" (ORM) / "{question}\\n{steps}" (PRM)
  score            starts with "sigmoid" | "softmax" | "logit"; default: sigmoid for
                   1 label, softmax over labels otherwise
  positive_label   the label read after softmax (default: the last)
  step_end_token   PRM: the step delimiter whose positions carry the step scores ("\\n")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ttcl.compiler.costmodel import ModelSpec, forward_flops
from ttcl.compiler.models import MetaTemplateError, fill_meta_template, meta_template_parts
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import Usage, resolve_ref
from ttcl.safeio import JSON_LIMIT, UnsafeRead, read_bounded

Item = tuple[str, str]  # (question or prompt, completion)
AGGREGATES = ("last", "min", "prod")


class Verifier(Protocol):
    def score(self, items: list[Item]) -> tuple[list[float], Usage]: ...


class ItemFailures(TtclRuntimeError):
    """Some items could not be scored. `scores` holds NaN for them; `failures` maps index -> cause."""

    def __init__(
        self, scores: list[float], failures: dict[int, BaseException], usage: Usage
    ) -> None:
        first = next(iter(failures.items()))
        super().__init__(
            f"{len(failures)} of {len(scores)} items failed; item {first[0]}: {first[1]}"
        )
        self.scores, self.failures, self.usage = scores, failures, usage


def aggregate(steps: list[float], agg: str) -> float:
    """One score from step scores; a completion with no steps scores 0."""
    if not steps:
        return 0.0
    if agg == "last":
        return steps[-1]
    if agg == "min":
        return min(steps)
    if agg == "prod":
        return math.prod(steps)
    raise TtclRuntimeError(f"unknown step aggregate {agg!r} (use {', '.join(AGGREGATES)})")


# -- checkers ----------------------------------------------------------------------------------


class CheckerVerifier:
    """A registered Python checker (`ttcl.runtime.tasks.get_checker`): exact scores, no model, no cost."""

    def __init__(self, checker: str | Any) -> None:
        if isinstance(checker, str):
            from ttcl.runtime.tasks import get_checker

            checker = get_checker(checker)
        self.checker = checker

    def _each(self, items: list[Item], fn) -> tuple[list, Usage]:
        out: list = []
        failures: dict[int, BaseException] = {}
        for i, (q, c) in enumerate(items):
            try:
                out.append(fn(q, c))
            except Exception as e:  # a plugin checker may raise anything; it fails its item only
                failures[i] = e
                out.append(math.nan)
        if failures:
            raise ItemFailures(out, failures, Usage())
        return out, Usage()

    def score(self, items: list[Item]) -> tuple[list[float], Usage]:
        return self._each(items, lambda q, c: float(self.checker.outcome(q, c)))

    def step_scores(self, items: list[Item]) -> list[list[float]]:
        return self._each(items, lambda q, c: [float(x) for x in self.checker.steps(q, c)])[0]


# -- reward models ---------------------------------------------------------------------------


def read_meta(path: Path) -> dict:
    f = path / "ttcl_meta.json"
    if not f.is_file():
        return {}
    try:
        meta = json.loads(read_bounded(f, JSON_LIMIT, what="ttcl_meta.json"))
    except UnsafeRead as e:
        raise TtclRuntimeError(f"{f}: {e.reason}") from None
    except (OSError, ValueError, RecursionError) as e:
        raise TtclRuntimeError(f"{f}: invalid JSON: {str(e)[:200]}") from None
    if not isinstance(meta, dict):
        raise TtclRuntimeError(f"{f}: not a JSON object")
    return meta


def model_meta(ref: str) -> dict:
    """The `ttcl_meta.json` of a local model reference (`ttcl:NAME` or a directory), {} if none."""
    from ttcl.runtime.backends.transformers import model_dir

    return read_meta(model_dir(resolve_ref(ref)))


@dataclass
class _Loaded:
    path: Path
    meta: dict
    tokenizer: Any
    model: Any
    spec: ModelSpec
    device: Any


def _load(ref: str, auto_cls: str, device: str, dtype: str) -> _Loaded:
    import transformers

    from ttcl.runtime.backends.hf_load import load_tokenizer, load_weights
    from ttcl.runtime.backends.transformers import model_dir, model_spec, pick_device, pick_dtype

    path = model_dir(resolve_ref(ref))
    dev = pick_device(device)
    tok = load_tokenizer(path, f"cannot load {auto_cls} from {str(path)!r}")
    # transformers' "MISSING score.weight" report is replaced by the error below
    model, missing = load_weights(getattr(transformers, auto_cls), path, auto_cls)
    if missing:
        archs = ", ".join(getattr(model.config, "architectures", None) or ["unknown"])
        head = auto_cls.removeprefix("AutoModelFor")
        raise TtclRuntimeError(
            f"verifier model {ref!r} ({path}) is not a trained {head} model: its weights have no "
            f"{', '.join(missing[:4])}, which transformers would fill with random numbers (its config says {archs})\n"
            f"  hint: give `reward(...)`/`prm(...)` a model trained with a {head} head (as ttcl:arith-orm, "
            "ttcl:arith-prm), or `prm(...)` a causal LM whose ttcl_meta.json says \"verifier\": \"generative\" "
            "(as ttcl:countdown-check); any other causal LM belongs in `model NAME = ...`"
        )
    model = model.to(device=dev, dtype=pick_dtype(dtype, dev)).eval()
    return _Loaded(path, read_meta(path), tok, model, model_spec(model), dev)


def _score_fn(meta: dict, num_labels: int):
    """logits [..., num_labels] -> scores [...], as the model's meta says."""
    import torch

    how = str(meta.get("score", "")).strip().lower()
    pos = int(meta.get("positive_label", num_labels - 1))
    if how.startswith("logit"):
        return lambda z: z[..., pos].float()
    if how.startswith("softmax") or (not how.startswith("sigmoid") and num_labels > 1):
        return lambda z: torch.softmax(z.float(), dim=-1)[..., pos]
    return lambda z: torch.sigmoid(z[..., pos].float())


class _ClassifierVerifier:
    """Shared batching for reward models: right padding, sorted by length, chunked."""

    auto_cls = "AutoModelForSequenceClassification"
    default_template = "{question}\n{completion}"
    fields: tuple[str, ...] = ("question", "completion")

    def __init__(
        self, ref: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64
    ) -> None:
        self.ref = ref
        self.m = _load(ref, self.auto_cls, device, dtype)
        self.spec = self.m.spec
        self.template = self.m.meta.get("input_template", self.default_template)
        if not isinstance(self.template, str):
            raise TtclRuntimeError(f"verifier {ref}: ttcl_meta.json `input_template` is not a string")
        try:
            self.parts = meta_template_parts(self.template, self.fields)
        except MetaTemplateError as e:
            raise TtclRuntimeError(f"verifier {ref}: ttcl_meta.json `input_template`: {e}") from None
        self.read = _score_fn(self.m.meta, self.m.model.config.num_labels)
        self.batch_size = batch_size
        self.pad_id = next(
            i
            for i in (self.m.tokenizer.pad_token_id, self.m.tokenizer.eos_token_id, 0)
            if i is not None
        )
        self.n_ctx = self.spec.n_ctx

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], dict[int, BaseException]]:
        """Token ids per text; a text longer than the model's context fails its item only."""
        enc = self.m.tokenizer(texts)["input_ids"]
        failures: dict[int, BaseException] = {}
        if self.n_ctx is not None:
            for i, ids in enumerate(enc):
                if len(ids) > self.n_ctx:
                    failures[i] = TtclRuntimeError(
                        f"verifier {self.ref}: item {i} has {len(ids)} tokens, more than the "
                        f"model's context of {self.n_ctx}"
                    )
        return enc, failures

    def _forward(self, enc: list[list[int]], skip: dict[int, BaseException]):
        """Yield (index, logits [T, num_labels] at the real positions) for each sequence not skipped."""
        import torch

        order = sorted((i for i in range(len(enc)) if i not in skip), key=lambda i: len(enc[i]))
        with torch.no_grad():
            for s in range(0, len(order), self.batch_size):
                chunk = order[s : s + self.batch_size]
                width = max(len(enc[i]) for i in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, i in enumerate(chunk):
                    ids[r, : len(enc[i])] = torch.tensor(enc[i])
                    mask[r, : len(enc[i])] = 1
                logits = self._logits(ids.to(self.m.device), mask.to(self.m.device))
                for r, i in enumerate(chunk):
                    yield i, logits[r, : len(enc[i])]

    def _logits(self, ids, mask):
        raise NotImplementedError

    def _usage(self, enc: list[list[int]], skip: dict[int, BaseException], seconds: float) -> Usage:
        run = [e for i, e in enumerate(enc) if i not in skip]
        return Usage(
            calls=len(run),
            prompt_tokens=sum(len(e) for e in run),
            flops=sum(forward_flops(self.spec, 0, len(e)) for e in run),
            seconds=seconds,
        )

    def item_tokens(self, question: str, completion: str) -> int:
        """Tokens one item pushes through the model (for worst-case bounds)."""
        return len(self.m.tokenizer(self._text(question, completion), verbose=False)["input_ids"])  # no length warning

    def _text(self, question: str, completion: str) -> str:
        return fill_meta_template(self.parts, {"question": question, "completion": completion})


class RewardModelVerifier(_ClassifierVerifier):
    """An outcome reward model (`AutoModelForSequenceClassification`): one score per completion,
    read at the last real token."""

    def _logits(self, ids, mask):
        import torch

        # Pool at the last real token ourselves: right padding, so that is mask.sum - 1.
        out = self.m.model(input_ids=ids, attention_mask=mask, output_hidden_states=False)
        z = out.logits  # [B, num_labels] pooled by the model, or [B, T, L] for some heads
        if z.dim() == 3:
            z = z[torch.arange(z.shape[0]), mask.sum(-1) - 1]
        return z.unsqueeze(1)  # [B, 1, L]

    def __init__(
        self, ref: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64
    ) -> None:
        super().__init__(ref, device, dtype, batch_size)
        cfg = self.m.model.config
        if getattr(cfg, "pad_token_id", None) is None:  # the head finds the last token by pad id
            cfg.pad_token_id = self.pad_id

    def score(self, items: list[Item]) -> tuple[list[float], Usage]:
        if not items:
            return [], Usage()
        t0 = time.perf_counter()
        enc, failed = self._encode([self._text(q, c) for q, c in items])
        scores = [math.nan] * len(items)
        for i, z in self._forward(enc, failed):
            scores[i] = float(self.read(z[0]))
        usage = self._usage(enc, failed, time.perf_counter() - t0)
        if failed:
            raise ItemFailures(scores, failed, usage)
        return scores, usage


class ProcessRewardVerifier(_ClassifierVerifier):
    """A process reward model (`AutoModelForTokenClassification`): a score at the end of every step.

    The completion is normalised to its non-empty stripped lines (split on the
    meta's `step_end_token`, default "\\n"), each followed by that token; step
    i's score is read at the i-th step-end token after the question part of
    the template. `agg` turns step scores into one: last, min or prod.
    """

    auto_cls = "AutoModelForTokenClassification"
    default_template = "{question}\n{steps}"
    fields = ("question", "steps", "completion")

    def __init__(
        self,
        ref: str,
        agg: str = "last",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
    ) -> None:
        if agg not in AGGREGATES:
            raise TtclRuntimeError(f"unknown step aggregate {agg!r} (use {', '.join(AGGREGATES)})")
        super().__init__(ref, device, dtype, batch_size)
        self.agg = agg
        self.step_end = self.m.meta.get("step_end_token", "\n")
        end_ids = self.m.tokenizer(self.step_end, add_special_tokens=False)["input_ids"]
        if len(end_ids) != 1:
            raise TtclRuntimeError(
                f"verifier {ref}: step_end_token {self.step_end!r} is not one token"
            )
        self.end_id = end_ids[0]

    def _steps(self, completion: str) -> list[str]:
        return [s.strip() for s in completion.split(self.step_end) if s.strip()]

    def _text(self, question: str, completion: str) -> str:
        steps = "".join(s + self.step_end for s in self._steps(completion))
        return fill_meta_template(self.parts, {"question": question, "steps": steps, "completion": steps})

    def _head_len(self, question: str) -> int:
        cut = next((i for i, (_, name) in enumerate(self.parts) if name in ("steps", "completion")), len(self.parts))
        head = fill_meta_template(self.parts[:cut], {"question": question})
        return len(self.m.tokenizer(head, verbose=False)["input_ids"])

    def _logits(self, ids, mask):
        return self.m.model(input_ids=ids, attention_mask=mask).logits  # [B, T, L]

    def step_scores(self, items: list[Item]) -> list[list[float]]:
        steps, usage, failed = self._step_scores(items)
        if failed:
            raise ItemFailures(steps, failed, usage)
        return steps

    def _step_scores(self, items: list[Item]):
        if not items:
            return [], Usage(), {}
        t0 = time.perf_counter()
        enc, failed = self._encode([self._text(q, c) for q, c in items])
        heads = [self._head_len(q) for q, _ in items]
        out: list[list[float]] = [[] for _ in items]
        for i, z in self._forward(enc, failed):
            at = [p for p in range(heads[i], len(enc[i])) if enc[i][p] == self.end_id]
            out[i] = self.read(z[at]).tolist() if at else []
        return out, self._usage(enc, failed, time.perf_counter() - t0), failed

    def score(self, items: list[Item]) -> tuple[list[float], Usage]:
        scores, _, usage = self.score_steps(items)
        return scores, usage

    def score_steps(self, items: list[Item]) -> tuple[list[float], list[list[float]], Usage]:
        """The aggregate score and the step scores behind it, per item (one forward pass)."""
        steps, usage, failed = self._step_scores(items)
        scores = [math.nan if i in failed else aggregate(s, self.agg) for i, s in enumerate(steps)]
        if failed:
            raise ItemFailures(scores, failed, usage)
        return scores, steps, usage


# -- LLM judge -------------------------------------------------------------------------------

YES_WORDS = ("yes", "Yes", "YES", " yes", " Yes")
NO_WORDS = ("no", "No", "NO", " no", " No")


class JudgeVerifier:
    """The probability that a prompted model answers "yes": P(yes) / (P(yes) + P(no)) at the next token.

    `rubric_template` is formatted with {question} and {completion}. The yes
    (no) tokens are the first tokens of "yes", "Yes", " yes", ... that no "no"
    word starts with (and vice versa), so a char-level model compares "y"/"Y"
    with "n"/"N". One batched forward pass over all items, through the
    backend (its prefix cache serves a shared rubric preamble).
    """

    def __init__(self, backend: Any, rubric_template: str) -> None:
        try:
            self.parts = meta_template_parts(rubric_template, ("question", "completion"))
        except MetaTemplateError as e:
            raise TtclRuntimeError(f"judge rubric template: {e}") from None
        if not any(name == "completion" for _, name in self.parts):
            raise TtclRuntimeError("judge rubric template must contain {completion}")
        self.backend = backend
        self.template = rubric_template
        first = lambda w: backend.encode(w)[0] if backend.encode(w) else None  # noqa: E731
        yes = {first(w) for w in YES_WORDS} - {None}
        no = {first(w) for w in NO_WORDS} - {None}
        self.yes, self.no = sorted(yes - no), sorted(no - yes)
        if not self.yes or not self.no:
            raise TtclRuntimeError("judge: the tokenizer gives no distinct yes/no tokens")

    def score(self, items: list[Item]) -> tuple[list[float], Usage]:
        if not items:
            return [], Usage()
        prompts = [fill_meta_template(self.parts, {"question": q, "completion": c}) for q, c in items]
        logprobs, usage = self.backend.next_token_logprobs(prompts, self.yes + self.no)
        k = len(self.yes)
        scores = []
        for lp in logprobs:
            p_yes = sum(math.exp(x) for x in lp[:k])
            p_no = sum(math.exp(x) for x in lp[k:])
            scores.append(p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5)
        return scores, usage
