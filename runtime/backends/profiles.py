"""What an OpenAI-compatible server can do, per engine, and how to tell which engine it is.

Each capability decides how the endpoint backend builds its requests, or
whether a strategy can run at all; a missing capability is an error at
start, never a silently different answer. The flags are what was measured
on the engines themselves (issue #9): `transformers serve` ignores `n`,
`logprobs` and `echo`, keeps stop strings, and has one global seed; vLLM
has native `n` with per-sample seeds (seed + j), keeps stop strings on
request, reports `cached_tokens`, and scores sequence classifiers on
`/classify`. SGLang (0.5.23 on CPU, 2026-12-07) keeps stop strings with
`no_stop_trim`, honours a request's seed only when started with
`--enable-deterministic-inference`, and there gives its native `n` samples
one seed, so that all n are the same text: ttcl sends it n requests seeded
seed + j, diverse on every server and reproducible on a deterministic one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import SamplingParams


@dataclass(frozen=True)
class Profile:
    engine: str
    native_n: bool  # n samples in one request from one prefill (else n seeded requests)
    seeds_per_request: bool  # a request's seed fixes its samples whatever else runs
    keeps_stop: bool  # the stop string can be kept in the output (else it is put back when unambiguous)
    trust_cached: bool  # `prompt_tokens_details.cached_tokens` is an honest saving (single prompt, n = 1)
    classify: bool  # `/classify` scores a sequence-classification reward model
    logprobs: bool  # per-token log-probabilities of a prompt (judges)
    token_ids: bool  # returns the sampled token ids

    def extra_body(self, params: SamplingParams, local_cfg: dict[str, Any]) -> dict[str, Any]:
        """Engine-specific request fields that make the server sample as the local backend does."""
        if self.engine == "vllm":
            return {"include_stop_str_in_output": True, "return_token_ids": True, "top_k": -1}
        if self.engine == "sglang":
            return {"no_stop_trim": True, "top_k": -1}
        if self.engine == "transformers-serve":
            # Without `generation_config` it samples greedily whatever the temperature, with top_k = 50.
            cfg: dict[str, Any] = {
                "do_sample": params.temperature > 0,
                "max_new_tokens": params.max_tokens,
                "top_k": 0,
            }
            if params.temperature > 0:
                cfg["temperature"] = params.temperature
                cfg["top_p"] = params.top_p
            for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
                if local_cfg.get(key) is not None:
                    cfg[key] = local_cfg[key]
            return {"generation_config": json.dumps(cfg)}
        return {}


PROFILES: dict[str, Profile] = {
    "vllm": Profile("vllm", native_n=True, seeds_per_request=True, keeps_stop=True, trust_cached=True,
                    classify=True, logprobs=True, token_ids=True),
    "sglang": Profile("sglang", native_n=False, seeds_per_request=True, keeps_stop=True, trust_cached=False,
                      classify=False, logprobs=False, token_ids=False),  # seeds: on a deterministic server only
    "transformers-serve": Profile("transformers-serve", native_n=False, seeds_per_request=False, keeps_stop=True,
                                  trust_cached=False, classify=False, logprobs=False, token_ids=False),
    "generic": Profile("generic", native_n=False, seeds_per_request=True, keeps_stop=False, trust_cached=False,
                       classify=False, logprobs=False, token_ids=False),
}


def detect_engine(models_json: dict[str, Any], version_json: dict[str, Any] | None) -> str:
    """The engine behind a server, from its `/v1/models` listing (and `/version`)."""
    data = models_json.get("data") if isinstance(models_json, dict) else None
    owners = {str(m.get("owned_by", "")) for m in data or [] if isinstance(m, dict)}
    if "vllm" in owners:
        return "vllm"
    if "sglang" in owners:
        return "sglang"
    if "local" in owners and all(isinstance(m, dict) and "status" in m for m in data or []):
        return "transformers-serve"
    return "generic"


def profile(engine: str) -> Profile:
    try:
        return PROFILES[engine]
    except KeyError:
        raise TtclRuntimeError(f"unknown engine {engine!r} (expected one of {', '.join(PROFILES)})") from None
