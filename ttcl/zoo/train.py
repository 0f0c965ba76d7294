"""Training the zoo's causal LMs (policies, the revise and direct variants).

Every model trains for a fixed number of optimizer steps on data drawn from a
seeded generator, with a fixed thread count, so a retrain from the same seed on
the same kind of machine reproduces it byte for byte. Another processor or
kernel set gives a different, equally valid model (its float rounding differs
and grows through training); wall time varies with the machine too.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ttcl.zoo.data import EOS_ID, PAD_ID, VOCAB, DataSpec, collate, draw_examples, save_tokenizer

Log = Callable[[str], None]
THREADS = 1  # fixed: a retrain is bit-for-bit the same on the same kind of machine; run models in parallel


@dataclass(frozen=True)
class LMRecipe:
    """Everything that determines one trained causal LM."""

    name: str
    kind: str  # policy | revise | direct
    n_embd: int
    n_layer: int
    n_head: int
    n_ctx: int
    train_steps: int
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    init_std: float = 0.02
    data: DataSpec = field(default_factory=DataSpec)
    init_from: str | None = None  # a trained LM of the same shape (its weights; positions beyond its n_ctx copy its last),
    # or of a whole fraction of the width with the same head_dim and depth: widened by duplication (grow.py)
    init_noise: float = 0.0  # std of the seeded noise added to every matrix after widening (breaks the copies' symmetry)
    attempts_from: str | None = None  # revise: whose sampled attempts it reads (default: init_from's)


def gpt2_config(r: LMRecipe, **extra: object):  # -> GPT2Config
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=r.n_ctx,
        n_embd=r.n_embd,
        n_layer=r.n_layer,
        n_head=r.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        initializer_range=r.init_std,
        **extra,
    )


def param_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameters; embeddings are the token and position tables."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(m.weight.numel() for n, m in model.named_modules() if n.endswith(("wte", "wpe")))
    return total, total - emb


def lr_at(step: int, r: LMRecipe) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    t = (step - r.warmup) / max(1, r.train_steps - r.warmup)
    return r.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, r: LMRecipe) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=r.lr, betas=(0.9, 0.98))


BUCKET = 8  # batches drawn at once and sorted by length, to cut padding


def length_buckets(r: LMRecipe, rng: random.Random, attempts: list[tuple[str, str]] | None = None) -> list:
    """BUCKET batches of similar-length examples, in a seeded random order."""
    pool = draw_examples(r.data, rng, r.batch_size * BUCKET, attempts)
    pool.sort(key=lambda e: len(e.prompt) + len(e.completion))
    chunks = [pool[i * r.batch_size : (i + 1) * r.batch_size] for i in range(BUCKET)]
    rng.shuffle(chunks)
    return [collate(c) for c in chunks]


def train_lm(r: LMRecipe, out: Path | None, log: Log = print, log_every: int = 100,
             attempts: list[tuple[str, str]] | None = None, init_dir: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """Train one causal LM; save it (weights, config, tokenizer) to `out` when given. `attempts`
    ((question, completion) pairs) feed revise data; `init_dir` holds `r.init_from`'s weights."""
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(THREADS)
    torch.manual_seed(r.seed)
    rng = random.Random(r.seed)
    model = GPT2LMHeadModel(gpt2_config(r))
    model.config._attn_implementation = "sdpa"
    if init_dir is not None:
        _load_init(model, init_dir, r)
    opt = make_optimizer(model, r)
    total, non_emb = param_counts(model)
    log(f"[{r.name}] params total={total:,} non-embedding={non_emb:,} steps={r.train_steps}")
    t0 = time.time()
    tokens = 0
    target_tokens = 0
    losses: list[float] = []
    model.train()
    batches: list = []
    for step in range(r.train_steps):
        if not batches:
            batches = length_buckets(r, rng, attempts)
        ids, mask, labels, n_target = batches.pop()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, r)
        # Right padding under a causal mask: no real token ever sees a pad, so no mask
        # is needed and sdpa takes its fast causal path.
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(mask.sum())
        target_tokens += n_target
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            avg = sum(losses[-log_every:]) / len(losses[-log_every:])
            el = time.time() - t0
            log(f"[{r.name}] step {step + 1}/{r.train_steps} loss {avg:.4f} {tokens / el:,.0f} tok/s {el:.0f}s")
    wall = time.time() - t0
    model.eval()
    meta = {
        "name": r.name,
        "kind": r.kind,
        "task": r.data.task,
        "architecture": "GPT2LMHeadModel",
        "params_total": total,
        "params_non_embedding": non_emb,
        "n_layer": r.n_layer,
        "d_model": r.n_embd,
        "n_head": r.n_head,
        "n_ctx": r.n_ctx,
        "seed": r.seed,
        "train_steps": r.train_steps,
        "batch_size": r.batch_size,
        "training_tokens": tokens,
        "training_target_tokens": target_tokens,
        "training_flops": 6 * non_emb * tokens,
        "training_flops_formula": "6*N*D (N non-embedding params, D tokens processed)",
        "wall_seconds": round(wall, 1),
        "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 5),
        "first_loss": round(losses[0], 5),
        "recipe": {k: v for k, v in asdict(r).items() if k != "data" and (k != "init_noise" or v)}
        | {"data": asdict(r.data)},
        **({"init_from": r.init_from} if r.init_from else {}),
    }
    if init_dir is not None and meta["d_model"] != _init_width(init_dir):  # grown: its compute includes the source's
        src_meta = json.loads((init_dir / "ttcl_meta.json").read_text())
        src_flops = src_meta.get("training_flops_with_init", src_meta["training_flops"])
        meta["training_flops_with_init"] = meta["training_flops"] + src_flops
        meta["grown_from"] = {"name": r.init_from, "d_model": src_meta["d_model"], "n_head": src_meta["n_head"],
                              "training_flops": src_flops, "noise_std": r.init_noise}
    if out is not None:
        save_lm(model, out, r.n_ctx, meta)
    return model, meta


def _load_init(model: torch.nn.Module, init_dir: Path, r: LMRecipe) -> None:
    from safetensors.torch import load_file

    from ttcl.zoo.grow import add_noise, widen_gpt2

    src = load_file(str(init_dir / "model.safetensors"))
    own = model.state_dict()
    cfg = json.loads((init_dir / "config.json").read_text())
    d_src = int(cfg["n_embd"])
    if d_src != r.n_embd:  # a narrower model: widen it so that the new one starts computing its function
        if r.n_embd % d_src or d_src // int(cfg["n_head"]) != r.n_embd // r.n_head:
            raise ValueError(f"{r.name}: cannot widen {init_dir.name} (d {d_src}) to d {r.n_embd} with "
                             f"{r.n_head} heads: the width must be a whole multiple and head_dim must stay")
        if int(cfg["n_layer"]) != r.n_layer:
            raise ValueError(f"{r.name}: cannot widen {init_dir.name}: it has {cfg['n_layer']} layers, the recipe "
                             f"{r.n_layer} (widening keeps the depth)")
        src = widen_gpt2(src, r.n_embd // d_src)
        add_noise(src, r.init_noise, torch.Generator().manual_seed(r.seed))
    for k, v in src.items():
        k2 = k if k in own else f"transformer.{k}" if f"transformer.{k}" in own else None
        if k2 is None:
            continue
        if k2.endswith("wpe.weight") and v.shape[0] < own[k2].shape[0]:
            w = own[k2].clone()
            w[: v.shape[0]] = v
            w[v.shape[0] :] = v[-1]
            v = w
        own[k2] = v
    if "lm_head.weight" in own and "transformer.wte.weight" in own:
        own["lm_head.weight"] = own["transformer.wte.weight"]
    model.load_state_dict(own)


def _init_width(init_dir: Path) -> int:
    return int(json.loads((init_dir / "config.json").read_text())["n_embd"])


def save_lm(model: torch.nn.Module, out: Path, n_ctx: int, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out)
    save_tokenizer(out, n_ctx)
    write_meta(out, meta)


def save_weights(model: torch.nn.Module, out: Path) -> None:
    """`save_pretrained` as safetensors, the weights readable as its config is: transformers writes them through a
    private temporary file (mode 0600), so another user of a shared --out could read every file but them."""
    model.save_pretrained(str(out), safe_serialization=True)
    mode = (out / "config.json").stat().st_mode & 0o777
    for f in out.glob("*.safetensors"):
        f.chmod(mode)


def write_meta(out: Path, meta: dict) -> None:
    (out / "ttcl_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
