"""Model ops as jobs: one job per (item, node) that runs a model or a verifier.

A job turns its node into backend calls, phase by phase (sample, extend and
verify have one phase; revise has one per round, plus a scoring phase per
round when it takes verifier feedback). Before each phase it asks the
scheduler's gate for an allowance sized to that phase's worst case,
computed from the real prompt lengths with the shared cost model; under
`shrink` the allowance may cut n or max_tokens. The scheduler collects the
calls of every job of every item, sends each model's calls as one batch,
and hands the results back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ttcl.compiler.costmodel import Cost, ModelSpec, forward_flops
from ttcl.compiler.dag import DagNode, PromptPart
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.accountant import INPUT_OVER_BOUND, Allowance, Resize
from ttcl.runtime.backends.base import Backend, ExtendRequest, GenRequest, GenResult, SamplingParams
from ttcl.runtime.input_bound import INPUT_IS
from ttcl.runtime.ops import OpError, fmt_number, render
from ttcl.runtime.scoring import Scored, Scorer
from ttcl.runtime.values import Candidate, Candidates, Value

_M63 = (1 << 63) - 1


def derive_seed(seed: int, item: int, node_id: str, extra: int = 0) -> int:
    """The random stream of one (item, node, part): independent of order, batching and resume."""
    key = f"{seed}\x00{item}\x00{node_id}\x00{extra}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & _M63


@dataclass
class GenCall:
    """One generation request for the model `model`; `result` or `error` is filled by the scheduler."""

    model: str
    request: GenRequest | ExtendRequest
    result: GenResult | None = None
    error: Exception | None = None


@dataclass
class ScoreCall:
    """Score one item's candidates with verifier `verifier`."""

    verifier: str
    question: str
    cands: Candidates
    result: Scored | None = None
    error: Exception | None = None


Call = GenCall | ScoreCall

# gate(job, worst_case, n, max_tokens, resize) -> Allowance: the scheduler's hook chain.
Gate = Callable[["Job", Cost, "int | None", "int | None", "Resize | None"], Allowance]


@dataclass
class JobContext:
    """What a job needs from the run: models, verifiers, answer extraction, the seed and the item."""

    backends: dict[str, Backend]
    scorers: dict[str, Scorer]
    extract: Callable[[str], str | None]
    seed: int
    item: int
    question: str
    values: dict[str, Value]
    default_revise: list[PromptPart] = field(default_factory=list)
    # Nodes whose samples a later `revise` or `extend` of the same model continues (`in_context`).
    keep_kv: frozenset[str] = frozenset()
    # This item's verifier scores so far: (verifier, prompt, text) -> (score, step scores).
    scores: dict[tuple[str, str, str], tuple[float, tuple[float, ...] | None]] = field(default_factory=dict)
    # Who its model calls work for (the item's index in the run): a backend charges each owner's prefill
    # as if it ran alone, however much another item's prompts left in the prefix cache.
    owner: object = None


def in_context(nodes: Any) -> frozenset[str]:
    """Ids of the `sample`, `revise` and `extend` nodes whose outputs a later `revise` or `extend`
    of the same model reads (directly or through a loop's phi): their samples' KV caches are worth
    keeping, because a revision prompt that restates the draft after its own prompt (an in-context
    revision template) is then served from the prefix cache and only what follows is computed."""
    by_id = {n.id: n for n in nodes}

    def producers(node_id: str, seen: set[str]) -> list[Any]:
        n = by_id.get(node_id)
        if n is None or node_id in seen:
            return []
        seen.add(node_id)
        if n.op == "phi":
            return [p for i in n.input_nodes() for p in producers(i, seen)]
        return [n] if n.op in ("sample", "revise", "extend") else []

    keep: set[str] = set()
    for n in by_id.values():
        if n.op not in ("revise", "extend") or n.args.model is None:
            continue
        if n.op == "revise" and (n.args.rounds or 1) > 1:
            keep.add(n.id)
        for src in n.input_nodes("cands"):
            keep.update(p.id for p in producers(src, set())
                        if p.args.model is not None and p.args.model.ref == n.args.model.ref)
    return frozenset(keep)


def gen_worst(spec: ModelSpec, prompt_tokens: int, n: int, max_tokens: int, shared: bool = True) -> Cost:
    """Worst case of drawing n samples of at most max_tokens from one prompt, prefilled once
    (n times when not `shared`: a server that takes each sample as its own request)."""
    p = prompt_tokens
    prefills = 1 if shared else n
    return Cost(
        calls=n,
        prompt_tokens=prefills * p,
        gen_tokens=n * max_tokens,
        flops=prefills * forward_flops(spec, 0, p) + n * forward_flops(spec, p, p + max_tokens),
    )


def _port(node: DagNode, role: str, values: dict[str, Value], absent: float, unset: float) -> float:
    """A sampling argument computed at run time (it comes on a port): `absent` without a port, `unset` where its
    value is None. A run-time 0 stays 0 (SamplingParams judges it: a top_p of 0 ran as 1.0; QA pass)."""
    ids = node.input_nodes(role)
    if not ids:
        return absent
    got = values.get(ids[0])
    return float(got) if got is not None else unset  # type: ignore[arg-type]


def _params(node: DagNode, max_tokens: int, values: dict[str, Value]) -> SamplingParams:
    a = node.args
    temp = a.temperature if a.temperature is not None else _port(node, "temperature", values, 1.0, 0.0)
    top_p = a.top_p if a.top_p is not None else _port(node, "top_p", values, 1.0, 1.0)
    return SamplingParams(temperature=temp, top_p=top_p, max_tokens=max_tokens, stop=tuple(a.stop or ()))


class Job:
    """One model node of one item. Subclasses define the phases."""

    def __init__(self, node: DagNode, ctx: JobContext) -> None:
        self.node = node
        self.ctx = ctx
        self.value: Value = None
        self.actual = Cost()
        self.allowance: Allowance | None = None
        self.refused: Allowance | None = None
        self.error: str | None = None
        self.phases = 0
        self.calls: list[Call] = []
        self.reused = 0  # candidates whose verifier score came from this item's cache, uncharged
        self.chat_drift: str | None = None  # a chat template that wrote more around a prompt than check measured

    @property
    def done(self) -> bool:
        return not self.calls

    def start(self, gate: Gate) -> None:
        """Begin phase one: ask for an allowance and queue its calls (or stop, refused)."""
        self.calls = self._phase(gate)

    def collect(self) -> Cost:
        """Consume the current phase's results (or its error). Returns what the phase spent."""
        spent = Cost()
        for c in self.calls:
            if c.error is not None:
                self.error = str(c.error)
                charged = getattr(c.error, "usage", None)  # a request whose outcome is unknown: its worst case
                if charged is not None:
                    spent = spent + charged.to_cost()
            elif isinstance(c, GenCall) and c.result is not None:
                spent = spent + c.result.usage.to_cost()
            elif isinstance(c, ScoreCall) and c.result is not None:
                spent = spent + c.result.cost
        self.actual = self.actual + spent
        calls, self.calls = self.calls, []
        if self.error is None:
            try:
                self._consume(calls)
            except (OpError, TtclRuntimeError) as e:
                self.error = str(e)
        return spent

    def next_phase(self, gate: Gate) -> None:
        """Queue the next phase's calls, if any (after the last phase was charged)."""
        if self.error is None:
            try:
                self.calls = self._phase(gate)
            except (OpError, TtclRuntimeError) as e:
                self.error = str(e)
                self.calls = []

    def _ask(self, gate: Gate, worst: Cost, n: int | None, m: int | None, resize: Resize | None) -> Allowance | None:
        allow = gate(self, worst, n, m, resize)
        self.phases += 1
        if not allow.granted:
            # the template's text, not the input, is what is over (QA pass: a 6-token input was said to be longer
            # than its text[<=40]); an input counted over its own bound (runtime/input_bound.py) is said as it is
            prompt_over = allow.reason.startswith(INPUT_OVER_BOUND) and not allow.reason.startswith(
                f"{INPUT_OVER_BOUND}: {INPUT_IS}")
            if self.chat_drift is not None and prompt_over:
                allow = replace(allow, reason=f"{self.chat_drift}; {allow.reason.removeprefix(INPUT_OVER_BOUND + ': ')}")
            self.refused = allow
            return None
        self.allowance = allow
        return allow

    def _phase(self, gate: Gate) -> list[Call]:
        raise NotImplementedError

    def _consume(self, calls: list[Call]) -> None:
        raise NotImplementedError

    def as_chat(self, be: Backend, prompt: str) -> str:
        """`prompt` as a `chat = true` model is sent it, noting in `chat_drift` a template that wrote other text
        around it than `ttcl check` measured (its text depends on the message, which no probe fully sees)."""
        sent = as_chat(self.node, be, prompt)
        parts, ref = getattr(be, "chat_parts", None), self.node.args.model
        if parts is not None and ref is not None and ref.options.get("chat"):
            before, after = parts()
            middle = sent[len(before):len(sent) - len(after)] if len(sent) >= len(before) + len(after) else None
            if not (sent.startswith(before) and sent.endswith(after) and middle is not None and middle in prompt):
                self.chat_drift = (f"the chat template of model `{ref.name}` wrote "
                                   f"{len(sent) - len(prompt):,} characters around this prompt, where `ttcl check` "
                                   f"measured {len(before) + len(after):,}: its text depends on the message, so no "
                                   "bound holds for it (use a template that writes the message as it is)")
        return sent

    def backend(self, role: str = "model") -> tuple[str, Backend]:
        ref = self.node.args.model
        if ref is None:
            raise OpError(f"{self.node.op}: no model")
        return ref.ref, self.ctx.backends[ref.ref]

    def cands_in(self) -> Candidates:
        ids = self.node.input_nodes("cands")
        v = self.ctx.values.get(ids[0]) if ids else None
        return v if isinstance(v, Candidates) else Candidates()


def as_chat(node: DagNode, be: Backend, prompt: str) -> str:
    """The prompt a `chat = true` model is sent: its tokenizer's chat template around one user message."""
    ref = node.args.model
    if ref is None or not ref.options.get("chat"):
        return prompt
    apply = getattr(be, "chat_prompt", None)
    if apply is None:
        raise TtclRuntimeError(f"model `{ref.name}` is declared with `chat = true`, but its backend cannot apply a chat template")
    return str(apply(prompt))


class SampleJob(Job):
    def _phase(self, gate: Gate) -> list[Call]:
        if self.phases:
            return []
        a = self.node.args
        key, be = self.backend()
        prompt = render(a.prompt or [], self.ctx.values)
        if not prompt:
            raise OpError("sample: the prompt is empty")
        prompt = self.as_chat(be, prompt)
        self.prompt = prompt
        p = be.count_tokens(prompt)
        self.prompt_len, self.spec = p, be.spec
        n, m = a.n or 1, a.max_tokens or 256
        sh = getattr(be, "shares_prefill", True)
        allow = self._ask(gate, gen_worst(be.spec, p, n, m, sh), n, m, lambda nn, mm: gen_worst(be.spec, p, nn, mm, sh))
        if allow is None:
            return []
        seed = derive_seed(a.seed if a.seed is not None else self.ctx.seed, self.ctx.item, self.node.id)
        req = GenRequest(prompt=prompt, n=allow.n or n, params=_params(self.node, allow.max_tokens or m, self.ctx.values),
                         seed=seed, keep_kv=True if self.node.id in self.ctx.keep_kv else None, owner=self.ctx.owner)
        return [GenCall(key, req)]

    def _consume(self, calls: list[Call]) -> None:
        (call,) = calls
        assert isinstance(call, GenCall) and call.result is not None
        ex = self.ctx.extract
        uid = self.node.id
        p = self.prompt_len
        self.value = Candidates(
            tuple(
                Candidate(self.prompt, s.text, ex(s.text), tokens=len(s.token_ids), finish=s.finish_reason, uid=f"{uid}#{j}",
                          flops=forward_flops(self.spec, p, p + len(s.token_ids)))
                for j, s in enumerate(call.result.samples)
            )
        )


class ExtendJob(Job):
    """Continue each candidate by one step, n ways. A candidate that already ended (EOS) is carried
    over once, unchanged and uncharged: there is nothing left to continue."""

    def _phase(self, gate: Gate) -> list[Call]:
        if self.phases:
            return []
        a = self.node.args
        key, be = self.backend()
        self.parents = self.cands_in()
        self.open = [c for c in self.parents.items if c.finish != "eos"]
        lengths = [be.count_tokens(c.prompt + c.text) for c in self.open]
        self.lengths, self.spec = lengths, be.spec
        n, m = a.n or 1, a.max_tokens or 64

        sh = getattr(be, "shares_prefill", True)

        def worst(nn: int, mm: int) -> Cost:
            return sum((gen_worst(be.spec, L, nn, mm, sh) for L in lengths), Cost())

        if not lengths:  # every candidate has ended: the node runs, free
            self._ask(gate, Cost(), None, None, None)
            self.value = self.parents
            return []
        allow = self._ask(gate, worst(n, m), n, m, worst)
        if allow is None:
            return []
        params = _params(self.node, allow.max_tokens or m, self.ctx.values)
        return [
            GenCall(key, ExtendRequest(prompt=c.prompt, partial=c.text, n=allow.n or n, params=params,
                                       seed=derive_seed(self.ctx.seed, self.ctx.item, self.node.id, j),
                                       owner=self.ctx.owner))
            for j, c in enumerate(self.open)
        ]

    def _consume(self, calls: list[Call]) -> None:
        ex = self.ctx.extract
        results = iter(calls)
        lengths = iter(self.lengths)
        out: list[Candidate] = []
        for parent in self.parents.items:
            if parent.finish == "eos":
                out.append(parent)
                continue
            call, L = next(results), next(lengths)
            assert isinstance(call, GenCall) and call.result is not None
            lineage = (*parent.ancestors, parent.uid) if parent.uid else parent.ancestors
            for s in call.result.samples:
                text = parent.text + s.text
                out.append(Candidate(parent.prompt, text, ex(text), tokens=parent.tokens + len(s.token_ids),
                                     finish=s.finish_reason, uid=f"{self.node.id}#{len(out)}", ancestors=lineage,
                                     flops=parent.flops + forward_flops(self.spec, L, L + len(s.token_ids))))
        self.value = Candidates(tuple(out))


class VerifyJob(Job):
    """Score candidates. A candidate this verifier already scored for this item (same prompt and text:
    a beam carried over unchanged, a duplicate sample) reuses that score and is not charged again."""

    def _phase(self, gate: Gate) -> list[Call]:
        if self.phases:
            return []
        ref = self.node.args.verifier
        if ref is None:
            raise OpError("verify: no verifier")
        self.name = ref.name
        self.cands = self.cands_in()
        if not len(self.cands):
            self.value = self.cands
            return []
        fresh: dict[tuple[str, str, str], Candidate] = {}
        for c in self.cands.items:
            key = (ref.name, c.prompt, c.text)
            if key not in self.ctx.scores:
                fresh.setdefault(key, c)
        self.reused = len(self.cands) - len(fresh)
        if not fresh:  # every score is known: the node runs, free
            self._ask(gate, Cost(), None, None, None)
            self._assemble()
            return []
        self.fresh = Candidates(tuple(fresh.values()))
        self.shares: dict[tuple[str, str], float] = {}
        scorer = self.ctx.scorers[ref.name]
        if self._ask(gate, scorer.worst_case(self.ctx.question, self.fresh), None, None, None) is None:
            return []
        return [ScoreCall(ref.name, self.ctx.question, self.fresh)]

    def _consume(self, calls: list[Call]) -> None:
        (call,) = calls
        assert isinstance(call, ScoreCall) and call.result is not None
        r = call.result
        if len(r.scores) != len(self.fresh):
            raise OpError(f"verifier returned {len(r.scores)} scores for {len(self.fresh)} candidates")
        share = r.cost.flops / len(self.fresh)  # every candidate scored here is one verifier sequence
        for c, s, st in zip(self.fresh.items, r.scores, r.steps, strict=True):
            self.ctx.scores[(self.name, c.prompt, c.text)] = (s, st)
            self.shares[(c.prompt, c.text)] = share
        self._assemble()

    def _assemble(self) -> None:
        got, shares = self.ctx.scores, getattr(self, "shares", {})
        self.value = Candidates(tuple(c.with_score(*got[(self.name, c.prompt, c.text)], flops=shares.get((c.prompt, c.text), 0.0))
                                      for c in self.cands.items))


class ReviseJob(Job):
    """`rounds` rounds; each optionally scores the current candidates for feedback, then rewrites them all."""

    def _phase(self, gate: Gate) -> list[Call]:
        a = self.node.args
        if self.phases == 0:
            self.current = self.cands_in()
            self.round = 0
            self.feedback: list[str] = [""] * len(self.current)
            self.scoring = a.feedback is not None
            self.value = self.current
        if not len(self.current) or self.round >= (a.rounds or 1):
            return []
        if self.scoring:
            ref = a.feedback
            assert ref is not None
            scorer = self.ctx.scorers[ref.name]
            if self._ask(gate, scorer.worst_case(self.ctx.question, self.current), None, None, None) is None:
                return []
            return [ScoreCall(ref.name, self.ctx.question, self.current)]
        key, be = self.backend()
        template = a.prompt or self.ctx.default_revise
        self.prompts = [
            render(template, self.ctx.values, {"c": c, "feedback": fb, "question": self.ctx.question})
            for c, fb in zip(self.current.items, self.feedback, strict=True)
        ]
        self.prompts = [self.as_chat(be, p) for p in self.prompts]
        lengths = [be.count_tokens(p) for p in self.prompts]
        self.lengths, self.spec = lengths, be.spec
        m = a.max_tokens or 256

        def worst(_n: int, mm: int) -> Cost:
            return sum((gen_worst(be.spec, L, 1, mm) for L in lengths), Cost())

        allow = self._ask(gate, worst(1, m), None, m, worst)
        if allow is None:
            return []
        # a run-time temperature comes on a port (it was ignored: 0.7 instead; QA pass)
        temp = a.temperature if a.temperature is not None else _port(self.node, "temperature", self.ctx.values, 0.7, 0.0)
        params = SamplingParams(temperature=temp, max_tokens=allow.max_tokens or m, stop=tuple(a.stop or ()))
        return [
            GenCall(key, GenRequest(prompt=p, n=1, params=params,
                                    seed=derive_seed(self.ctx.seed, self.ctx.item, self.node.id, self.round * 65536 + j),
                                    keep_kv=True if self.node.id in self.ctx.keep_kv else None,
                                    owner=self.ctx.owner))
            for j, p in enumerate(self.prompts)
        ]

    def _consume(self, calls: list[Call]) -> None:
        if self.scoring:
            (call,) = calls
            assert isinstance(call, ScoreCall) and call.result is not None
            self.feedback = [fmt_number(s) for s in call.result.scores]
            self.scoring = False
            return
        ex = self.ctx.extract
        out: list[Candidate] = []
        for j, (c, call, L) in enumerate(zip(self.current.items, calls, self.lengths, strict=True)):
            assert isinstance(call, GenCall) and call.result is not None
            s = call.result.samples[0]
            lineage = (*c.ancestors, c.uid) if c.uid else c.ancestors
            out.append(Candidate(c.prompt, s.text, ex(s.text), tokens=len(s.token_ids), finish=s.finish_reason,
                                 uid=f"{self.node.id}@{self.round}#{j}", ancestors=lineage,
                                 flops=c.flops + forward_flops(self.spec, L, L + len(s.token_ids))))
        self.current = Candidates(tuple(out))
        self.value = self.current
        self.round += 1
        self.scoring = self.node.args.feedback is not None


JOBS: dict[str, type[Job]] = {"sample": SampleJob, "extend": ExtendJob, "verify": VerifyJob, "revise": ReviseJob}


def make_job(node: DagNode, ctx: JobContext) -> Job:
    return JOBS[node.op](node, ctx)


def trace_outputs(value: Any) -> Any:
    from ttcl.runtime.values import to_json

    return to_json(value)
