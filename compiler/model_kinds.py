"""Does a model fit where the program uses it? Read from its config.json and ttcl_meta.json.

`sample`, `revise` and `judge` generate, so they need a causal LM; `reward(...)` needs a
SequenceClassification model, `prm(...)` a TokenClassification one or a generative step checker
(a causal LM whose card says `"verifier": "generative"`), and `likelihood(...)` a causal LM. A
model loaded with the wrong head would run: transformers fills a missing head with random
numbers, or drops a trained one. The DAG builder refuses the mismatch when the program is
compiled (exit 2, at the use), so `ttcl check` catches it; the runtime keeps its own checks, on
the weights themselves, for what the files do not say. A verifier on a server is refused where
the ref tells (a PRM or likelihood anywhere, a judge on an engine without chosen-token
log-probabilities); a model whose config names no known head is left to the run.
"""

from __future__ import annotations

from ttcl.compiler.dag import ModelRef
from ttcl.compiler.endpoints import is_endpoint, parse_endpoint
from ttcl.compiler.models import model_head, verifier_role

Problem = tuple[str, str]  # (message, hint)

_HEADS = {"lm": "causal language model", "sequence": "reward model (a SequenceClassification head)",
          "token": "PRM (a TokenClassification head)"}
_CTOR_HEAD = {"reward": "sequence", "prm": "token", "likelihood": "lm"}
_NEEDS = {"reward": "a reward model", "prm": "a PRM", "likelihood": "a causal language model"}


def _overridden(model: ModelRef) -> str:
    return f" (bound by an override of `{model.name}`, e.g. --model)" if model.overridden else ""


def generator_problem(op: str, model: ModelRef) -> Problem | None:
    """Why `op` (`sample`, `revise`, `judge`) cannot generate with `model`, or None."""
    head, arch = model_head(model.ref, model.base_dir)
    if head not in ("sequence", "token"):
        return None
    ctor = "reward" if head == "sequence" else "prm"
    return (f"`{op}` needs a causal language model, and model `{model.name}` (`{model.ref}`) is a "
            f"{_HEADS[head]}: its config.json says {arch}{_overridden(model)}",
            f'a {_HEADS[head]} scores candidates: `verifier NAME = {ctor}("{model.ref}")`, used through `verify`')


def endpoint_problem(name: str, kind: str, model: ModelRef) -> Problem | None:
    """Why verifier `name = kind(model)` cannot score on the server `model` names, where the ref tells: a run
    refuses these at start, and `ttcl check` passed them (QA pass)."""
    if kind in ("prm", "likelihood"):
        return (f"verifier `{name}`: a {kind} verifier on a server is not supported (reward models on vLLM's "
                f"/classify and judges on vLLM's logprobs are){_overridden(model)}",
                f"bind `{model.name}` to a local model (a directory or ttcl:NAME)")
    engine = parse_endpoint(model.ref).engine
    if kind == "judge" and engine not in (None, "vllm"):
        return (f"verifier `{name}`: a judge reads next-token log-probabilities, which {engine} does not return "
                f"for chosen tokens (only vLLM's `logprob_token_ids` is supported){_overridden(model)}",
                "serve the judge on vLLM, or bind it to a local model")
    return None


def verifier_problem(name: str, kind: str, model: ModelRef) -> Problem | None:
    """Why verifier `name = kind(model)` cannot score, or None (`check` reads no model)."""
    if is_endpoint(model.ref):
        return endpoint_problem(name, kind, model)
    if kind == "judge":  # a judge reads a causal LM's next-token probabilities
        return generator_problem("judge", model)
    if kind not in _CTOR_HEAD:
        return None
    role = verifier_role(model.ref, model.base_dir)
    if kind != "likelihood" and role == "likelihood":
        return (f"verifier `{name}`: `{model.ref}` is read by its likelihood, not as {_NEEDS[kind]} "
                f'(its ttcl_meta.json says "verifier": "likelihood"){_overridden(model)}',
                f'verifier {name} = likelihood("{model.ref}")')
    if kind != "prm" and role == "generative":  # QA pass: the hint said likelihood(...), which ran without a word
        return (f"verifier `{name}`: `{model.ref}` is a generative step checker, read as a PRM, not as "
                f'{_NEEDS[kind]} (its ttcl_meta.json says "verifier": "generative"){_overridden(model)}',
                f'verifier {name} = prm("{model.ref}")')
    head, arch = model_head(model.ref, model.base_dir)
    if head is None or head == _CTOR_HEAD[kind] or (kind == "prm" and head == "lm" and role == "generative"):
        return None
    fits = next(c for c, h in _CTOR_HEAD.items() if h == head)
    hint = f'verifier {name} = {fits}("{model.ref}")'
    if head == "lm":
        hint += f', or a policy: model NAME = "{model.ref}"'
    return (f"verifier `{name}`: `{kind}(...)` needs {_NEEDS[kind]}, and `{model.ref}` is a {_HEADS[head]}: "
            f"its config.json says {arch}{_overridden(model)}", hint)
