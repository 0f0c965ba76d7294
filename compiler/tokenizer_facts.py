"""What the static bound needs to know about a model's tokenizer, read from `tokenizer.json` (no torch).

A verifier reads text that another model wrote, through its own tokenizer,
so a bound in the generator's tokens says nothing about the verifier's
unless the two tokenizers are related. Two facts relate them soundly:

- `token_bytes`: the most UTF-8 bytes one token of this model decodes to
  (a generated text of M tokens has at most M * token_bytes bytes);
- `per_byte`: whether this tokenizer makes at most one token per byte of
  its input, plus `extra` tokens (a prepended `▁`, the post-processor's
  special tokens). True for byte-level BPE, for byte-fallback and
  character-level vocabularies (WordLevel, BPE, Unigram, WordPiece each
  consume at least one character per token) when no normalizer can
  lengthen the text (NFKC, lowercasing and replacements can).

Identical tokenizers (the same `tokenizer.json` bytes) need neither when
the vocabulary is WordLevel (`stable`): re-encoding the text gives back its
count. A BPE model's samples need not be the canonical encoding of their
text, so re-encoding may take more tokens; they convert through bytes too. Where a fact cannot be read, it is
None, and `ttcl check` says that it cannot bound that verifier's input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ttcl.safeio import JSON_LIMIT, UnsafeRead, is_file, read_bounded

_MODELS = ("WordLevel", "BPE", "Unigram", "WordPiece")
_SAFE_NORMALIZERS = (None, "Strip")  # normalizers that never lengthen a text


@dataclass(frozen=True)
class TextFacts:
    """A model's tokenizer, as far as the bound needs it."""

    tok_id: str  # sha256 of tokenizer.json: equal ids, equal tokenization
    token_bytes: int | None  # the most bytes one (non-special) token decodes to
    per_byte: bool  # at most one token per input byte, plus `extra`
    extra: int  # tokens added to any input: a prefix `▁`, the post-processor's specials
    input_template: str | None  # ttcl_meta.json `input_template` (reward models, PRMs)
    stable: bool = False  # re-encoding decoded text gives back as many tokens (a WordLevel vocabulary)


def facts_of_dir(path: Path | None) -> TextFacts | None:
    """The facts of the model in directory `path`, or None when it has no readable tokenizer.json."""
    if path is None:
        return None
    return _facts(str(path.resolve()))


@lru_cache(maxsize=64)
def _facts(path: str) -> TextFacts | None:
    try:
        raw = read_bounded(Path(path) / "tokenizer.json", JSON_LIMIT, what="tokenizer.json")
        tok = json.loads(raw)
    except (OSError, UnsafeRead, ValueError, RecursionError):
        return None
    if not isinstance(tok, dict) or not isinstance(tok.get("model"), dict):
        return None
    meta = read_meta(Path(path))
    template = _meta_template(meta)
    special = {t.get("content") for t in tok.get("added_tokens") or [] if isinstance(t, dict) and t.get("special")}
    return TextFacts(
        tok_id=hashlib.sha256(raw).hexdigest(),
        token_bytes=_token_bytes(tok, special),
        per_byte=_per_byte(tok),
        # a backward checker's runtime appends <eos> after the question (runtime/verifier_gen.py)
        extra=_prefix_tokens(tok) + _special_tokens(tok) + (1 if is_backward(meta) else 0),
        input_template=template,
        stable=tok["model"].get("type") == "WordLevel",
    )


def is_backward(meta: dict) -> bool:
    """Whether a model card says the model is a backward checker (read by `likelihood`: the question after the steps)."""
    return str(meta.get("direction", "")).lower() == "backward"


def read_meta(path: Path) -> dict:
    """A model folder's ttcl_meta.json as a dict, read within JSON_LIMIT; {} where it is missing or not one."""
    try:
        meta = json.loads(read_bounded(path / "ttcl_meta.json", JSON_LIMIT, what="ttcl_meta.json"))
    except (OSError, UnsafeRead, ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _meta_template(meta: dict) -> str | None:
    template = meta.get("input_template")
    if not isinstance(template, str):
        return None
    verdict = meta.get("verdict_prompt") if str(meta.get("verifier", "")).lower() == "generative" else None
    if isinstance(verdict, str):  # a generative step checker reads its verdict after the steps (runtime/verifier_gen.py)
        template += verdict.replace("{", "{{").replace("}", "}}")
    return template


def _type(part: Any) -> str | None:
    return part.get("type") if isinstance(part, dict) else None


def _parts(part: Any, key: str) -> list[Any]:
    """A component and, for a Sequence, its members."""
    if _type(part) == "Sequence":
        return [p for p in part.get(key) or [] if isinstance(p, dict)]
    return [part] if isinstance(part, dict) else []


def _token_bytes(tok: dict[str, Any], special: set[Any]) -> int | None:
    model = tok["model"]
    vocab = model.get("vocab")
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        pieces = [v[0] for v in vocab if isinstance(v, list) and v and isinstance(v[0], str)]
    elif isinstance(vocab, dict):
        pieces = [k for k in vocab if isinstance(k, str)]
    else:
        return None
    pieces += [t.get("content") for t in tok.get("added_tokens") or [] if isinstance(t, dict) and isinstance(t.get("content"), str)]
    decoders = {_type(d) for d in _parts(tok.get("decoder"), "decoders")}
    byte_level = "ByteLevel" in decoders
    sep = 0 if decoders & {"ByteLevel", "Fuse", "Metaspace", "BPEDecoder", "ByteFallback", "Strip", "Replace"} else 1
    if "WordPiece" in decoders or (not decoders and model.get("type") == "WordPiece"):
        sep = 1  # WordPiece joins words with a space
    longest = 0
    for piece in pieces:
        if piece in special:
            continue
        # a byte-level piece of k bytes that is not valid UTF-8 on its own decodes to k U+FFFD (3 bytes each)
        n = 3 * len(piece) if byte_level else len(piece.replace("\u2581", " ").encode("utf-8"))
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            n = 1  # a byte-fallback token
        longest = max(longest, n)
    return longest + sep if pieces else None


def _per_byte(tok: dict[str, Any]) -> bool:
    if tok["model"].get("type") not in _MODELS:
        return False
    normalizers = _parts(tok.get("normalizer"), "normalizers") if tok.get("normalizer") else []
    return all(_type(n) in _SAFE_NORMALIZERS for n in normalizers)


def _prefix_tokens(tok: dict[str, Any]) -> int:
    pre = _parts(tok.get("pre_tokenizer"), "pretokenizers")
    return sum(1 for p in pre if _type(p) == "Metaspace" and p.get("prepend_scheme", "always") != "never")


def _special_tokens(tok: dict[str, Any]) -> int:
    post = tok.get("post_processor")
    total = 0
    for p in _parts(post, "processors"):
        kind = _type(p)
        if kind == "TemplateProcessing":
            total += sum(1 for item in p.get("single") or [] if isinstance(item, dict) and "SpecialToken" in item)
        elif kind in ("BertProcessing", "RobertaProcessing"):
            total += 2
    return total


# The files a transformers tokenizer is read from. In a folder with none of them, AutoTokenizer builds one
# from config.json with an empty vocabulary, and every prompt encodes to no tokens (QA pass: every item
# failed "empty prompt", exit 0).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model")
SAVE_TOKENIZER = "save the model's tokenizer beside it (`tokenizer.save_pretrained(DIR)`)"


def tokenizer_problem(path: Path) -> str | None:
    """Why the model folder `path` has no tokenizer a run could encode a prompt with, or None. Read by
    `ttcl check` (at the model's declaration) and by the run (before loading), with the same words."""
    if not any(is_file(path / name) for name in TOKENIZER_FILES):
        return f"it has no tokenizer (no tokenizer.json or tokenizer_config.json): {SAVE_TOKENIZER}"
    try:
        tok = json.loads(read_bounded(path / "tokenizer.json", JSON_LIMIT, what="tokenizer.json"))
    except (OSError, UnsafeRead, ValueError, RecursionError):
        return None  # none (a vocabulary file instead), or unreadable: the run's loader says what is wrong with it
    model = tok.get("model") if isinstance(tok, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, (dict, list)) and not vocab:
        return f"its tokenizer.json has an empty vocabulary: {SAVE_TOKENIZER}"
    return None
