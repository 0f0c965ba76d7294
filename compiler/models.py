"""Model specs for the cost model: what `ttcl check` needs to know about each model.

The static bound counts FLOPs with `costmodel.forward_flops`, which needs a
model's non-embedding parameter count N, its depth and width. They come,
in this order, from:

1. options declared in the program: `model big = "..." (params = 8G,
   n_layer = 32, d_model = 4096, n_ctx = 8192)`. Declared options win, so a
   program can be checked against a model that is not on this machine;
2. a `ttcl:NAME` ref, resolved to a directory by `ttcl.zoo.registry`;
3. a local Hugging Face directory: its `ttcl_meta.json`
   (`non_embedding_params`) if present, else its `config.json`, from which N
   is computed exactly for the architectures compiler/model_sizes.py knows
   (GPT-2, Llama, Mistral, Qwen2), read by the keys of its `model_type`.

No torch import here: `ttcl check` must start fast. Specs are cached per
(ref, options) because a program names the same model many times and `auto`
solving rebuilds the bound repeatedly.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ttcl.compiler.chat import ChatTemplateError, chat_overhead
from ttcl.compiler.costmodel import ModelSpec
from ttcl.compiler.endpoints import EndpointError, is_endpoint, parse_endpoint
from ttcl.compiler.model_sizes import ConfigSizeError, architecture
from ttcl.compiler.tokenizer_facts import tokenizer_problem
from ttcl.errors import TtclSemanticError
from ttcl.safeio import (
    JSON_LIMIT,
    LOADABLE_SAFETENSORS,
    UnsafeRead,
    is_dir,
    is_file,
    read_bounded,
    unsafe_model_files,
)

# Option names a model declaration may carry, and the ModelSpec field each sets.
OPTION_FIELDS: dict[str, str] = {
    "params": "non_embedding_params",
    "n_layer": "n_layer",
    "d_model": "d_model",
    "n_ctx": "n_ctx",
}


class ModelSpecError(TtclSemanticError):
    """A model's cost spec cannot be found; the caller turns it into a diagnostic at the declaration."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class UnknownSizeError(ModelSpecError):
    """An endpoint whose model is not on this machine and declares no size: FLOPs cannot be counted."""


_PARAMS_HINT = "add `(params = ...)` to the model declaration, e.g. `(params = 7G, n_layer = 32, d_model = 4096)`"


def model_spec(ref: str, options: dict[str, float] | None = None, *, base_dir: Path | None = None) -> ModelSpec:
    """The ModelSpec of a model ref; declared options override whatever is read from disk."""
    opts = tuple(sorted((options or {}).items()))
    return _model_spec_cached(ref, opts, str(base_dir) if base_dir is not None else None)


@lru_cache(maxsize=256)
def _model_spec_cached(ref: str, opts: tuple[tuple[str, float], ...], base_dir: str | None) -> ModelSpec:
    options = dict(opts)
    _refuse_unsafe(ref, base_dir)
    if options.pop("chat", 0.0):
        _check_chat(ref, base_dir)
    unknown = sorted(set(options) - set(OPTION_FIELDS))
    if unknown:
        raise ModelSpecError(
            f"unknown model option `{unknown[0]}`",
            f"model options are {', '.join(OPTION_FIELDS)}",
        )
    declared = {OPTION_FIELDS[k]: _as_int(k, v) for k, v in options.items()}
    if declared.get("n_ctx") == 0:
        raise ModelSpecError("model option `n_ctx` must be at least 1")
    if "non_embedding_params" in declared:
        _check_against_disk(ref, base_dir, options, declared)
        return ModelSpec(**declared)
    on_disk = _spec_from_ref(ref, base_dir)
    _contradictions(ref, options, declared, on_disk)
    return on_disk.model_copy(update=declared) if declared else on_disk


def _refuse_unsafe(ref: str, base_dir: str | None) -> None:
    """A local model the run would refuse to load (pickled weights, custom code, no tokenizer) is refused here too, so
    that `ttcl check` never says a program fits that `ttcl run` cannot start. An endpoint's model is
    the server's to load: its local twin is read for sizes only."""
    if is_endpoint(ref):
        return
    path = model_dir_of(ref, base_dir)
    why = None if path is None else unsafe_model_files(path, need_weights=False)
    if why is None and path is not None and any(is_file(path / name) for name in LOADABLE_SAFETENSORS):
        why = tokenizer_problem(path)  # a folder the run would load (a config alone still checks, for its sizes)
    if why is not None:
        raise ModelSpecError(f"model `{ref}`: {why}")


def _check_chat(ref: str, base_dir: str | None) -> None:
    """`chat = true` needs a local model whose tokenizer has a chat template the bound can measure."""
    if is_endpoint(ref):
        raise ModelSpecError(f"`chat = true` applies a local tokenizer's chat template, but `{ref}` is an endpoint",
                             "drop `chat = true` (a server applies its own template to chat requests)")
    path = model_dir_of(ref, base_dir)
    if path is None:
        return  # not on this machine: its size error (if any) is reported instead; the run checks the template
    try:
        chat_overhead(path)
    except ChatTemplateError as e:
        raise ModelSpecError(f"model `{ref}` is declared with `chat = true`, but {e}", e.hint) from None


def _check_against_disk(ref: str, base_dir: str | None, options: dict[str, float], declared: dict[str, int]) -> None:
    """Declared options for a model that IS on disk must agree with its config (a typo would go unseen)."""
    if model_dir_of(ref, base_dir) is None:
        return  # not on this machine: the declaration is all there is
    try:
        on_disk = _spec_from_ref(ref, base_dir)
    except ModelSpecError:
        return  # a config ttcl cannot count: the declaration supplies what is missing
    _contradictions(ref, options, declared, on_disk)


def _contradictions(ref: str, options: dict[str, float], declared: dict[str, int], on_disk: ModelSpec) -> None:
    for option, field in OPTION_FIELDS.items():
        if option not in options:
            continue
        have = getattr(on_disk, field)
        if have not in (None, 0) and have != declared[field]:
            raise ModelSpecError(
                f"model option `{option} = {options[option]:g}` contradicts `{ref}` on disk, whose config gives {have:,}",
                f"drop `{option}` (the config on disk is read), or fix it to {have}",
            )


def model_dir_of(ref: str, base_dir: str | Path | None = None) -> Path | None:
    """The local directory a model ref names (a `ttcl:` name or a path), or None (an endpoint, or not on disk)."""
    try:
        if is_endpoint(ref):
            local = local_of(ref, None if base_dir is None else str(base_dir))
            return None if local is None else model_dir_of(local, base_dir)
        path = _resolve_zoo(ref) if ref.startswith("ttcl:") else Path(ref).expanduser()
    except (ModelSpecError, EndpointError, OSError, ValueError):
        return None
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        return path if path.is_dir() else None
    except (OSError, ValueError):
        return None


def clear_cache() -> None:
    """Forget cached specs (tests that write model directories call this)."""
    _model_spec_cached.cache_clear()
    _card_json.cache_clear()


def _as_int(name: str, value: float) -> int:
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ModelSpecError(f"model option `{name}` must be a non-negative whole number, got {value:g}")
    return int(value)


def _spec_from_ref(ref: str, base_dir: str | None) -> ModelSpec:
    if is_endpoint(ref):
        return _spec_from_endpoint(ref, base_dir)
    if ref.startswith("ttcl:"):
        return spec_from_dir(_resolve_zoo(ref))
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if is_dir(path):
        return spec_from_dir(path)
    if not _exists(path):
        raise ModelSpecError(
            f"model `{ref}` is not a local model directory (no such directory"
            f"{'' if str(path) == ref else f': {path}'}), so its size is unknown",
            "check the path (a `--model` path is read from the current directory, one in the program from the "
            "program's), or name a bundled model as `ttcl:NAME` (`ttcl models`); for a model that is not on this "
            f"machine, {_PARAMS_HINT}")
    raise ModelSpecError(f"model `{ref}` is not a local model directory, so its size is unknown", _PARAMS_HINT)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def from_here(ref: str) -> str:
    """A model override's ref (`--model NAME=PATH`, `ttcl.run(models=...)`): a relative local path is read from
    the current directory, as at a shell prompt, not from the program's; `ttcl:NAME`, URLs and absolute
    paths are kept as given."""
    if ref.startswith("ttcl:") or is_endpoint(ref):
        return ref
    path = Path(ref).expanduser()
    try:
        return ref if path.is_absolute() else str(Path.cwd() / path)
    except OSError:  # the current directory was removed under us: nothing to read it from
        return ref


def local_of(ref: str, base_dir: str | None = None) -> str | None:
    """The local twin of an endpoint ref (its `local=` ref, else its served model id when that is
    `ttcl:NAME` or an existing directory), or None."""
    ep = parse_endpoint(ref)
    for cand in (ep.local, ep.model):
        if cand is None:
            continue
        if cand.startswith("ttcl:"):
            return cand
        path = Path(cand).expanduser()  # a served id is as the server's own command line named it (cwd)
        if not is_dir(path) and not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if is_dir(path):
            return str(path.resolve())
        if cand == ep.local:
            raise ModelSpecError(f"endpoint `{ref}`: `local={cand}` is not a local model directory")
    return None


def _spec_from_endpoint(ref: str, base_dir: str | None) -> ModelSpec:
    try:
        local = local_of(ref, base_dir)
    except EndpointError as e:
        raise ModelSpecError(str(e)) from e
    if local is None:
        served = parse_endpoint(ref).model
        what = (f"`{served}`, which is not a model directory on this machine (a server names a model as its own "
                "command line did: a relative path is relative to the server's working directory)" if served
                else "a model that is not on this machine")
        raise UnknownSizeError(
            f"endpoint `{ref}` serves {what}, so its FLOPs cannot be counted",
            "add `local=DIR` (the served model's directory here) to the URL, or `(params = ..., n_layer = ..., "
            "d_model = ...)` to the model declaration",
        )
    return _spec_from_ref(local, base_dir)


def _resolve_zoo(ref: str) -> Path:
    try:
        from ttcl.zoo.registry import UnknownModelError, resolve_model
    except ImportError as e:
        raise ModelSpecError(
            f"cannot resolve `{ref}`: the model zoo (ttcl.zoo.registry) is not available",
            _PARAMS_HINT,
        ) from e
    try:
        return Path(resolve_model(ref))
    except UnknownModelError as e:  # a typo: declaring a size would not make it a model
        raise ModelSpecError(str(e), "`ttcl models` lists them") from e
    except Exception as e:  # the registry's other errors: missing files
        raise ModelSpecError(f"cannot resolve `{ref}`: {e}", _PARAMS_HINT) from e


def spec_from_dir(path: Path) -> ModelSpec:
    """Read a model directory: ttcl_meta.json's count if present, else config.json; its size keys are always
    checked against its model_type (compiler/model_sizes.py), since that is the model transformers builds."""
    try:
        return _spec_from_dir(path)
    except ConfigSizeError as e:
        hint = ("add `non_embedding_params` to its ttcl_meta.json, or " + _PARAMS_HINT if e.uncountable else
                "make model_type and the size keys of config.json describe the model its weights hold")
        raise ModelSpecError(str(e), hint) from None
    except (KeyError, TypeError, ValueError) as e:  # a config with missing or non-numeric sizes
        raise ModelSpecError(f"cannot read the model size from `{path}`: bad or missing config field {e}", _PARAMS_HINT) from e


def _spec_from_dir(path: Path) -> ModelSpec:
    config = _read_json(path / "config.json")
    meta_path = path / "ttcl_meta.json"
    meta = _read_json(meta_path) if is_file(meta_path) else {}
    if config is None and not meta:
        raise ModelSpecError(f"model directory `{path}` has no config.json", _PARAMS_HINT)
    config = config or {}
    arch = architecture(config, path / "config.json")
    n_layer = int(config.get(arch.layers, meta.get("n_layer", 0)) or 0)
    d_model = int(config.get(arch.width, meta.get("d_model", 0)) or 0)
    n_ctx = config.get(arch.positions)
    declared = meta.get("non_embedding_params", meta.get("params_non_embedding"))
    n_params = int(declared) if isinstance(declared, int) else arch.count(config)
    return ModelSpec(non_embedding_params=n_params, n_layer=n_layer, d_model=d_model, n_ctx=int(n_ctx) if n_ctx else None)


def revise_template(ref: str, base_dir: Path | None = None) -> str | None:
    """The model card's default rewrite prompt (`ttcl_meta.json` field `revise_template`), if the model has one.

    Fields `{question}` (the item's question) and `{attempt}` (the candidate's
    text). None when the model is not on disk or has no template: `revise`
    then uses the compiler's generic default.
    """
    template = _card_json(ref, base_dir, "ttcl_meta.json").get("revise_template")
    return template if isinstance(template, str) else None


def verifier_role(ref: str, base_dir: Path | None = None) -> str | None:
    """How the model card says the model is read as a verifier (`ttcl_meta.json` field `verifier`:
    "likelihood", "generative"), lower-cased; None when the model is not on disk or does not say."""
    role = _card_json(ref, base_dir, "ttcl_meta.json").get("verifier")
    return role.lower() if isinstance(role, str) else None


def model_head(ref: str, base_dir: Path | None = None) -> tuple[str | None, str]:
    """What the model's config.json `architectures` says its head is, and that architecture's name:
    "lm" (a causal LM: `...ForCausalLM`, `...LMHeadModel`), "sequence" (a reward model,
    `...ForSequenceClassification`), "token" (a PRM, `...ForTokenClassification`), or None when the
    model is not on disk or names none of these (the run then decides)."""
    config = _card_json(ref, base_dir, "config.json")
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) else ""
    for suffixes, head in ((("ForCausalLM", "LMHeadModel"), "lm"), (("ForSequenceClassification",), "sequence"),
                           (("ForTokenClassification",), "token")):
        if arch.endswith(suffixes):
            return head, arch
    return None, arch


@lru_cache(maxsize=128)
def _card_json(ref: str, base_dir: Path | None, name: str) -> dict[str, Any]:
    """The model's `name` (ttcl_meta.json, config.json), or {} when the model is not on disk or has none."""
    if is_endpoint(ref):
        return {}
    try:
        if ref.startswith("ttcl:"):
            path = _resolve_zoo(ref)
        else:
            path = Path(ref).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
        return _read_json(path / name) or {}
    except ModelSpecError:
        return {}


def _read_json(path: Path) -> dict[str, Any] | None:
    if not is_file(path):
        return None
    try:
        data = json.loads(read_bounded(path, JSON_LIMIT, what="model file").decode("utf-8"))
    except UnsafeRead as e:
        raise ModelSpecError(f"cannot read `{path}`: it {e.reason}", _PARAMS_HINT) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelSpecError(f"cannot read `{path}`: {type(e).__name__}: {str(e)[:200]}", _PARAMS_HINT) from None
    if not isinstance(data, dict):
        raise ModelSpecError(f"`{path}` is not a JSON object", _PARAMS_HINT)
    return data


_META_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class MetaTemplateError(ValueError):
    """A model-card template (`ttcl_meta.json`) with a field that is not one of the allowed names."""


def meta_template_parts(template: str, allowed: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """A `ttcl_meta.json` template as (literal text, None) and ("", field) parts.

    Only `{name}` for a name in `allowed`, and `{{` / `}}` for braces, mean anything: model
    metadata is data, so nothing like Python's `str.format` (attribute access, indexing,
    format specs) is ever applied to it.
    """
    parts: list[tuple[str, str | None]] = []
    at = 0
    for m in _META_FIELD.finditer(template):
        if m.start() > at:
            parts.append((template[at:m.start()], None))
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append((tok[0], None))
        elif m.group(1) in allowed:
            parts.append(("", m.group(1)))
        else:
            end = template.find("}", m.start())
            shown = template[m.start():end + 1] if 0 <= end - m.start() < 60 else template[m.start():m.start() + 20] + "..."
            raise MetaTemplateError(f"template field `{shown}` is not one of {', '.join('{' + a + '}' for a in allowed)}")
        at = m.end()
    if at < len(template):
        parts.append((template[at:], None))
    return parts


def fill_meta_template(parts: list[tuple[str, str | None]], values: dict[str, str]) -> str:
    """The text of parsed template `parts` with each field replaced by its value (values are never re-read)."""
    return "".join(text if name is None else values[name] for text, name in parts)
