"""A randomly initialised GPT-2 with a character tokenizer, saved like any local model.

For mechanics tests (padding, seeds, accounting) and for benchmark (c), which
needs a context longer than the bundled models'. Never for anything that
judges what a model says.
"""

from __future__ import annotations

import string
from pathlib import Path

DEFAULT_CHARS = string.digits + string.ascii_letters + " +-*/=()#.,:;?!\n"


def char_tokenizer(chars: str = DEFAULT_CHARS):  # -> PreTrainedTokenizerFast
    """One token per character, plus <pad> (0) and <eos> (1); decoding concatenates."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def save_random_gpt2(
    path: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 256,
    seed: int = 0,
    init_std: float = 0.3,
    tokenizer=None,
) -> Path:
    """Write a random GPT-2 and its tokenizer to `path` (created) and return it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else char_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=init_std,  # large, so outputs depend on the context
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_random_classifier(
    path: str | Path,
    *,
    token_level: bool,
    n_positions: int = 256,
    meta: dict | None = None,
    seed: int = 0,
) -> Path:
    """A random GPT-2 reward model (sequence- or token-classification head, 1 label), with meta."""
    import json

    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2ForTokenClassification

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = char_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=64,
        n_layer=2,
        n_head=4,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    cls = GPT2ForTokenClassification if token_level else GPT2ForSequenceClassification
    cls(config).save_pretrained(path)
    tok.save_pretrained(path)
    if meta is not None:
        (path / "ttcl_meta.json").write_text(json.dumps(meta))
    return path
