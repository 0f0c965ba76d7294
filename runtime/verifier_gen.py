"""A generative process verifier: a causal LM that re-derives each step and scores what was written.

Where a process reward model reads a learned score at each step end, a
generative step checker is a plain causal LM trained to *write* right steps
(`ttcl:countdown-check` writes random valid combinations, never aiming at the
target). Scoring a completion is one teacher-forced forward pass:

- step i's own score is the probability the checker gives the tokens the
  policy wrote after the step's `result_marker` (a combination's value and
  the numbers left, `=56 [3 56]`), or the whole step when it has no marker
  (the answer line `#### EXPR`): a fabricated value gets a small probability;
- when the completion holds `answer_marker` and the meta has a
  `verdict_prompt`, that prompt follows the steps and the verdict is
  P(yes) / (P(yes) + P(no)) at the next token (did the derivation end at
  the question's target); with no `verdict_prompt` only the steps count;
- the step scores reported are *cumulative*: score i is the product of the
  own scores of steps 1..i (and the verdict, as a last step), the checker's
  probability that everything so far is right. So `agg = "last"` (the default
  of `prm`), `"min"` and `"prod"` give the whole product, and a partial derivation (in
  step-level search) is scored by the probability that it is right so far.

The model's `ttcl_meta.json` says it is one (`"verifier": "generative"`) and
carries step_end_token ("\\n"), result_marker ("="), answer_marker,
verdict_prompt, verdict_yes, verdict_no and input_template
("{question}\\n{steps}"). `prm(ref)` picks this class for such a model.
Cost: one forward pass per item, as a PRM (`forward_flops(spec, 0, len)`).
"""

from __future__ import annotations

import math
import time

from ttcl.compiler.models import model_head
from ttcl.compiler.tokenizer_facts import is_backward
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.verifiers import Item, ProcessRewardVerifier


def is_generative(meta: dict) -> bool:
    return str(meta.get("verifier", "")).lower() == "generative"


class GenerativeStepVerifier(ProcessRewardVerifier):
    """`prm(ref)` over a causal LM whose meta says `"verifier": "generative"` (see the module doc)."""

    auto_cls = "AutoModelForCausalLM"
    score_last_line_unended = False  # LikelihoodVerifier: the text ends as the policy's did

    def __init__(self, ref: str, agg: str = "last", device: str = "auto", dtype: str = "auto",
                 batch_size: int = 64) -> None:
        super().__init__(ref, agg=agg, device=device, dtype=dtype, batch_size=batch_size)
        # The step scores are cumulative products already: the product of the steps' own scores
        # is the last one (multiplying the cumulative scores would count step 1 n times).
        if self.agg == "prod":
            self.agg = "last"
        meta = self.m.meta
        if not is_generative(meta):
            raise TtclRuntimeError(f"verifier {ref}: ttcl_meta.json does not say \"verifier\": \"generative\"")
        self.marker_id = self._one_token(meta.get("result_marker", "="), "result_marker")
        self.answer_marker = meta.get("answer_marker")
        self.verdict_prompt = meta.get("verdict_prompt")  # None: no verdict, the steps only
        if self.answer_marker is not None and not isinstance(self.answer_marker, str):
            raise TtclRuntimeError(f"verifier {ref}: ttcl_meta.json `answer_marker` is not a string")
        if self.verdict_prompt is not None:
            if not isinstance(self.verdict_prompt, str):
                raise TtclRuntimeError(f"verifier {ref}: ttcl_meta.json `verdict_prompt` is not a string")
            self.yes_id = self._one_token(meta.get("verdict_yes", "y"), "verdict_yes")
            self.no_id = self._one_token(meta.get("verdict_no", "n"), "verdict_no")

    def _one_token(self, text: object, what: str) -> int:
        ids = self.m.tokenizer(text, add_special_tokens=False)["input_ids"] if isinstance(text, str) else []
        if len(ids) != 1:
            raise TtclRuntimeError(f"verifier {self.ref}: ttcl_meta.json `{what}` {text!r} is not one token")
        return ids[0]

    def _answered(self, completion: str) -> bool:
        """Whether the verdict is read: the completion has its answer line (and the model a verdict)."""
        if self.verdict_prompt is None:
            return False
        return bool(self.answer_marker) and any(s.startswith(self.answer_marker) for s in self._steps(completion))

    def _text(self, question: str, completion: str) -> str:
        text = super()._text(question, completion)
        return text + str(self.verdict_prompt) if self._answered(completion) else text

    def _logits(self, ids, mask):
        import torch

        return torch.log_softmax(self.m.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)

    def _step_scores(self, items: list[Item]):
        if not items:
            return [], self._usage([], {}, 0.0), {}
        t0 = time.perf_counter()
        texts = [self._text(q, c) for q, c in items]
        enc, failed = self._encode(texts)
        heads = [self._head_len(q) for q, _ in items]
        verdicts = [self._answered(c) for _, c in items]
        out: list[list[float]] = [[] for _ in items]
        for i, lp in self._forward(enc, failed):
            ids = enc[i]
            total, steps, start = 0.0, [], heads[i]
            for p in range(heads[i], len(ids)):
                if ids[p] != self.end_id:
                    continue
                span = range(start, p + 1)
                at = next((q for q in span if ids[q] == self.marker_id), None)
                scored = range(at + 1, p + 1) if at is not None else span
                total += sum(float(lp[q - 1, ids[q]]) for q in scored if q >= 1)
                steps.append(math.exp(total))
                start = p + 1
            if start < len(ids) and not verdicts[i] and self.score_last_line_unended:
                total += sum(float(lp[q - 1, ids[q]]) for q in range(start, len(ids)) if q >= 1)
                steps.append(math.exp(total))
            if verdicts[i]:
                y, n = math.exp(float(lp[-1, self.yes_id])), math.exp(float(lp[-1, self.no_id]))
                total += math.log(y / (y + n)) if y + n > 0 else math.log(0.5)
                steps.append(math.exp(total))
            out[i] = steps
        return out, self._usage(enc, failed, time.perf_counter() - t0), failed


class LikelihoodVerifier(GenerativeStepVerifier):
    """`likelihood(ref)`: any causal LM scores what the policy wrote by its own probability of it.

    The completion's lines (stripped, non-empty, joined by `step_end_token`, "\\n" by default,
    none after the last line, as the policy wrote them) follow the model's input template (its
    `ttcl_meta.json` `input_template`, default `{question}\\n{steps}`: the bundled policies'
    prompt). Step i's own score is the probability of all the tokens of line i, and the step
    scores are cumulative, as a generative checker's (step i: lines 1..i), so the score is the
    probability of the whole written text. No result marker and no verdict: the model needs no
    training as a verifier. A larger policy of the same family (`likelihood("ttcl:expr-m")` on
    expr-s's samples) ranks a small one's samples well where the small one's errors are steps the
    larger one would not write (ttcl/zoo/README.md). Cost: one forward pass per candidate, as a
    PRM of the model's size.
    """

    score_last_line_unended = True

    def __init__(self, ref: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64) -> None:
        # read from config.json before the weights load: loading a classifier as a causal LM is refused by the
        # loader for its head's tensors, a message about tensors where this one names the kind of model
        _refuse_a_classifier(ref, [arch for head, arch in [model_head(ref)] if head in ("sequence", "token")])
        ProcessRewardVerifier.__init__(self, ref, agg="last", device=device, dtype=dtype, batch_size=batch_size)
        # a classifier with tied embeddings loads as a causal LM without a missing weight
        _refuse_a_classifier(ref, list(getattr(self.m.model.config, "architectures", None) or []))
        self.marker_id = None  # every token of a line is scored
        self.answer_marker = None
        self.verdict_prompt = None

    def _text(self, question: str, completion: str) -> str:
        # what the policy wrote: no newline after its last line (a finished policy wrote <eos>
        # there, and a newline it never writes would cost each candidate an arbitrary amount)
        return super()._text(question, completion).removesuffix(self.step_end)


def _refuse_a_classifier(ref: str, archs: list[str]) -> None:
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise TtclRuntimeError(
            f"verifier {ref}: likelihood(...) needs a causal language model, and its config says "
            f"{', '.join(archs)}\n  hint: a reward model or PRM goes in reward(...) or prm(...)")


class BackwardLikelihoodVerifier(LikelihoodVerifier):
    """`likelihood(ref)` on a backward checker: a causal LM trained to read a derivation and then
    write the question it derives (its `ttcl_meta.json` says `"direction": "backward"`, and its
    `input_template` puts `{question}` after `{steps}`, as `ttcl:`-built ones do: `{steps}?{question}`).

    The score is the model's probability of the question and <eos> after the lines the policy
    wrote (each stripped, non-empty, followed by `step_end_token`): a derivation that used the
    wrong operands derives another question. One step score per item (the whole text), so a
    partial derivation is not scored step by step. Cost: one forward pass per candidate, as
    `likelihood` (ttcl/zoo/README.md, "A backward checker").
    """

    def __init__(self, ref: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64) -> None:
        super().__init__(ref, device=device, dtype=dtype, batch_size=batch_size)
        names = [n for _, n in self.parts if n]
        if "question" not in names or "steps" not in names or names.index("question") < names.index("steps"):
            raise TtclRuntimeError(f"verifier {ref}: a backward checker's input_template must hold {{steps}} "
                                   f"and then {{question}}; it is {self.template!r}")
        self.eos_id = self.m.tokenizer.eos_token_id
        if self.eos_id is None:
            raise TtclRuntimeError(f"verifier {ref}: a backward checker needs an eos token in its tokenizer")

    def _text(self, question: str, completion: str) -> str:
        return ProcessRewardVerifier._text(self, question, completion)

    def item_tokens(self, question: str, completion: str) -> int:
        return super().item_tokens(question, completion) + 1  # the <eos> after the question

    def _step_scores(self, items: list[Item]):
        if not items:
            return [], self._usage([], {}, 0.0), {}
        t0 = time.perf_counter()
        import torch

        enc = [ids + [self.eos_id] for ids in self.m.tokenizer([self._text(q, c) for q, c in items])["input_ids"]]
        questions = self.m.tokenizer([q for q, _ in items], add_special_tokens=False)["input_ids"]
        tails = [len(ids) + 1 for ids in questions]  # the question's tokens and <eos>
        failed: dict[int, BaseException] = {
            i: TtclRuntimeError(f"verifier {self.ref}: item {i} has {len(ids)} tokens, more than the model's "
                                f"context of {self.n_ctx}")
            for i, ids in enumerate(enc) if self.n_ctx is not None and len(ids) > self.n_ctx}
        out: list[list[float]] = [[] for _ in items]
        for i, lp in self._forward(enc, failed):
            n = len(enc[i])
            start = max(1, n - tails[i])
            picked = lp[torch.arange(start - 1, n - 1), torch.tensor(enc[i][start:], device=lp.device)]
            out[i] = [math.exp(float(picked.double().sum()))]
        return out, self._usage(enc, failed, time.perf_counter() - t0), failed


def likelihood_verifier(ref: str, device: str = "auto", dtype: str = "auto") -> LikelihoodVerifier:
    """What `likelihood(ref)` reads: a backward checker's probability of the question, or any other
    causal LM's probability of the lines."""
    from ttcl.runtime.verifiers import model_meta

    cls = BackwardLikelihoodVerifier if is_backward(model_meta(ref)) else LikelihoodVerifier
    return cls(ref, device=device, dtype=dtype)
