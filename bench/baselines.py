"""The comparison points for bench_generate.py, written the way a user would write them.

- `handwritten_batched`: one batched job with plain transformers: left-padded
  prefill of every prompt once, the DynamicCache repeated n times, a multinomial
  decode loop until every row has emitted EOS or hit max_new_tokens.
- `hf_generate_batched`: `model.generate(num_return_sequences=n)` on the whole
  batch (transformers expands the prompts n times before prefill).
- `naive_loop`: one `model.generate` call per sample, as DSPy's BestOfN and
  Archon's generators do.
"""

from __future__ import annotations

import inspect
import sys

import torch


def _cache_kw(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def handwritten_batched(
    model, tok, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int = 0
) -> list[list[list[int]]]:
    from transformers import DynamicCache

    torch.manual_seed(seed)
    kw = _cache_kw(model)
    enc = tok(prompts, padding=True, padding_side="left", return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    logits = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=pos,
        use_cache=True,
        logits_to_keep=1,
        **{kw: cache},
    ).logits[:, -1]
    cache.batch_repeat_interleave(n)
    logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    nxt = mask.sum(-1)  # next position per row
    eos = tok.eos_token_id
    done = torch.zeros(len(logits), dtype=torch.bool)
    out = []
    for _ in range(max_new_tokens):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        t = torch.multinomial(probs, 1).squeeze(-1)
        t = torch.where(done, torch.full_like(t, eos), t)
        out.append(t)
        done |= t == eos
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones((len(mask), 1))], dim=-1)
        logits = model(
            input_ids=t[:, None],
            attention_mask=mask,
            position_ids=nxt[:, None],
            use_cache=True,
            **{kw: cache},
        ).logits[:, -1]
        nxt = nxt + 1
    toks = torch.stack(out, dim=1).tolist()
    rows = [r[: r.index(eos) + 1] if eos in r else r for r in toks]
    return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]


@torch.no_grad()
def hf_generate_batched(
    model, tok, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int = 0
):
    torch.manual_seed(seed)
    enc = tok(prompts, padding=True, padding_side="left", return_tensors="pt")
    return model.generate(
        **enc,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )


@torch.no_grad()
def naive_loop(
    model, tok, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int = 0
) -> int:
    torch.manual_seed(seed)
    gen = 0
    for p in prompts:
        enc = tok([p], return_tensors="pt")
        for _ in range(n):
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            gen += out.shape[1] - enc["input_ids"].shape[1]
    return gen


if __name__ == "__main__":
    print("error: bench/baselines.py is a library of bench_generate.py and bench_run.py, not a script", file=sys.stderr)
    sys.exit(2)
