"""Talking to an OpenAI-compatible server outside a run: its JSON endpoints, the API key (never shown), and
which model a ref names (`pin_served_model`, for the refs a user gives `ttcl check`/`run`/`serve` and `ttcl.run`:
a URL without /v1, an id the server does not serve and a `local=` twin that is another model are said as such).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttcl.compiler.endpoints import API_KEY_VARS, parse_endpoint
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import resolve_ref
from ttcl.runtime.backends.profiles import detect_engine, profile


class Unreachable(TtclRuntimeError):
    """Nothing answered at the URL (refused, timed out, no such host)."""


def api_key() -> str:
    for var in API_KEY_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return "EMPTY"


def scrub(text: str) -> str:
    """An error text with the API key, if it ever appears, blanked."""
    key = api_key()
    return text.replace(key, "***") if key != "EMPTY" and len(key) >= 4 else text


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """GET (or POST `body`) and parse JSON; (status, None) when the answer is not JSON."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {api_key()}",
                                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - an http(s) URL by construction
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise Unreachable(f"cannot reach {url}: {scrub(str(why))}; is the server running?") from None
    try:
        return status, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, None


def get_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    return http_json(url, None, timeout)


CONTROL_TIMEOUT_S = 10.0  # a question about the server (its models, version, a token count), not a completion
CONTROL_FLOOR_S = 1.0  # but never less: a `timeout=` far under a second is for completions


def control_timeout(ep: Any) -> float:
    """How long such a question waits: 10 s, or the ref's own `timeout=` where that is shorter, down to 1 s (QA
    pass: a server that accepted connections and never answered took 25 s to refuse a run with `timeout=3`, two
    10 s waits)."""
    return min(CONTROL_TIMEOUT_S, max(CONTROL_FLOOR_S, float(ep.timeout)))


def engine_facts(root_url: str, engine: str, version_json: dict[str, Any] | None,
                 timeout: float = CONTROL_TIMEOUT_S) -> tuple[str | None, bool]:
    """The server's version, and whether a request's `seed` fixes its samples there. vLLM answers `/version`
    and honours seeds. SGLang (0.5.23, measured) has no `/version`: its `/server_info` holds the version and
    `enable_deterministic_inference`, without which it ignores a request's seed. `transformers serve` has one
    global seed; another engine's seeds are assumed to hold."""
    version = str(version_json["version"]) if version_json and "version" in version_json else None
    if engine != "sglang":
        return version, profile(engine).seeds_per_request
    for path in ("/server_info", "/get_server_info"):  # the second: its older name
        status, info = get_json(root_url + path, timeout)
        if status == 200 and isinstance(info, dict):
            return version or (str(info["version"]) if info.get("version") else None), \
                info.get("enable_deterministic_inference") is True
    return version, False


def unseeded(backends: dict[str, Any]) -> dict[str, str]:
    """Per server whose samples a run's `--seed` does not fix (`engine_facts`), why, as a note says it."""
    how = {"sglang": "it was started without --enable-deterministic-inference",
           "transformers-serve": "it has one global seed"}
    return {be.ep.base_url: f"{be.ep.base_url} ({be.engine}) ignores a request's seed, since "
            f"{how.get(be.engine, 'it says so')}: --seed does not fix this run's samples, and a rerun draws others"
            for be in backends.values() if getattr(be, "seeded", True) is False}


def served_model(ep: Any) -> tuple[dict[str, Any], str]:
    """The server's model list and the id a request names: `?model=ID` when it is served, else its only model.
    Every way it can be wrong is said as such (a URL without /v1, an id it does not serve)."""
    status, models = get_json(ep.base_url + "/models", control_timeout(ep))
    if status != 200 or not isinstance(models, dict) or not isinstance(models.get("data"), list):
        raise TtclRuntimeError(
            f"endpoint {ep.base_url}: GET /models answered {status} without a model list; "
            f"is this an OpenAI-compatible server (the URL usually ends in /v1)?"
        )
    ids = [str(m.get("id")) for m in models["data"] if isinstance(m, dict) and m.get("id")]
    if ep.model is not None:
        if ep.model not in ids:
            raise TtclRuntimeError(f"endpoint {ep.base_url} does not serve model {ep.model!r} "
                                   f"(it serves {', '.join(ids) or 'nothing'})")
        return models, ep.model
    if len(ids) == 1:
        return models, ids[0]
    raise TtclRuntimeError(f"endpoint {ep.base_url} serves {len(ids)} models "
                           f"({', '.join(ids) or 'none'}); name one with ?model=ID")


def pin_served_model(ref: str, on_unreached: Callable[[str], None] | None = None) -> str:
    """`URL` -> `URL?model=ID&engine=ENGINE` for the server's only model ID: where ID is a model on this machine
    (a directory or `ttcl:NAME`) its config gives FLOPs and its tokenizer counts tokens.

    For refs the user gave on the command line: they are trusted, so asking the server is fine."""
    from urllib.parse import quote

    from ttcl.compiler.models import ModelSpecError, local_of

    ep = parse_endpoint(ref)
    try:
        models, model_id = served_model(ep)  # a wrong path or id is said now, not blamed on FLOPs (QA pass)
    except Unreachable as e:
        if ep.model is not None or ep.local is not None:
            if on_unreached is not None:  # QA pass: check said "fits" with no word that it had asked no server
                on_unreached(f"note: {ep.base_url} did not answer ({e}): the check bounds `{ref}` by what the URL "
                             "names, without comparing the served model's context and config with it; `ttcl run` "
                             "asks the server at start")
            return ref  # the ref says what it serves: `ttcl check` bounds it with the server down; a run says why
        raise
    if ep.local is not None:  # a twin that is provably not the served model would count another model's FLOPs
        try:
            if local_of(ref) is None:
                return ref
        except ModelSpecError:
            return ref  # the check reports a `local=` that is not a model directory
        refuse_wrong_twin(ep, ep.local, models, model_id)
        _refuse_a_shorter_context_of(ep, models, model_id, ref)
        return ref
    if ep.model is not None:
        return ref
    pinned = ref + ("&" if "?" in ref else "?") + "model=" + quote(model_id, safe="/:")
    engine = detect_engine(models, None)
    if ep.engine is None and engine != "generic":
        pinned += "&engine=" + engine
    _refuse_a_shorter_context_of(ep, models, model_id, pinned)
    return pinned  # where the id is no model here, the check says which id (QA pass: a relative path was unsaid)


def _refuse_a_shorter_context_of(ep: Any, models: dict[str, Any], model_id: str, ref: str) -> None:
    """`ttcl check` refuses a server with a shorter context than its twin's, as `ttcl run` does (QA pass: check
    said "fits" against vLLM's --max-model-len 64, and the run refused it)."""
    from ttcl.compiler.models import ModelSpecError, model_spec

    try:
        n_ctx = model_spec(ref).n_ctx
    except (ModelSpecError, TtclRuntimeError):
        return  # no twin on this machine: nothing to compare with (the check says what it can)
    refuse_a_shorter_context(ep, models, model_id, n_ctx)


def refuse_a_shorter_context(ep: Any, models: dict[str, Any], model_id: str, n_ctx: int | None) -> None:
    """A server whose context (vLLM's `max_model_len`) is shorter than the twin's, which bounds every prompt
    and `max_tokens`, would refuse requests item by item (QA pass: every item failed with a 400)."""
    served = served_entry(models, model_id).get("max_model_len")
    if isinstance(served, int) and n_ctx is not None and served < n_ctx:
        raise TtclRuntimeError(f"endpoint {ep.base_url} serves {model_id} with a context of {served} tokens, and the "
                               f"model's is {n_ctx}, which ttcl bounds prompts and max_tokens by: start the server "
                               f"with its full context (vLLM: --max-model-len {n_ctx})")


# what two copies of one model may differ in: none of it changes FLOPs, context or tokens
_NOT_THE_MODEL = frozenset({"_name_or_path", "transformers_version", "torch_dtype", "dtype"})


_SIZE_KEYS = frozenset({"model_type", "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "vocab_size",
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                        "max_position_embeddings"})


def _config(ref: str) -> dict[str, Any] | None:
    """A model directory's config.json (`ttcl:NAME` resolved), None where `ref` is not one on this machine."""
    from ttcl.errors import TtclError

    try:
        cfg = json.loads((Path(resolve_ref(ref)) / "config.json").read_text(encoding="utf-8"))
    except (TtclError, OSError, ValueError):
        return None
    return {k: v for k, v in cfg.items() if k not in _NOT_THE_MODEL} if isinstance(cfg, dict) else None


def served_entry(models: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The model list's entry for `model_id` ({} if none)."""
    return next((m for m in models.get("data", []) if isinstance(m, dict) and m.get("id") == model_id), {})


def served_paths(models: dict[str, Any], model_id: str) -> list[str]:
    """Where the server says its model came from: the id, and vLLM's and SGLang's `root` (the path it loaded,
    which `--served-model-name` hides from the id)."""
    entry = served_entry(models, model_id)
    return [p for p in dict.fromkeys([model_id, entry.get("root")]) if isinstance(p, str) and p]


def refuse_wrong_twin(ep: Any, twin: str, models: dict[str, Any], model_id: str) -> None:
    """A `local=` twin whose config differs from the served model's, where a path the server names is a model
    directory on this machine, would count another model's FLOPs: refused (QA pass: with `--served-model-name`
    the id named no directory, so `local=ttcl:arith-s` for a served arith-m was taken, and an item spent 3.8x
    the FLOPs it was charged, over its budget)."""
    mine = _config(twin)
    if mine is None:
        return
    for path in served_paths(models, model_id):
        theirs = _config(path)
        if theirs is None:
            continue
        if theirs != mine:
            key = min((k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)),
                      key=lambda k: (k not in _SIZE_KEYS, k))  # a size first: what the FLOPs differ by
            raise TtclRuntimeError(
                f"endpoint {ep.base_url} serves {model_id} ({path}), and `local={twin}` is another model "
                f"({key} {theirs.get(key)!r} there, {mine.get(key)!r} in the twin): its FLOPs and tokens would be "
                "counted for the wrong one; drop `local=` or name the served model")
        return
