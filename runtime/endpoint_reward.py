"""An outcome reward model on a server's `/classify` (vLLM), as a verifier.

It reads its input the way the local `RewardModelVerifier` does (the local
twin's `ttcl_meta.json` `input_template`), and turns the server's class
probabilities into the score the meta names: a one-label model's
`sigmoid(logit)` (what vLLM's `/classify` returns for one label), or the
softmax probability of `positive_label`. A meta that asks for raw logits
cannot be read from probabilities and is refused at start.

Costs: calls = texts scored, prompt_tokens = their tokens (the server's
usage, cross-checked against the local tokenizer), FLOPs one forward pass
per text. A request whose outcome is unknown is charged in full (every
text's whole pass), as the local verifier's worst case is.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ttcl.compiler.costmodel import forward_flops
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import Usage, resolve_ref
from ttcl.runtime.backends.endpoint import EndpointCallError, _http_json, open_endpoint

Item = tuple[str, str]


class EndpointRewardVerifier:
    def __init__(self, ref: str, options: dict[str, float] | None = None, base_dir: str | None = None) -> None:
        self.be = open_endpoint(ref, options, base_dir)
        where = f"reward model at {self.be.ep.base_url} ({self.be.engine})"
        if not self.be.profile.classify:
            raise TtclRuntimeError(f"{where}: the engine has no /classify, so it cannot score a reward model; "
                                   "use the local model, or serve it with vLLM")
        if self.be.local is None:
            raise TtclRuntimeError(f"{where}: needs its local twin (`local=DIR`) for the input template and score")
        path = Path(resolve_ref(self.be.local))
        meta_file = path / "ttcl_meta.json"
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        labels = len(self.be.local_cfg.get("id2label") or {"0": ""})
        how = str(meta.get("score", "")).strip().lower()
        if how.startswith("logit"):
            raise TtclRuntimeError(f"{where}: its meta scores raw logits, which /classify does not return")
        self.pos = int(meta.get("positive_label", labels - 1))
        self.template = meta.get("input_template", "{question}\n{completion}")
        self.spec = self.be.spec
        self.where = where

    def item_tokens(self, question: str, completion: str) -> int:
        return self.be.count_tokens(self.template.format(question=question, completion=completion))

    def score(self, items: list[Item]) -> tuple[list[float], Usage]:
        if not items:
            return [], Usage()
        texts = [self.template.format(question=q, completion=c) for q, c in items]
        lengths = [self.be.count_tokens(t) for t in texts]
        full = Usage(calls=len(texts), prompt_tokens=sum(lengths),
                     flops=sum(forward_flops(self.spec, 0, L) for L in lengths))
        t0 = time.perf_counter()
        try:
            status, got = _http_json(self.be.ep.root_url + "/classify",
                                     {"model": self.be.model_id, "input": texts}, timeout=self.be.ep.timeout)
        except TtclRuntimeError as e:  # the connection failed: whether it was computed is unknown
            raise EndpointCallError(f"{self.where}: {e}; charged in full", full) from None
        if status != 200 or not isinstance(got, dict) or not isinstance(got.get("data"), list):
            if 400 <= status < 500:
                raise EndpointCallError(f"{self.where}: /classify rejected the request with {status}")
            raise EndpointCallError(f"{self.where}: /classify answered {status}; charged in full", full)
        rows = sorted(got["data"], key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        used = (got.get("usage") or {}).get("prompt_tokens")
        if len(rows) != len(texts) or used != sum(lengths):
            raise EndpointCallError(f"{self.where}: /classify sent {len(rows)} results for {len(texts)} texts and "
                                    f"counted {used} tokens where the local tokenizer counts {sum(lengths)}; "
                                    "charged in full", full)
        scores: list[float] = []
        for r in rows:
            probs = r.get("probs") if isinstance(r, dict) else None
            if not isinstance(probs, list) or not 0 <= self.pos < len(probs) or not isinstance(probs[self.pos], int | float):
                raise EndpointCallError(f"{self.where}: a /classify result without probabilities; charged in full", full)
            p = float(probs[self.pos])
            if math.isnan(p):
                raise EndpointCallError(f"{self.where}: /classify returned NaN; charged in full", full)
            scores.append(p)
        full.seconds = time.perf_counter() - t0
        return scores, full


def reward_on_endpoint(ref: Any) -> EndpointRewardVerifier:
    base = None if ref.base_dir is None else str(ref.base_dir)
    return EndpointRewardVerifier(ref.ref, dict(ref.options), base)
