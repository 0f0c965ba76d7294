"""Batched generation and scoring for zoo training data and evaluation.

Prompts are left-padded and generated together with `model.generate`; the
zoo's own evaluation needs nothing of the ttcl runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def generate(
    model,
    tok,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    batch_size: int = 256,
    seed: int = 0,
) -> list[list[str]]:
    """`n` completions per prompt (greedy when temperature == 0), decoded without special tokens;
    never past the model's context (`n_positions`), whatever `max_new_tokens` asks."""
    tok.padding_side = "left"
    out: list[list[str]] = []
    per_batch = max(1, batch_size // n)
    for start in range(0, len(prompts), per_batch):
        chunk = list(prompts[start : start + per_batch])
        enc = tok(chunk, return_tensors="pt", padding=True)
        torch.manual_seed(seed + start)
        kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
        room = getattr(model.config, "n_positions", None)
        room = max_new_tokens if room is None else min(max_new_tokens, room - enc["input_ids"].shape[1])
        gen = model.generate(
            **enc,
            max_new_tokens=max(1, room),
            num_return_sequences=n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            **kw,
        )
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i in range(len(chunk)):
            out.append(texts[i * n : (i + 1) * n])
    return out


@torch.no_grad()
def score_sequences(model, tok, texts: Sequence[str], batch_size: int = 256) -> list[float]:
    """sigmoid(logit) of a 1-label sequence classifier (the ORM) for each text."""
    tok.padding_side = "left"
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tok(list(texts[start : start + batch_size]), return_tensors="pt", padding=True)
        logits = model(**enc, position_ids=positions(enc["attention_mask"])).logits[:, 0]
        scores.extend(torch.sigmoid(logits).tolist())
    return scores


@torch.no_grad()
def score_steps(model, tok, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 256) -> list[list[float]]:
    """Per-step sigmoid(logit) of a 1-label token classifier (the PRM), read at each step-end
    newline after the prompt. Completions are normalised to their non-empty lines, each
    followed by a newline."""
    from ttcl.zoo.data import encode

    newline = encode("\n")[0]
    tok.padding_side = "left"
    out: list[list[float]] = []
    texts = [p + prm_completion(c) for p, c in zip(prompts, completions, strict=True)]
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start : start + batch_size], return_tensors="pt", padding=True)
        probs = torch.sigmoid(model(**enc, position_ids=positions(enc["attention_mask"])).logits[..., 0])
        ids = enc["input_ids"]
        for row in range(ids.shape[0]):
            p_len = len(encode(prompts[start + row]))
            real = int(enc["attention_mask"][row].sum())
            offset = ids.shape[1] - real + p_len
            pos = (ids[row, offset:] == newline).nonzero().flatten() + offset
            out.append(probs[row, pos].tolist())
    return out


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (GPT-2 does not infer them
    from the attention mask, so left padding needs them explicitly)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def prm_completion(completion: str) -> str:
    lines = [ln.strip() for ln in completion.split("\n") if ln.strip()]
    return "".join(ln + "\n" for ln in lines)
