"""The decode path, in the gpt-fast style: prefill, decode_step, sample, and one loop.

A batch is a list of distinct contexts (each with the number of positions a
prefix cache already holds) and a list of rows (samples), each pointing at a
context. Contexts are prefilled once, left-padded to a common length; the KV
cache is then gathered row-wise so the n samples of a context share its
prefill. Finished rows are dropped from the batch as they accumulate, so they
cost nothing further.

Layout of one context in the prefill batch (P = pad, c = cached, r = new):
    [P .. P | c cached positions | P .. P | r new tokens]
with an explicit attention mask and position ids = (number of real tokens
before) so padding never changes what a real token sees.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ttcl.runtime.backends.kv import new_cache
from ttcl.runtime.backends.prefix_cache import KV
from ttcl.runtime.backends.sampling import key_tensor, sample, uniforms


@dataclass
class Context:
    ids: tuple[int, ...]
    cached: int = 0  # leading positions served by `kv`; all of them when `logits` is set
    kv: KV | None = None
    logits: torch.Tensor | None = None  # [V] next-token logits of a fully cached context

    @classmethod
    def from_hit(cls, ids: tuple[int, ...], hit) -> Context:
        """Use a prefix-cache hit; without stored logits the last token is recomputed for them."""
        if hit.logits is not None:
            return cls(ids, len(ids), hit.kv, hit.logits)
        return cls(ids, min(hit.length, len(ids) - 1), hit.kv)


@dataclass
class Row:
    ctx: int  # index into the batch's contexts
    key: int  # random stream key (seed, sample index)
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()
    keep_kv: bool = False


@dataclass
class RowOut:
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    kv: KV | None = None  # KV of ctx + token_ids[:-1] when keep_kv


class ModelCall:
    """Adapts the keyword names of a transformers causal LM (`cache` vs `past_key_values`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.keep_kw = "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"
        self.has_keep = self.keep_kw in params
        self.n_layer = model.config.num_hidden_layers

    def __call__(self, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
        kw = {self.cache_kw: cache, "use_cache": True}
        if self.has_keep:
            kw[self.keep_kw] = 1
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kw
        )
        return out.logits[:, -1, :]  # [B, V]


def _past_tensors(contexts: list[Context], device: torch.device) -> tuple[KV | None, int]:
    """Right-align each context's cached KV into one zero-padded batch: per layer [D, H, C, hd]."""
    width = max(c.cached for c in contexts)
    if width == 0:
        return None, 0
    ref = next(c.kv for c in contexts if c.cached)
    past: KV = []
    for layer, (k0, v0) in enumerate(ref):
        shape = (len(contexts), k0.shape[1], width, k0.shape[3])
        keys = torch.zeros(shape, dtype=k0.dtype, device=device)
        values = torch.zeros(shape, dtype=v0.dtype, device=device)
        for i, c in enumerate(contexts):
            if c.cached:
                k, v = c.kv[layer]
                keys[i, :, width - c.cached :] = k[0, :, : c.cached]
                values[i, :, width - c.cached :] = v[0, :, : c.cached]
        past.append((keys, values))
    return past, width


@torch.no_grad()
def prefill(call: ModelCall, contexts: list[Context], pad_id: int, device: torch.device, room: int):
    """Prefill the uncached part of every context once.

    Returns logits [D, V] at each context's last token, the cache, the
    attention mask [D, C + R] and the next position [D]. A fully cached
    context (stored logits) has no new tokens: its new segment is all padding.
    """
    past, width = _past_tensors(contexts, device)
    new = [c.ids[c.cached :] for c in contexts]
    r_max = max(len(t) for t in new)
    input_ids = torch.full((len(contexts), r_max), pad_id, dtype=torch.long)  # [D, R]
    mask = torch.zeros((len(contexts), width + r_max), dtype=torch.long)  # [D, C + R]
    for i, (c, toks) in enumerate(zip(contexts, new, strict=True)):
        input_ids[i, r_max - len(toks) :] = torch.tensor(toks, dtype=torch.long)
        mask[i, width - c.cached : width] = 1
        mask[i, width + r_max - len(toks) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)  # [D, C + R]
    cache = new_cache(call.n_layer, width + r_max + room)
    if past is not None:
        for layer, (k, v) in enumerate(past):
            cache.update(k, v, layer)
    if r_max:
        logits = call(input_ids, mask, positions[:, width:], cache)  # [D, V]
    else:  # everything was cached: nothing to compute
        logits = torch.stack([c.logits for c in contexts]).to(device)
    for i, c in enumerate(contexts):
        if c.logits is not None:
            logits[i] = c.logits
    next_pos = mask.sum(-1)  # [D]
    return logits, cache, mask, next_pos


@torch.no_grad()
def decode_step(
    call: ModelCall, tokens: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache
):
    """tokens [B], mask [B, T] (already including this token), pos [B] -> logits [B, V]."""
    return call(tokens.unsqueeze(-1), mask, pos.unsqueeze(-1), cache)


def row_kv(cache, mask_row: torch.Tensor, b: int) -> KV:
    """The KV of batch row b at its real positions: per layer [1, H, T, hd]."""
    keep = mask_row.nonzero().squeeze(-1)
    return [(k[b : b + 1, :, keep], v[b : b + 1, :, keep]) for k, v in cache_layers(cache)]


def cache_layers(cache) -> KV:
    """Per-layer (keys, values) of a transformers DynamicCache, across its 4.x and 5.x layouts."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


class StopWatcher:
    """Detects stop strings in a row's generated text, one token at a time."""

    def __init__(self, stop: tuple[str, ...], piece: Callable[[int], str]) -> None:
        self.stop = stop
        self.keep = max(len(s) for s in stop) - 1
        self.piece = piece
        self.tail = ""

    def push(self, token: int) -> bool:
        text = self.tail + self.piece(token)
        hit = any(s in text for s in self.stop)
        self.tail = text[-self.keep :] if self.keep else ""
        return hit


def trim_at_stop(text: str, stop: tuple[str, ...]) -> str | None:
    """Cut `text` right after the earliest stop string; None if none occurs."""
    ends = [i + len(s) for s in stop if (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else None


@torch.no_grad()
def run_batch(
    call: ModelCall,
    contexts: list[Context],
    rows: list[Row],
    *,
    pad_id: int,
    eos_id: int | None,
    n_ctx: int | None,
    device: torch.device,
    piece: Callable[[int], str],
    keep_ctx_kv: bool = True,
    on_step: Callable[[], None] | None = None,
) -> tuple[list[RowOut], list[tuple[KV, torch.Tensor] | None]]:
    """Prefill contexts once, expand to rows, decode until every row finishes. `on_step` is called before each
    decode step and may raise to abandon the batch (`ttcl serve`, once every client of it has hung up)."""
    limit = []
    for r in rows:
        room = (
            r.max_tokens if n_ctx is None else min(r.max_tokens, n_ctx - len(contexts[r.ctx].ids))
        )
        limit.append(max(room, 1))
    logits, cache, mask, pos = prefill(call, contexts, pad_id, device, max(limit))
    ctx_kv = [
        (row_kv(cache, mask[i], i), logits[i].clone()) if keep_ctx_kv else None
        for i in range(len(contexts))
    ]

    select = torch.tensor([r.ctx for r in rows], dtype=torch.long, device=device)  # [B]
    cache.batch_select_indices(select)
    logits, mask, pos = logits[select], mask[select], pos[select]
    temperature = torch.tensor([r.temperature for r in rows], dtype=torch.float32, device=device)
    top_p = torch.tensor([r.top_p for r in rows], dtype=torch.float32, device=device)
    keys = key_tensor([r.key for r in rows], device)  # [B, 2]
    outs = [RowOut() for _ in rows]
    watchers = {i: StopWatcher(r.stop, piece) for i, r in enumerate(rows) if r.stop}

    live = list(range(len(rows)))  # batch position -> row index
    dead: set[int] = set()  # batch positions finished but not yet compacted away
    for step in range(max(limit)):
        if on_step is not None:
            on_step()
        tokens = sample(logits, temperature, top_p, uniforms(keys, step))  # [B]
        for b, tok in enumerate(tokens.tolist()):
            if b in dead:
                continue
            i = live[b]
            out = outs[i]
            out.token_ids.append(tok)
            reason = None
            if eos_id is not None and tok == eos_id:
                reason = "eos"
            elif i in watchers and watchers[i].push(tok):
                reason = "stop"
            elif len(out.token_ids) >= limit[i]:
                reason = "length"
            if reason is not None:
                out.finish_reason = reason
                dead.add(b)
                if rows[i].keep_kv:
                    out.kv = row_kv(cache, mask[b], b)
        if len(dead) == len(live):
            break
        if len(dead) * 8 >= len(live):  # compact: finished rows stop costing compute
            keep = [b for b in range(len(live)) if b not in dead]
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(idx)
            tokens, mask, pos = tokens[idx], mask[idx], pos[idx]
            temperature, top_p, keys = temperature[idx], top_p[idx], keys[idx]
            live = [live[b] for b in keep]
            dead = set()
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)  # [B, T + 1]
        logits = decode_step(call, tokens, mask, pos, cache)
        pos = pos + 1
    return outs, ctx_kv
