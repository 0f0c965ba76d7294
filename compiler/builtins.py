"""The signature table of every built-in: the single source of truth.

The checks validate calls against it, the DAG builder reads argument
defaults and output-size rules from it, and the runtime reads defaults from
it, so a default (say `max_tokens = 256` for `sample`) is written once, here.

A signature lists its parameters in positional order; every parameter can
also be passed by keyword. `static=True` marks the arguments the budget
bound depends on (`n`, `max_tokens`, `k`, `rounds`): they must be literals,
params or arithmetic on those, so the bound is known before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Ty(StrEnum):
    """The type of a value in a strategy body.

    `text candidates number answer bool` are the value types users write;
    the others name what a non-value name refers to. `error` is the type of
    an expression that already produced a diagnostic, so one mistake is not
    reported again by every expression that uses it.
    """

    text = "text"
    candidates = "candidates"
    number = "number"
    answer = "answer"
    bool = "bool"
    text_list = "list of text"
    model = "model"
    verifier = "verifier"
    strategy = "strategy"
    module = "module"
    builtin = "built-in"
    error = "error"


VALUE_TYPES: frozenset[Ty] = frozenset({Ty.text, Ty.candidates, Ty.number, Ty.answer, Ty.bool})


class ArgKind(StrEnum):
    """What a built-in parameter accepts, beyond a plain value type."""

    value = "value"  # an expression of `ParamSpec.type`
    model = "model"  # the name of a `model` declaration
    verifier = "verifier"  # the name of a `verifier` declaration
    model_ref = "model_ref"  # a model reference string ("ttcl:arith-orm", a path) or a model name
    string_literal = "string_literal"  # a plain string literal, no template fields (`check("arith")`)
    choice = "choice"  # a string literal from `choices` (`agg = "min"`)
    weight = "weight"  # a bare name from `choices` (`weight = score`)
    stop = "stop"  # a string or a list of strings
    predicate = "predicate"  # a bool expression over `score`, `length`, `finished` (and the enclosing scope)
    template = "template"  # a text template whose fields may also name per-candidate values


class CountRule(StrEnum):
    """How many candidates a built-in returns, for the DAG builder's size bounds."""

    arg_n = "arg_n"  # exactly n (sample), at most n (balance)
    input_times_n = "input_times_n"  # count(cands) * n (extend)
    same = "same"  # count(cands) (verify, revise)
    arg_k = "arg_k"  # at most k (top)
    at_most_input = "at_most_input"  # at most count(cands) (filter)
    none = "none"  # not candidates


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a built-in."""

    name: str
    kind: ArgKind = ArgKind.value
    type: Ty | None = None  # for kind=value / template
    required: bool = False
    default: int | float | str | bool | None = None  # None: absent (stop, seed, prompt, feedback)
    static: bool = False  # must be a static int (literal, param or arithmetic on those)
    min_value: float | None = None  # inclusive lower bound, checked when the value is known
    min_exclusive: bool = False  # the lower bound itself is not allowed (top_p > 0)
    max_value: float | None = None  # inclusive upper bound
    choices: tuple[str, ...] = ()
    template_fields: tuple[str, ...] = ()  # extra names a template argument may use (`c`, `feedback`)
    doc: str = ""

    def describe(self) -> str:
        """How a diagnostic names what this parameter accepts."""
        match self.kind:
            case ArgKind.value:
                base = "a static int" if self.static else (f"{self.type.value}" if self.type else "a value")
                return base
            case ArgKind.model:
                return "a model name (declared with `model NAME = ...`)"
            case ArgKind.verifier:
                return "a verifier name (declared with `verifier NAME = ...`)"
            case ArgKind.model_ref:
                return 'a model reference string such as "ttcl:arith-orm", or a model name'
            case ArgKind.string_literal:
                return "a string literal"
            case ArgKind.choice | ArgKind.weight:
                return "one of " + ", ".join(f"`{c}`" if self.kind is ArgKind.weight else f'"{c}"' for c in self.choices)
            case ArgKind.stop:
                return "a string or a list of strings"
            case ArgKind.predicate:
                return "a bool expression over `score`, `length`, `finished` and the values in scope"
            case ArgKind.template:
                return "text (a string template)"
        return "a value"  # pragma: no cover


class _Params:
    """Parameter lookup shared by built-in and verifier signatures."""

    params: tuple[ParamSpec, ...]

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


@dataclass(frozen=True)
class BuiltinSig(_Params):
    """The signature of one built-in function."""

    name: str
    params: tuple[ParamSpec, ...]
    returns: Ty
    count: CountRule = CountRule.none
    doc: str = ""
    generates: bool = False  # runs a model (the DAG charges generation cost)
    scores: bool = False  # runs a verifier


    @property
    def max_positional(self) -> int:
        return len(self.params)

    def defaults(self) -> dict[str, int | float | str | bool | None]:
        """Every optional parameter with its default (None when absent)."""
        return {p.name: p.default for p in self.params if not p.required}


# Fields a template may read from a candidates value: `{c.text}`.
CANDIDATE_FIELDS: tuple[str, ...] = ("text", "prompt", "answer", "score")

# Names bound inside a `filter` predicate: `score` and `length` are numbers, `finished` a bool.
PREDICATE_NAMES: tuple[str, ...] = ("score", "length", "finished")

# `budget.left.<unit>`: what this item may still spend, a number (the tighter of its per-item budget and its
# share of the pool). `budget.pool.<unit>`: the pooled budget's balance (see docs/language.md, "Pooled budgets").
BUDGET_NAME = "budget"
BUDGET_LEFT = "left"
BUDGET_POOL = "pool"
BUDGET_LEFT_UNITS: tuple[str, ...] = ("calls", "prompt_tokens", "gen_tokens", "tokens", "flops", "seconds")

# Guards against programs whose unrolled DAG would not fit in memory.
MAX_REPEAT = 1024  # one `repeat` count
MAX_UNROLL = 65536  # product of nested `repeat` counts
MAX_N = 65536  # n, k: candidates produced by one call
MAX_TOKENS = 1_000_000

_N = ParamSpec("n", static=True, default=1, min_value=1, max_value=MAX_N, doc="samples per prompt")
_TEMP = ParamSpec("temperature", type=Ty.number, default=1.0, min_value=0.0, doc="sampling temperature")
_TOP_P = ParamSpec("top_p", type=Ty.number, default=1.0, min_value=0.0, min_exclusive=True, max_value=1.0, doc="nucleus mass")


def _max_tokens(default: int) -> ParamSpec:
    return ParamSpec("max_tokens", static=True, default=default, min_value=1, max_value=MAX_TOKENS, doc="generation cap per sequence")


def _cands(name: str = "cands") -> ParamSpec:
    return ParamSpec(name, type=Ty.candidates, required=True)


def _stat(name: str, doc: str) -> BuiltinSig:
    return BuiltinSig(name, (ParamSpec("c", type=Ty.candidates, required=True),), Ty.number, doc=doc)


BUILTINS: dict[str, BuiltinSig] = {
    sig.name: sig
    for sig in (
        BuiltinSig(
            "sample",
            (
                ParamSpec("model", kind=ArgKind.model, required=True),
                ParamSpec("prompt", type=Ty.text, required=True),
                _N,
                _max_tokens(256),
                _TEMP,
                _TOP_P,
                ParamSpec("stop", kind=ArgKind.stop),
                ParamSpec("seed", type=Ty.number, doc="per-call seed; the run seed when absent"),
            ),
            Ty.candidates,
            CountRule.arg_n,
            doc="draw n completions of the prompt (prefilled once, shared by the n samples)",
            generates=True,
        ),
        BuiltinSig(
            "extend",
            (
                ParamSpec("model", kind=ArgKind.model, required=True),
                _cands(),
                _N,
                _max_tokens(64),
                ParamSpec("stop", kind=ArgKind.stop, default="\n"),
                _TEMP,
                _TOP_P,
            ),
            Ty.candidates,
            CountRule.input_times_n,
            doc="continue each candidate by one step, n ways",
            generates=True,
        ),
        BuiltinSig(
            "verify",
            (ParamSpec("verifier", kind=ArgKind.verifier, required=True), _cands()),
            Ty.candidates,
            CountRule.same,
            doc="score every candidate (and every step, for a PRM)",
            scores=True,
        ),
        BuiltinSig(
            "revise",
            (
                ParamSpec("model", kind=ArgKind.model, required=True),
                _cands(),
                ParamSpec("prompt", kind=ArgKind.template, type=Ty.text, template_fields=("c", "feedback", "question")),
                ParamSpec("feedback", kind=ArgKind.verifier, doc="a verifier whose score (or a judge's verdict) the reviser sees as `{feedback}`"),
                ParamSpec("rounds", static=True, default=1, min_value=1, max_value=MAX_REPEAT),
                _max_tokens(256),
                ParamSpec("temperature", type=Ty.number, default=0.7, min_value=0.0),
            ),
            Ty.candidates,
            CountRule.same,
            doc="rewrite each candidate, conditioned on it and optional feedback, `rounds` times",
            generates=True,
        ),
        BuiltinSig(
            "vote",
            (_cands(), ParamSpec("weight", kind=ArgKind.weight, choices=("score",))),
            Ty.answer,
            doc="majority vote over extracted answers; `weight = score` sums scores per answer",
        ),
        BuiltinSig("best", (_cands(),), Ty.answer, doc="the answer of the highest-scored candidate"),
        BuiltinSig(
            "top",
            (_cands(), ParamSpec("k", static=True, required=True, min_value=1, max_value=MAX_N)),
            Ty.candidates,
            CountRule.arg_k,
            doc="the k highest-scored candidates",
        ),
        BuiltinSig(
            "filter",
            (_cands(), ParamSpec("pred", kind=ArgKind.predicate, required=True)),
            Ty.candidates,
            CountRule.at_most_input,
            doc="the candidates for which `pred` holds",
        ),
        _stat("agreement", "share of candidates that agree with the most common answer, in 0..1"),
        _stat("best_score", "the highest score"),
        _stat("mean_score", "the mean score"),
        _stat("count", "the number of candidates"),
        _stat("entropy", "entropy of the answer distribution, in nats"),
        BuiltinSig(
            "allot",
            (ParamSpec("need", type=Ty.number, required=True, doc="this item's claim on the rest of the pool, >= 0"),),
            Ty.number,
            doc="wait until every item has reached this point, then share the rest of the pooled budget in "
                "proportion to need; returns this item's share (0..1). Needs `budget pooled { split = need }`",
        ),
        BuiltinSig(
            "all_finished",
            (ParamSpec("c", type=Ty.candidates, required=True),),
            Ty.bool,
            doc="true when every candidate has ended (the model emitted end-of-sequence); true for none",
        ),
        BuiltinSig(
            "backup",
            (_cands(), ParamSpec("rollouts", type=Ty.candidates, required=True)),
            Ty.candidates,
            CountRule.same,
            doc="each candidate takes the highest score among the rollouts that continue it (its own score if none)",
        ),
        BuiltinSig(
            "balance",
            (
                _cands(),
                ParamSpec("n", static=True, required=True, min_value=1, max_value=MAX_N),
                ParamSpec("total", type=Ty.number, min_value=0.0, doc="how many to hand out at run time, at most n"),
                ParamSpec("temperature", type=Ty.number, default=1.0, min_value=0.0, doc="softmax temperature over scores"),
            ),
            Ty.candidates,
            CountRule.arg_n,
            doc="copies of the candidates, `total` (default n) in all, shared in proportion to softmax(score / temperature)",
        ),
    )
}


@dataclass(frozen=True)
class VerifierSig(_Params):
    """A verifier constructor (`check`, `reward`, `prm`, `likelihood`, `judge`) used in `verifier` declarations."""

    name: str
    params: tuple[ParamSpec, ...]
    step_scores: bool = False  # produces per-step scores (a PRM)
    runs_model: bool = True  # charged as a model pass
    doc: str = ""



PRM_AGGREGATES: tuple[str, ...] = ("last", "min", "prod")
CHECK_AGGREGATES: tuple[str, ...] = ("outcome", *PRM_AGGREGATES)

VERIFIERS: dict[str, VerifierSig] = {
    sig.name: sig
    for sig in (
        VerifierSig(
            "check",
            (
                ParamSpec("name", kind=ArgKind.string_literal, required=True),
                ParamSpec("agg", kind=ArgKind.choice, default="outcome", choices=CHECK_AGGREGATES),
            ),
            step_scores=True,
            runs_model=False,
            doc="a registered Python checker (entry-point group `ttcl.verifiers`); score: the exact outcome, "
            "or with agg = last | min | prod its exact step scores aggregated (an oracle process scorer "
            "that also scores partial solutions)",
        ),
        VerifierSig(
            "reward",
            (ParamSpec("model", kind=ArgKind.model_ref, required=True),),
            doc="an outcome reward model (sequence classification)",
        ),
        VerifierSig(
            "prm",
            (
                ParamSpec("model", kind=ArgKind.model_ref, required=True),
                ParamSpec("agg", kind=ArgKind.choice, default="last", choices=PRM_AGGREGATES),
            ),
            step_scores=True,
            doc="a process reward model: one score per step, aggregated by last | min | prod",
        ),
        VerifierSig(
            "likelihood",
            (ParamSpec("model", kind=ArgKind.model_ref, required=True),),
            step_scores=True,
            doc="any causal LM: the probability it gives the candidate's lines (cumulative per step; "
            "the score is the whole text's probability)",
        ),
        VerifierSig(
            "judge",
            (
                ParamSpec("model", kind=ArgKind.model, required=True),
                ParamSpec("rubric", kind=ArgKind.template, type=Ty.text, required=True, template_fields=("c", "question")),
            ),
            doc="a prompted model; the score is P(yes) after the rubric",
        ),
    )
}

# Model declaration options (`model big = "..." (params = 8G, n_layer = 32)`): name -> must be a whole number.
MODEL_OPTIONS: dict[str, str] = {
    "params": "non-embedding parameter count",
    "n_layer": "number of layers",
    "d_model": "hidden size",
    "n_ctx": "context length",
    "chat": "apply the tokenizer's chat template to prompts (`true` or `false`)",
}
BOOL_MODEL_OPTIONS: tuple[str, ...] = ("chat",)

# Named answer formats for `extract`; anything else must be a regex with exactly one group.
EXTRACT_FORMATS: tuple[str, ...] = ("####", "boxed", "last_number")


def all_builtin_names() -> tuple[str, ...]:
    """Every name a strategy body may call without declaring it."""
    return tuple(BUILTINS)


def _param_text(p: ParamSpec) -> str:
    if p.required:
        return p.name
    if p.default is None:
        return f"{p.name} = none"
    if isinstance(p.default, str):
        return f"{p.name} = {p.default!r}".replace("'", '"')
    return f"{p.name} = {p.default}"


def signature_text(sig: BuiltinSig | VerifierSig) -> str:
    """`sample(model, prompt, n = 1, ...)`: how diagnostics show what a call accepts."""
    return f"{sig.name}(" + ", ".join(_param_text(p) for p in sig.params) + ")"
