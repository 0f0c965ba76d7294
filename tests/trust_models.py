"""Real (tiny, randomly initialised) models whose tokenizers differ from the bundled character-level ones.

The bundled zoo is character-level throughout, so a bound that confuses one
model's tokens with another's passes every test built from it. These helpers
write a byte-level BPE policy (tokens of up to several bytes) as an ordinary
Hugging Face directory with safetensors weights, so the runtime loads and
runs it exactly as it would a user's model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CORPUS_SEED = 11


def _corpus(n: int = 400) -> list[str]:
    rng = random.Random(CORPUS_SEED)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        lines.append(f"{a} + {b} = {a + b}\n#### {a + b}\nthe answer is {a + b}, so the total is right")
    return lines


def write_bpe_policy(path: Path, *, vocab_size: int = 320, n_positions: int = 1024, seed: int = 0) -> Path:
    """A byte-level BPE GPT-2 with random weights at `path`; returns `path`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(fast), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path, safe_serialization=True)
    return path


def write_orm_with_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of a reward-model directory whose `ttcl_meta.json` names another input template."""
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "ttcl_meta.json").read_text())
    meta["input_template"] = template
    (dst / "ttcl_meta.json").write_text(json.dumps(meta))
    return dst
