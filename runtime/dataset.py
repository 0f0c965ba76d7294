"""Datasets: items with a `question` and (optionally) an `answer`.

Sources: a JSONL file (one item per line), `-` (JSONL on stdin), and Hugging
Face `datasets` from local disk only (the `datasets` extra): a directory
written by `save_to_disk`, a `.parquet` or `.arrow` file, or `hf:NAME[:SPLIT]`
read from the local Hugging Face cache with the hub switched off.
`fields` maps the item's names to the source's (`question=problem`).

GSM8K style: the gold answer is the text after `####` in `answer` when there
is one, else the whole field. Extra fields are kept (a task may use them).
Any bad line stops the run before a model is loaded, with `file:line: what
is wrong` and no traceback.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.extract import gold_answer
from ttcl.safeio import MiB, UnsafeRead, read_bounded

# Bounds on what a dataset may hold, so no file can exhaust memory or reach a tokenizer at any size:
# a line longer than this is an error before anything tokenizes it.
MAX_LINE_CHARS = 1 * MiB
MAX_DATASET_BYTES = 1024 * MiB


class DatasetError(TtclRuntimeError):
    """A dataset file that cannot be read, or a line that is not a valid item."""


class Item(BaseModel):
    """One input: its index in the dataset, the question, and the normalised gold answer if known."""

    model_config = ConfigDict(frozen=True)

    index: int
    question: str
    gold: str | None = None
    answer_text: str | None = None
    line: int = 0
    extra: dict[str, Any] = {}
    # This item's own run seed (a `ttcl serve` request's `seed`). When set, its random streams are
    # keyed by (seed, node) alone, so its samples do not depend on what else runs with it.
    seed: int | None = None


def _bad(path: str, line: int, message: str) -> DatasetError:
    return DatasetError(f"{path}:{line}: error: {message}")


def parse_line(text: str, *, path: str, line: int, index: int, fields: dict[str, str] | None = None) -> Item:
    """One JSONL line to an Item; raises DatasetError naming file:line and the problem."""
    if len(text) > MAX_LINE_CHARS:
        raise _bad(path, line, f"the line is {len(text):,} characters, more than the {MAX_LINE_CHARS:,} an item may be")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(path, line, f"not valid JSON ({e.msg} at column {e.colno})") from e
    except RecursionError:
        raise _bad(path, line, "not a dataset item: JSON nested too deeply") from None
    except ValueError as e:  # an integer of more digits than Python converts (4,300)
        raise _bad(path, line, f"not a dataset item: {str(e).split(';')[0]}") from None
    return parse_obj(obj, path=path, line=line, index=index, fields=fields)


def parse_obj(obj: Any, *, path: str, line: int, index: int, fields: dict[str, str] | None = None) -> Item:
    """One record (a JSON object, a dataset row) to an Item, after renaming `fields` (item name -> source name)."""
    if not isinstance(obj, dict):
        raise _bad(path, line, f"expected a JSON object with a \"question\" field, got {type(obj).__name__}")
    if fields:
        missing = [src for src in fields.values() if src not in obj]
        if missing:
            raise _bad(path, line, f"--field: no field \"{missing[0]}\" (fields present: {', '.join(sorted(obj)) or 'none'})")
        renamed = {k: v for k, v in obj.items() if k not in fields.values()}
        renamed.update({name: obj[src] for name, src in fields.items()})
        obj = renamed
    if "question" not in obj:
        keys = ", ".join(sorted(obj)) or "none"
        moved = next((f" (--field {k}=question reads it as `{k}`)" for k, v in (fields or {}).items() if v == "question"), "")
        if not moved and (typo := difflib.get_close_matches("question", list(fields or {}), n=1, cutoff=0.6)):
            moved = f" (--field {typo[0]}={(fields or {})[typo[0]]}: did you mean `question`?)"
        raise _bad(path, line, f"missing field \"question\"{moved} (fields present: {keys})")
    question = obj["question"]
    if not isinstance(question, str) or not question.strip():
        raise _bad(path, line, "field \"question\" must be a non-empty string")
    answer = obj.get("answer")
    for name, value in (("question", question), ("answer", answer)):
        if isinstance(value, str) and (why := not_unicode(value)) is not None:
            raise _bad(path, line, f"field \"{name}\" {why}")
    if answer is not None and not isinstance(answer, str | int | float):
        raise _bad(path, line, f"field \"answer\" must be a string or a number, got {type(answer).__name__}")
    gold = gold_answer(answer) if answer is not None else None
    if answer is not None and gold is None:
        empty = isinstance(answer, str) and not answer.strip()
        raise _bad(path, line, "field \"answer\" is empty (leave it out for an item without a gold answer)"
                   if empty else "field \"answer\" has nothing after \"####\"")
    extra = {k: v for k, v in obj.items() if k not in ("question", "answer")}
    text_answer = answer if isinstance(answer, str) else (None if answer is None else str(answer))
    return Item(index=index, question=question, gold=gold, answer_text=text_answer, line=line, extra=extra)


def parse_fields(items: list[str]) -> dict[str, str]:
    """`["question=problem", "answer=solution"]` -> {"question": "problem", "answer": "solution"}."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, src = item.partition("=")
        if not eq or not name.strip() or not src.strip():
            raise DatasetError(f"error: --field {item!r}: expected NAME=SOURCE_FIELD, e.g. --field question=problem")
        if name.strip() in out:
            raise DatasetError(f"--field {name.strip()} is given twice; keep one")
        out[name.strip()] = src.strip()
    return out


def load_dataset(path: str | Path, *, limit: int | None = None, fields: dict[str, str] | None = None) -> list[Item]:
    """Every item of a dataset (see the module docstring for the sources), at most `limit` of them."""
    text_path = str(path)
    if text_path == "-":
        return _from_text(_read_stdin(), "<stdin>", limit, fields)
    if text_path.startswith("hf:") or Path(path).is_dir() or text_path.endswith((".parquet", ".arrow")):
        from ttcl.runtime.dataset_hf import load_hf

        return _from_rows(load_hf(text_path, limit), text_path, limit, fields)
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: error: dataset file not found")
    if p.is_dir():
        raise DatasetError(f"{p}: error: is a directory, expected a .jsonl file")
    try:
        raw = read_bounded(p, MAX_DATASET_BYTES, what="dataset")
    except UnsafeRead as e:
        raise DatasetError(f"{p}: error: {e.reason}") from None
    except OSError as e:
        raise DatasetError(f"{p}: error: cannot read: {e.strerror}") from e
    return _from_text(raw, str(p), limit, fields)


def _read_stdin() -> bytes:
    import sys

    if sys.stdin is None:
        raise DatasetError("<stdin>: error: this process has no standard input to read a dataset from")
    raw = getattr(sys.stdin, "buffer", None)  # a notebook's or a test runner's stdin is text only (QA pass)
    if raw is not None:
        data = raw.read(MAX_DATASET_BYTES + 1)
    else:
        data = sys.stdin.read(MAX_DATASET_BYTES + 1).encode("utf-8", "surrogatepass")
    if len(data) > MAX_DATASET_BYTES:
        raise DatasetError(f"<stdin>: error: more than {MAX_DATASET_BYTES // MiB} MiB of dataset")
    return data


def _from_text(raw: bytes, shown: str, limit: int | None, fields: dict[str, str] | None) -> list[Item]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _bad(shown, line, "not valid UTF-8") from e
    text = text.removeprefix("\ufeff")  # a byte-order mark (editors on Windows write one): not part of line 1
    items: list[Item] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if limit is not None and len(items) >= limit:
            break
        items.append(parse_line(line, path=shown, line=lineno, index=len(items), fields=fields))
    if not items:
        raise DatasetError(f"{shown}: error: the dataset has no items")
    return items


def _from_rows(rows: list[dict[str, Any]], shown: str, limit: int | None, fields: dict[str, str] | None) -> list[Item]:
    items = [parse_obj(row, path=f"{shown} row", line=i, index=i, fields=fields)
             for i, row in enumerate(rows[:limit] if limit is not None else rows)]
    if not items:
        raise DatasetError(f"{shown}: error: the dataset has no items")
    return items


def dataset_digest(path: Path, items: list[Item]) -> str:
    """What a trace header names a dataset's content by: the file's bytes (the whole file, whatever `--limit` kept),
    or the items where there is no plain file (stdin, a Parquet/Arrow file, a dataset directory)."""
    from ttcl.runtime.trace import file_digest

    regular = str(path) != "-" and path.is_file() and path.suffix not in (".parquet", ".arrow")
    return file_digest(path) if regular else items_digest(items)


def items_digest(items: list[Item]) -> str:
    """A digest of what a dataset held (for sources that are not one file: stdin, a dataset directory)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for it in items:
        h.update(json.dumps([it.question, it.answer_text, it.extra], sort_keys=True, default=str).encode() + b"\n")
    return h.hexdigest()


def not_unicode(text: str) -> str | None:
    """Why `text` cannot be encoded for a model, or None: a lone surrogate, which JSON's `\\ud800` escapes
    and undecodable command-line bytes (Python's surrogateescape) both leave in a str."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode: a lone surrogate U+{ord(text[e.start]):04X} at character {e.start + 1}"
    return None


def single_item(question: str) -> list[Item]:
    """`--input TEXT` as a one-item dataset."""
    if not question.strip():
        raise DatasetError("error: --input: the input text is empty")
    if (why := not_unicode(question)) is not None:
        raise DatasetError(f"error: --input: the input text {why} (bytes that are not UTF-8?)")
    if len(question) > MAX_LINE_CHARS:
        raise DatasetError(f"error: --input: the input is {len(question):,} characters, more than {MAX_LINE_CHARS:,}")
    return [Item(index=0, question=question)]
