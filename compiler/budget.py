"""The static worst-case bound: per DAG node and in total, in every static unit.

The runtime accountant charges actual spend with the same formulas
(`costmodel.forward_flops`), so for every item actual <= this bound. The
rules, per node (C = candidate count bound of the input, L = a candidate's
length bound, prompt + generated, in tokens; fwd = forward_flops):

- `sample(model, prompt, n, max_tokens=M)`, prompt bound P: the prompt is
  prefilled once and shared by the n samples (on a server each sample
  prefills its own: n·P and n·fwd(0, P) below). calls n, prompt_tokens P,
  gen_tokens n·M, flops fwd(0, P) + n·fwd(P, P+M). Output: n candidates of
  prompt length P and generated length M.
- `extend(model, cands, n, M)`: each candidate's whole context is
  re-prefilled (worst case: no cache kept), then continued n ways. calls
  C·n, prompt_tokens C·L, gen_tokens C·n·M, flops C·(fwd(0, L) +
  n·fwd(L, L+M)). Output: C·n candidates, generated length + M.
- `verify(v, cands)`: a checker costs nothing. A reward model or PRM reads
  each candidate (prompt + text) once: calls C, prompt_tokens C·L, flops
  C·fwd_rm(0, L). A judge makes one forward pass per candidate over its
  filled rubric (the candidate's prompt + text appended when the rubric
  names no `{c...}` field), bound J, and reads P(yes) from the last
  position: calls C, prompt_tokens C·J, flops C·fwd(0, J).
- `revise(model, cands, prompt, feedback, rounds, M)`: per round, the
  feedback verifier's pass (as verify), then each candidate's rewrite prompt
  (bound R, from the current candidates) is prefilled and M tokens are
  generated: calls C, prompt_tokens C·R, gen_tokens C·M, flops
  C·(fwd(0, R) + fwd(R, R+M)). Output: C candidates of generated length M
  that keep their drafts' prompts (and its length).
- Everything else (vote, best, top, filter, statistics, arithmetic, guards,
  phi) costs nothing.

Length bounds: a text input is bounded by its declaration (`text[<=256]`,
in tokens) or `--max-input-tokens`; literal template text by its UTF-8 byte
count (sound for char- and byte-level BPE tokenizers); a number or bool
filled into a template by `NUMBER_TEXT_TOKENS` (the runtime formats numbers
with `NUMBER_FORMAT`); `{c.text}` by a candidate's generated length, an
answer (`vote`, `best`, `{c.answer}`) by `answer_len` of it (an extractor
may rewrite what it reads: countdown's canonical form adds parentheses,
`.5` reads as `0.5`; the runtime holds every extractor to that bound),
`{c.prompt}` by its prompt length. Every sequence fed to a model
adds `SPECIAL_TOKENS` (a BOS). A template's bound is the sum of its parts'
(token counts are assumed subadditive under concatenation).

Totals follow the guard tree: the sum over a sequence, the max over the two
arms of each guard, so unrolled loops sum naturally and a branch costs its
dearest arm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ttcl.compiler.chat import ChatTemplateError, chat_overhead
from ttcl.compiler.costmodel import Cost, ModelSpec, Unit, forward_flops
from ttcl.compiler.dag import Dag, DagNode, GuardCond, ModelRef, PromptPart, VerifierRef, construct
from ttcl.compiler.diagnostics import Diagnostic, SemanticDiagnosticError
from ttcl.compiler.endpoints import is_endpoint
from ttcl.compiler.models import (
    MetaTemplateError,
    ModelSpecError,
    UnknownSizeError,
    meta_template_parts,
    model_dir_of,
    model_spec,
)
from ttcl.compiler.tokenizer_facts import TextFacts, facts_of_dir

SPECIAL_TOKENS = 1
NUMBER_FORMAT = ".6g"
NUMBER_TEXT_TOKENS = 13  # len("-1.23457e+308"): the longest `.6g` rendering of a float
BOOL_TEXT_TOKENS = 5  # "false"


@dataclass(frozen=True)
class ValueBound:
    """What is known statically about a value: candidate count and per-candidate lengths, or a text length."""

    count: int = 0
    prompt_len: int = 0
    gen_len: int = 0
    length: int = 0  # text / answer: tokens, no specials
    is_cands: bool = False
    # the tokenizers whose tokens measure prompt_len / gen_len (the models that wrote the candidates)
    toks: tuple[TextFacts | None, ...] = ()

    @property
    def seq_len(self) -> int:
        """A candidate's whole sequence: prompt + generated."""
        return self.prompt_len + self.gen_len

    def join(self, other: ValueBound) -> ValueBound:
        return ValueBound(
            max(self.count, other.count), max(self.prompt_len, other.prompt_len),
            max(self.gen_len, other.gen_len), max(self.length, other.length), self.is_cands or other.is_cands,
            tuple(dict.fromkeys(self.toks + other.toks)),
        )


class NoInputBound(SemanticDiagnosticError):
    """A text input without a length bound: nothing can be proved about the prompts built from it."""


class TooManyCandidates(SemanticDiagnosticError):
    """A value whose candidate count bound is over MAX_CANDIDATES, or a text whose length bound is over
    MAX_TEXT_TOKENS (concatenation is free in every unit, so no budget stops a value that doubles in a loop: it
    would fill the memory)."""


MAX_CANDIDATES = 65536  # one value's candidates, as one call's n or k (builtins.MAX_N)
MAX_TEXT_TOKENS = 1 << 24  # one text value: 16M tokens, far past any model's context


def text_tokens(text: str) -> int:
    """The token bound of literal text: its UTF-8 byte count."""
    return len(text.encode("utf-8"))


@dataclass
class NodeBounds:
    """The bound pass's result: per node the value bound and the cost bound."""

    values: dict[str, ValueBound]
    costs: dict[str, Cost]
    verifier_len: dict[str, int] = field(default_factory=dict)  # per verify node: one input, in the verifier's tokens
    notes: list[str] = field(default_factory=list)  # what the bound could not know (shown by `ttcl check`)


SpecLookup = Callable[[ModelRef], ModelSpec]


def bound_nodes(dag: Dag, spec_of: SpecLookup) -> NodeBounds:
    """Value and cost bounds for every node, in topological order."""
    values: dict[str, ValueBound] = {}
    costs: dict[str, Cost] = {}
    out = NodeBounds(values, costs)
    question = _question_bound(dag)
    _FACTS_MEMO.append({})
    try:
        _bound_all(dag, spec_of, question, out)
    finally:
        _FACTS_MEMO.pop()
    return out


def _bound_all(dag: Dag, spec_of: SpecLookup, question: int, out: NodeBounds) -> None:
    values, costs = out.values, out.costs
    for node in dag.topological_order():
        _CURRENT.append((out, node))
        try:
            value, cost = _bound_node(node, values, spec_of, question)
        finally:
            _CURRENT.pop()
        if value.is_cands and value.count > MAX_CANDIDATES:
            raise TooManyCandidates([Diagnostic(
                span=node.span, message=f"`{node.var or node.op}` can hold up to {_count(value.count)} candidates, "
                                        f"over the limit of {MAX_CANDIDATES:,} for one value",
                hint="a list joined with itself (`c = c + c`) in a loop doubles each round; keep the best with "
                     "`top(c, k = N)`")])
        if not value.is_cands and value.length > MAX_TEXT_TOKENS:  # a text joined with itself ran out of memory
            raise TooManyCandidates([Diagnostic(
                span=node.span, message=f"`{node.var or node.op}` can grow to {_count(value.length)} tokens of text, "
                                        f"over the limit of {MAX_TEXT_TOKENS:,} for one value",
                hint="a text joined with itself (`t = t + t`) in a loop doubles each round")])
        values[node.id] = value
        if cost is not None:
            costs[node.id] = cost


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**9 else f"{float(n):.3g}"


_CURRENT: list[tuple[NodeBounds, DagNode]] = []  # the node being bounded, for verifier lengths and notes


def _question_bound(dag: Dag) -> int:
    for node_id in dag.inputs:
        node = dag.nodes[node_id]
        if node.type == "text":
            return node.args.max_len or 0
    return 0


def _bound_node(node: DagNode, values: dict[str, ValueBound], spec_of: SpecLookup, question: int) -> tuple[ValueBound, Cost | None]:
    a = node.args
    first = values[node.inputs[0].node] if node.inputs else ValueBound()
    match node.op:
        case "input":
            if node.type == "text" and a.max_len is None:
                raise NoInputBound([Diagnostic(
                    span=node.span, message=f"input `{a.name}` has no length bound",
                    expected="`text[<=N]`", hint=f"declare `{a.name}: text[<=256]`, or pass --max-input-tokens N to check, graph or run")])
            return ValueBound(length=a.max_len or 0), None
        case "const" | "param":
            return ValueBound(length=_static_text_len(a.value)), None
        case "template":
            parts = a.prompt or []
            return ValueBound(length=_template_len(parts, values, None, question), toks=_template_toks(parts, values)), None
        case "sample":
            return _sample(node, values, spec_of, question)
        case "extend":
            return _extend(node, first, spec_of)
        case "verify":
            assert a.verifier is not None
            return first, _verify_cost(a.verifier, first, spec_of, values, question)
        case "revise":
            return _revise(node, first, values, spec_of, question)
        case "vote" | "best":
            return ValueBound(length=answer_len(first.gen_len), toks=first.toks), None
        case "top":
            return ValueBound(min(first.count, a.k or 0), first.prompt_len, first.gen_len, is_cands=True, toks=first.toks), None
        case "filter" | "backup":
            return first, None
        case "balance":  # at most n copies of its input candidates
            return ValueBound(a.n or 0, first.prompt_len, first.gen_len, is_cands=True, toks=first.toks), None
        case "concat":
            left, right = values[node.inputs[0].node], values[node.inputs[1].node]
            joined = left.join(right)
            return ValueBound(left.count + right.count, joined.prompt_len, joined.gen_len, is_cands=True, toks=joined.toks), None
        case "phi" | "return":
            out = ValueBound()
            for port in node.inputs:
                out = out.join(values[port.node])
            return out, None
    return ValueBound(length=NUMBER_TEXT_TOKENS), None


def _static_text_len(value: object) -> int:
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, bool):
        return BOOL_TEXT_TOKENS
    return NUMBER_TEXT_TOKENS


def _template_len(parts: Iterable[PromptPart], values: dict[str, ValueBound], cand: ValueBound | None, question: int,
                  reader: tuple[TextFacts | None, str] | None = None) -> int:
    """The token bound of a filled template (no specials). `reader`: the facts of the model that reads
    the prompt, and who it is; text another model wrote is converted into the reader's tokens."""
    total = 0
    for part in parts:
        if part.text is not None:
            total += text_tokens(part.text)
        elif part.source is not None:
            value = values[part.source] if reader is None else _read_by(values[part.source], *reader)
            total += _field_len(value, part.path[1:], is_cands=value.is_cands)
        elif part.path[0] == "c" and cand is not None:
            total += _field_len(cand, part.path[1:], is_cands=True)
        elif part.path[0] == "question":
            total += question
        else:  # {feedback}: a score, formatted
            total += NUMBER_TEXT_TOKENS
    return total


def _read_by(value: ValueBound, facts: TextFacts | None, who: str) -> ValueBound:
    """`value` (text some models wrote) in the tokens of the model with `facts`; unchanged when the same tokenizer wrote it."""
    # Unchanged only when the reader wrote it with a tokenizer whose re-encoding is canonical (WordLevel): a
    # BPE model's sampled text can re-encode to more tokens than it sampled, even in its own prompt.
    if not value.toks or all(f == facts and (f is None or f.stable) for f in value.toks):
        return value
    if value.is_cands:
        return _in_tokens_of(value, facts, who)
    length = _convert(value.length, value.toks, facts)
    if length is None:
        _note(f"{who}: cannot relate its tokenizer to the one that wrote the text in its prompt; "
              "its length is bounded as if the tokenizers were the same")
        return value
    return ValueBound(length=length, toks=(facts,))


def _template_toks(parts: Iterable[PromptPart], values: dict[str, ValueBound]) -> tuple[TextFacts | None, ...]:
    """The tokenizers that wrote the text a template interpolates (none for inputs, params, literals)."""
    found: dict[TextFacts | None, None] = {}
    for part in parts:
        if part.source is not None:
            found.update(dict.fromkeys(values[part.source].toks))
    return tuple(found)


def _field_len(value: ValueBound, attrs: list[str], *, is_cands: bool) -> int:
    if not is_cands:
        return value.length
    field = attrs[0] if attrs else "text"
    if field == "prompt":
        return value.prompt_len
    if field == "score":
        return NUMBER_TEXT_TOKENS
    return answer_len(value.gen_len) if field == "answer" else value.gen_len


def answer_len(text_len: int) -> int:
    """The most an answer extracted from a text of `text_len` may be: twice it, plus one (`runtime/extract.py`
    refuses an extractor's answer over that, in characters and in UTF-8 bytes)."""
    return 2 * text_len + 1


ZERO = Cost()


def make_cost(calls: float = 0, prompt_tokens: float = 0, gen_tokens: float = 0, flops: float = 0) -> Cost:
    """A Cost without pydantic validation (the bound pass makes one per node, for every `auto` trial)."""
    return construct(Cost, {"calls": calls, "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "flops": flops, "seconds": 0})


def _gen_cost(spec: ModelSpec, seqs: int, prompt: int, n: int, max_tokens: int, *, shared: bool = True) -> Cost:
    """`seqs` prompts of length `prompt`, each prefilled once (n times unless `shared`) and continued `n` ways."""
    prefills = 1 if shared else n
    return make_cost(
        calls=seqs * n,
        prompt_tokens=seqs * prefills * prompt,
        gen_tokens=seqs * n * max_tokens,
        flops=seqs * (prefills * forward_flops(spec, 0, prompt) + n * forward_flops(spec, prompt, prompt + max_tokens)),
    )


def shares_prefill(ref: ModelRef) -> bool:
    """A local model shares one prefill among n samples; a server is not known to (`Endpoint.shares_prefill`)."""
    return not is_endpoint(ref.ref)


def _sample(node: DagNode, values: dict[str, ValueBound], spec_of: SpecLookup, question: int) -> tuple[ValueBound, Cost]:
    a = node.args
    assert a.model is not None and a.n is not None and a.max_tokens is not None
    reader = (facts_of_ref(a.model), f"sample with model `{a.model.name}`")
    prompt = _template_len(a.prompt or [], values, None, question, reader) + SPECIAL_TOKENS + chat_tokens(a.model)
    cost = _gen_cost(spec_of(a.model), 1, prompt, a.n, a.max_tokens, shared=shares_prefill(a.model))
    return ValueBound(a.n, prompt, a.max_tokens, is_cands=True, toks=(facts_of_ref(a.model),)), cost


def _extend(node: DagNode, cands: ValueBound, spec_of: SpecLookup) -> tuple[ValueBound, Cost]:
    a = node.args
    assert a.model is not None and a.n is not None and a.max_tokens is not None
    facts = facts_of_ref(a.model)
    cands = _in_tokens_of(cands, facts, f"extend with model `{a.model.name}`")
    cost = _gen_cost(spec_of(a.model), cands.count, cands.seq_len, a.n, a.max_tokens, shared=shares_prefill(a.model))
    return ValueBound(cands.count * a.n, cands.prompt_len, cands.gen_len + a.max_tokens, is_cands=True, toks=(facts,)), cost


def _verify_cost(v: VerifierRef, cands: ValueBound, spec_of: SpecLookup, values: dict[str, ValueBound], question: int) -> Cost:
    if v.kind == "check" or v.model is None:
        return ZERO
    spec = spec_of(v.model)
    facts = facts_of_ref(v.model)
    if v.kind == "judge":
        mine = _in_tokens_of(cands, facts, f"judge `{v.name}`")
        length = judge_prompt_len(v, mine, values, _convert(question, cands.toks, facts) or question)
    else:
        length = reward_input_len(v, cands, facts, question)
    if _CURRENT:
        bounds, node = _CURRENT[-1]
        bounds.verifier_len[node.id] = max(bounds.verifier_len.get(node.id, 0), length)
    return make_cost(calls=cands.count, prompt_tokens=cands.count * length, flops=cands.count * forward_flops(spec, 0, length))


DEFAULT_INPUT_TEMPLATES = {"reward": "{question}\n{completion}", "prm": "{question}\n{steps}",
                           "likelihood": "{question}\n{steps}"}


def reward_input_len(v: VerifierRef, cands: ValueBound, facts: TextFacts | None, question: int) -> int:
    """One reward-model or PRM input, in the verifier's own tokens: its own template (`ttcl_meta.json`
    `input_template`, default `{question}\n{completion}`) filled with the item's question and the
    candidate's text (a PRM re-joins the text's lines, each ending in a newline: one more token at most)."""
    template = (facts.input_template if facts is not None else None) or DEFAULT_INPUT_TEMPLATES[v.kind]
    try:
        parts = meta_template_parts(template, ("question", "completion", "steps"))
    except MetaTemplateError:
        parts = meta_template_parts(DEFAULT_INPUT_TEMPLATES[v.kind], ("question", "steps"))
    text = _convert(cands.gen_len, cands.toks, facts)
    q = _convert(question, cands.toks, facts)
    if text is None or q is None:
        _note(f"verifier `{v.name}`: cannot relate its tokenizer to the one that wrote the candidates "
              "(no tokenizer.json, or one that may lengthen text); its input is bounded as if they were the same")
        text, q = cands.gen_len, question
    if v.kind in ("prm", "likelihood"):  # the lines re-joined, each ending in the step token
        text += 1
    total = sum(text_tokens(lit) if name is None else (q if name == "question" else text) for lit, name in parts)
    extra = facts.extra if facts is not None else 0
    return total + max(extra, SPECIAL_TOKENS)


def _convert(length: int, src: tuple[TextFacts | None, ...], dst: TextFacts | None) -> int | None:
    """A length measured in the tokens of the models `src`, in the tokens of `dst`; None when unknowable.

    Same tokenizer: the same count. Otherwise each source token decodes to at most `token_bytes`
    bytes, and a per-byte tokenizer makes at most one token per byte (plus its fixed extras).
    """
    worst = 0
    for f in src or (dst,):
        if f is not None and dst is not None and f.tok_id == dst.tok_id and (f.stable or not dst.per_byte or f.token_bytes is None):
            worst = max(worst, length)
        elif f is None and dst is None:
            worst = max(worst, length)  # neither is known: the program's own figures are all there is
        elif f is not None and dst is not None and f.token_bytes is not None and dst.per_byte:
            worst = max(worst, length * f.token_bytes)
        else:
            return None
    return worst


def _in_tokens_of(cands: ValueBound, facts: TextFacts | None, who: str) -> ValueBound:
    """`cands` with prompt and generated lengths in the tokens of the model with `facts`."""
    if not cands.toks or all(f == facts and (f is None or f.stable) for f in cands.toks):
        return cands
    same = facts is not None and all(f is not None and f.tok_id == facts.tok_id for f in cands.toks)
    # a prompt is a canonical encoding (the text was tokenized), so the same tokenizer keeps its count;
    # sampled text need not be, so it converts through bytes
    prompt = cands.prompt_len if same else _convert(cands.prompt_len, cands.toks, facts)
    gen = _convert(cands.gen_len, cands.toks, facts)
    if prompt is None or gen is None:
        _note(f"{who}: cannot relate its tokenizer to the one that wrote its candidates; "
              "their lengths are bounded as if the tokenizers were the same")
        return cands
    return ValueBound(cands.count, prompt, gen, cands.length, cands.is_cands, (facts,))


def _note(text: str) -> None:
    if _CURRENT:
        bounds, node = _CURRENT[-1]
        line = f"{node.span.file}:{node.span.line}: {node.id}: {text}"
        if line not in bounds.notes:
            bounds.notes.append(line)


def facts_of_ref(ref: ModelRef) -> TextFacts | None:
    """The tokenizer facts of a model declaration's directory, if it is on this machine; looked up once per ref
    in one bound pass (QA pass: resolving the path for each of 40,000 sample nodes, twice, was 60% of a `check`)."""
    key = (ref.ref, ref.module)  # the module fixes base_dir
    memo = _FACTS_MEMO[-1] if _FACTS_MEMO else {}
    if key not in memo:
        memo[key] = facts_of_dir(model_dir_of(ref.ref, ref.base_dir))
    return memo[key]


_FACTS_MEMO: list[dict[tuple[str, str], TextFacts | None]] = []  # one per bound pass running (bound_nodes)


def chat_tokens(ref: ModelRef) -> int:
    """What a chat model's template adds to each prompt (its fixed text, counted as literal text); 0 otherwise."""
    if not ref.options.get("chat"):
        return 0
    path = model_dir_of(ref.ref, ref.base_dir)
    if path is None:
        _note(f"model `{ref.name}` (chat = true) is not on this machine: its chat template's length is not counted")
        return 0
    try:
        return text_tokens(chat_overhead(path))
    except ChatTemplateError:
        return 0  # reported at the declaration by the model-spec lookup


def judge_prompt_len(v: VerifierRef, cands: ValueBound, values: dict[str, ValueBound], question: int) -> int:
    """The judge's input per candidate: the filled rubric, plus the candidate itself if the rubric names no `{c...}` field."""
    rubric = v.rubric or []
    names_candidate = any(p.source is None and p.path[:1] == ["c"] for p in rubric)
    extra = 0 if names_candidate else cands.seq_len
    reader = (facts_of_ref(v.model), f"judge `{v.name}`") if v.model is not None else None
    return _template_len(rubric, values, cands, question, reader) + extra + SPECIAL_TOKENS


def _revise(node: DagNode, cands: ValueBound, values: dict[str, ValueBound], spec_of: SpecLookup, question: int) -> tuple[ValueBound, Cost]:
    a = node.args
    assert a.model is not None and a.max_tokens is not None
    spec = spec_of(a.model)
    facts = facts_of_ref(a.model)
    cost = ZERO
    current = cands
    for _ in range(a.rounds or 1):
        if a.feedback is not None:
            cost = _add(cost, _verify_cost(a.feedback, current, spec_of, values, question))
        mine = _in_tokens_of(current, facts, f"revise with model `{a.model.name}`")
        prompt = (_template_len(a.prompt or [], values, mine, _convert(question, current.toks, facts) or question,
                                (facts, f"revise with model `{a.model.name}`"))
                  + SPECIAL_TOKENS + chat_tokens(a.model))
        cost = _add(cost, _gen_cost(spec, current.count, prompt, 1, a.max_tokens))
        # a revised candidate keeps its draft's prompt (runtime/jobs.py, ReviseJob), which `extend`, a judge or
        # `{c.prompt}` read later: bounding it by the revise prompt was unsound one way and refused valid programs
        # the other (QA pass)
        current = ValueBound(current.count, mine.prompt_len, a.max_tokens, is_cands=True, toks=(facts,))
    return current, cost


# ---------------------------------------------------------------- totals


def _add(a: Cost, b: Cost) -> Cost:
    return make_cost(a.calls + b.calls, a.prompt_tokens + b.prompt_tokens, a.gen_tokens + b.gen_tokens, a.flops + b.flops)


_Vec = tuple[float, float, float, float]
_ZERO_VEC: _Vec = (0.0, 0.0, 0.0, 0.0)


def _vadd(a: _Vec, b: _Vec) -> _Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _vmax(a: _Vec, b: _Vec) -> _Vec:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def total_cost(dag: Dag, costs: dict[str, Cost], include: Callable[[DagNode], bool] | None = None) -> Cost:
    """The worst case over the guard tree: sum over a sequence, unit-wise max over the two arms of each guard."""
    direct: dict[GuardCond | None, _Vec] = {}
    guards_under: dict[GuardCond | None, list[str]] = {}
    guard_ids: list[str] = []
    for node in dag.topological_order():
        if node.op == "guard":
            guards_under.setdefault(node.guard, []).append(node.id)
            guard_ids.append(node.id)
        cost = costs.get(node.id)
        if cost is not None and (include is None or include(node)):
            vec = (cost.calls, cost.prompt_tokens, cost.gen_tokens, cost.flops)
            direct[node.guard] = _vadd(direct.get(node.guard, _ZERO_VEC), vec)
    arm_total: dict[tuple[str, bool], _Vec] = {}
    for gid in reversed(guard_ids):  # inner guards are created after outer ones
        for arm in (True, False):
            arm_total[(gid, arm)] = _ctx_total(GuardCond.make(node=gid, arm=arm), direct, guards_under, arm_total)
    c = _ctx_total(None, direct, guards_under, arm_total)
    return make_cost(*c)


def _ctx_total(ctx: GuardCond | None, direct: dict[GuardCond | None, _Vec], guards_under: dict[GuardCond | None, list[str]],
               arm_total: dict[tuple[str, bool], _Vec]) -> _Vec:
    total = direct.get(ctx, _ZERO_VEC)
    for gid in guards_under.get(ctx, ()):
        total = _vadd(total, _vmax(arm_total[(gid, True)], arm_total[(gid, False)]))
    return total


def spec_lookup(diagnostics: list[Diagnostic], *, needs_flops: bool = True) -> SpecLookup:
    """A spec resolver that records a diagnostic per failing declaration (once) and returns a zero spec.

    An endpoint whose size is unknown is an error only when `needs_flops` (a
    budget limits FLOPs); otherwise its FLOPs count as zero and say so nowhere
    else than in the run's header (`flops_known`)."""
    failed: set[tuple[str, str, int]] = set()

    seen: dict[tuple[str, str, tuple[tuple[str, float], ...]], ModelSpec] = {}

    def spec_of(ref: ModelRef) -> ModelSpec:
        key = (ref.ref, ref.module, tuple(sorted(ref.options.items())))
        found = seen.get(key)
        if found is not None:
            return found
        try:
            found = seen[key] = model_spec(ref.ref, ref.options, base_dir=ref.base_dir)
            return found
        except ModelSpecError as e:
            if isinstance(e, UnknownSizeError) and not needs_flops:
                found = seen[key] = ModelSpec(non_embedding_params=0)
                return found
            key = (ref.span.file, ref.name, ref.span.line)
            if key not in failed:
                failed.add(key)
                if ref.overridden:  # the caret shows the declaration; the bad ref is the override's
                    message = f"model `{ref.name}`, overridden to `{ref.ref}`: {e.message}"
                    hint = f"`{ref.ref}` comes from an override of `{ref.name}` (e.g. --model), not from this line" + (
                        f"; {e.hint}" if e.hint else "")
                else:
                    message = e.message if ref.name == ref.ref else f"model `{ref.name}`: {e.message}"
                    hint = e.hint
                diagnostics.append(Diagnostic(span=ref.span, message=message, hint=hint))
            return ModelSpec(non_embedding_params=0)

    return spec_of




def unit_value(cost: Cost, unit: Unit) -> float:
    return cost.tokens if unit is Unit.tokens else cost.get(unit)


def cost_row(cost: Cost) -> dict[str, float]:
    """The static units of a cost, as the report shows them."""
    return {
        "calls": float(cost.calls), "prompt_tokens": float(cost.prompt_tokens), "gen_tokens": float(cost.gen_tokens),
        "tokens": float(cost.prompt_tokens + cost.gen_tokens), "flops": float(cost.flops),
    }

