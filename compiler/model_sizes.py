"""A model's size from its config.json, read by the keys of the architecture its `model_type` names.

transformers builds the model that `model_type` names, and a size key the
config lacks takes that architecture's default: a `llama` config without
`hidden_size` builds a Llama 4096 wide and 32 layers deep (6.7B parameters).
So the cost model reads the keys of that architecture only, and refuses a
config whose size keys for it are missing or do not fit together, naming the
file and the keys (QA pass: a GPT-2 config relabelled `llama` checked with
GPT-2's numbers, and the run built a default-size Llama and was OOM-killed).

A config with no `model_type` (a size description written for `ttcl check`)
is read by the keys it has: GPT-2's, else Llama's. A `model_type` ttcl
cannot count is an error unless ttcl_meta.json gives the count.
No torch import here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttcl.errors import TtclSemanticError


class ConfigSizeError(TtclSemanticError):
    """A config.json whose sizes cannot be read; compiler/models.py reports it at the model's declaration."""

    def __init__(self, message: str, *, uncountable: bool = False):
        super().__init__(message)
        self.uncountable = uncountable  # a model_type ttcl has no count for (ttcl_meta.json may give one)


@dataclass(frozen=True)
class Arch:
    """Config key names, size rules and the exact non-embedding parameter count of one architecture."""

    name: str  # as messages say it
    layers: str
    width: str
    positions: str
    count: Callable[[dict[str, Any]], int]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # whole numbers where present (null: the architecture's default)
    aliases: dict[str, str] = field(default_factory=dict)  # another name transformers reads for a key

    def problems(self, config: dict[str, Any]) -> list[str]:
        """What is wrong with `config`'s size keys for this architecture ([] when nothing)."""
        missing = [k for k in self.required if config.get(k) is None]
        if missing:
            return [f"has no {', '.join(missing)}"]
        bad = [k for k in (*self.required, *self.optional) if config.get(k) is not None and not _whole(config[k])]
        if bad:
            return [f"{k} is {config[k]!r}, not a positive whole number" for k in bad]
        out = [f"{alias} is {config[alias]!r} and {key} is {config[key]!r} (transformers reads both as {key})"
               for alias, key in self.aliases.items() if config.get(alias) is not None and config[alias] != config[key]]
        return out + self._shape_problems(config)

    def _shape_problems(self, config: dict[str, Any]) -> list[str]:
        if self.name == "GPT-2":
            d, heads = config["n_embd"], config["n_head"]
            return [] if d % heads == 0 else [f"n_embd {d} is not a multiple of n_head {heads}"]
        h, heads = config["hidden_size"], config["num_attention_heads"]
        out = [] if config.get("head_dim") or h % heads == 0 else [
            f"hidden_size {h} is not a multiple of num_attention_heads {heads} (and there is no head_dim)"]
        kv = config.get("num_key_value_heads") or heads
        if heads % kv:
            out.append(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
        return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def gpt2_non_embedding_params(config: dict[str, Any]) -> int:
    """GPT-2 blocks: fused qkv and output projections, a 2-layer MLP, two LayerNorms, plus ln_f; all with biases."""
    d = int(config["n_embd"])
    inner = int(config.get("n_inner") or 4 * d)
    per_layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d) + 2 * (2 * d)
    return int(config["n_layer"]) * per_layer + 2 * d


def llama_non_embedding_params(config: dict[str, Any], *, qkv_bias: bool | None = None,
                               flags: bool = True) -> int:
    """Llama blocks: q/k/v/o projections (grouped KV heads), a gated 3-matrix MLP, two RMSNorms, plus the final
    norm. `flags`: the config's `attention_bias`/`mlp_bias` are read (Llama); `qkv_bias`: q, k and v always
    have biases and o never (Qwen2)."""
    h = int(config["hidden_size"])
    inter = int(config["intermediate_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or h // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    attn = h * q + 2 * h * kv + q * h
    if qkv_bias:
        attn += q + 2 * kv
    if flags and config.get("attention_bias"):
        attn += q + 2 * kv + h
    mlp = 3 * h * inter
    if flags and config.get("mlp_bias"):
        mlp += 2 * inter + h
    per_layer = attn + mlp + 2 * h
    return int(config["num_hidden_layers"]) * per_layer + h


_LLAMA_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
               "max_position_embeddings", "vocab_size")

GPT2 = Arch("GPT-2", "n_layer", "n_embd", "n_positions", gpt2_non_embedding_params,
            required=("n_layer", "n_embd", "n_head", "n_positions", "vocab_size"), optional=("n_inner",),
            aliases={"num_hidden_layers": "n_layer", "hidden_size": "n_embd", "num_attention_heads": "n_head",
                     "max_position_embeddings": "n_positions"})
LLAMA = Arch("Llama", "num_hidden_layers", "hidden_size", "max_position_embeddings", llama_non_embedding_params,
             required=_LLAMA_KEYS, optional=("num_key_value_heads", "head_dim"))
# Mistral and Qwen2 default num_key_value_heads to 8 and 32 (not to the head count): a config must say it
MISTRAL = Arch("Mistral", "num_hidden_layers", "hidden_size", "max_position_embeddings",
               lambda c: llama_non_embedding_params(c, flags=False),
               required=(*_LLAMA_KEYS, "num_key_value_heads"), optional=("head_dim",))
QWEN2 = Arch("Qwen2", "num_hidden_layers", "hidden_size", "max_position_embeddings",
             lambda c: llama_non_embedding_params(c, qkv_bias=True, flags=False),
             required=(*_LLAMA_KEYS, "num_key_value_heads"))

# the model types whose parameters ttcl counts from config.json, as transformers builds them
ARCHITECTURES: dict[str, Arch] = {"gpt2": GPT2, "llama": LLAMA, "mistral": MISTRAL, "qwen2": QWEN2}


def architecture(config: dict[str, Any], path: Path) -> Arch:
    """The architecture `config` (read from `path`) names, its size keys checked (ConfigSizeError if they
    are missing or do not fit together)."""
    model_type = config.get("model_type")
    if model_type is None:  # a size description: read by the keys it has
        if "n_embd" in config:
            return GPT2
        if "hidden_size" in config and "intermediate_size" in config:
            return LLAMA
        return _uncountable(config)
    arch = ARCHITECTURES.get(model_type) if isinstance(model_type, str) else None
    if arch is None:
        return _uncountable(config)
    problems = arch.problems(config)
    if problems:
        missing = problems[0].startswith("has no ")
        raise ConfigSizeError(f"`{path}` says model_type `{model_type}`, but {'; '.join(problems)}"
                              + (_foreign_keys(config, arch) + f": transformers would build a default-size "
                                 f"{arch.name} in their place" if missing else ""))
    return arch


def _foreign_keys(config: dict[str, Any], arch: Arch) -> str:
    """Where a config holds another architecture's size keys instead (a model_type changed by hand), say so."""
    for other in (GPT2, LLAMA):
        have = [k for k in other.required if k in config and k not in arch.required and k not in arch.aliases]
        if other is not arch and len(have) >= 2:
            return f" (it has {other.name}'s {', '.join(have)} instead: is model_type right?)"
    return ""


def _uncountable(config: dict[str, Any]) -> Arch:
    def unknown(_: dict[str, Any]) -> int:
        raise ConfigSizeError(f"cannot count the parameters of model type `{config.get('model_type', '?')}` "
                              f"from config.json (ttcl counts {', '.join(ARCHITECTURES)})", uncountable=True)

    return Arch("unknown", "num_hidden_layers", "hidden_size", "max_position_embeddings", unknown)
