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
import math
from collections.abc import Callable
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
    row: bool = False  # `line` is a 1-based row of a table (Parquet, Arrow, a dataset directory), not a text line
    extra: dict[str, Any] = {}
    def where(self, shown: object) -> str:
        """Where the item is, as errors name it: `FILE:LINE`, or `FILE row N` for a table's row."""
        return f"{shown} row {self.line}" if self.row else f"{shown}:{self.line}"

    # This item's own run seed (a `ttcl serve` request's `seed`). When set, its random streams are
    # keyed by (seed, node) alone, so its samples do not depend on what else runs with it.
    seed: int | None = None


def _bad(path: str, line: int, message: str) -> DatasetError:
    return DatasetError(f"{path}:{line}: error: {message}")


def parse_line(text: str, *, path: str, line: int, index: int, fields: dict[str, str] | None = None,
               dropped: dict[str, tuple[str, int, int]] | None = None) -> Item:
    """One JSONL line to an Item; raises DatasetError naming file:line and the problem."""
    if len(text) > MAX_LINE_CHARS:
        raise _bad(path, line, f"the line is {len(text):,} characters, more than the {MAX_LINE_CHARS:,} an item may be")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # Python's message for an unterminated string already ends in "at" ("... starting at")
        raise _bad(path, line, f"not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno})") from e
    except RecursionError:
        raise _bad(path, line, "not a dataset item: JSON nested too deeply") from None
    except ValueError as e:  # an integer of more digits than Python converts (4,300)
        raise _bad(path, line, f"not a dataset item: {str(e).split(';')[0]}") from None
    return parse_obj(obj, path=path, line=line, index=index, fields=fields, dropped=dropped)


def parse_obj(obj: Any, *, path: str, line: int, index: int, fields: dict[str, str] | None = None,
              dropped: dict[str, tuple[str, int, int]] | None = None, row: bool = False) -> Item:
    """One record (a JSON object, a dataset row) to an Item, after renaming `fields` (item name -> source name).
    An extra field whose value is not plain JSON is left out (`json_value`); `dropped` collects, per field name,
    (why, the first line or row, how many items)."""
    def bad(message: str) -> DatasetError:  # a table's rows are "FILE row N", a text file's lines "FILE:N"
        return DatasetError(f"{path} row {line}: error: {message}") if row else _bad(path, line, message)

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object with a \"question\" field, got {type(obj).__name__}")
    if fields:
        missing = [src for src in fields.values() if src not in obj]
        if missing:
            raise bad(f"--field: no field \"{missing[0]}\" (fields present: {', '.join(sorted(obj)) or 'none'})")
        renamed = {k: v for k, v in obj.items() if k not in fields.values()}
        renamed.update({name: obj[src] for name, src in fields.items()})
        obj = renamed
    if "question" not in obj:
        keys = ", ".join(sorted(obj)) or "none"
        moved = next((f" (--field {k}=question reads it as `{k}`)" for k, v in (fields or {}).items() if v == "question"), "")
        if not moved and (typo := difflib.get_close_matches("question", list(fields or {}), n=1, cutoff=0.6)):
            moved = f" (--field {typo[0]}={(fields or {})[typo[0]]}: did you mean `question`?)"
        raise bad(f"missing field \"question\"{moved} (fields present: {keys})")
    if "answer" not in obj and (typo := difflib.get_close_matches("answer", list(fields or {}), n=1, cutoff=0.6)):
        # a misspelt `--field anwser=solution` kept the gold answers as an extra field: every item ungraded
        raise bad(f"no field \"answer\": --field {typo[0]}={(fields or {})[typo[0]]}: did you mean "
                   f"`answer`? (fields present: {', '.join(sorted(obj))})")
    question = obj["question"]
    if not isinstance(question, str) or not question.strip():
        raise bad("field \"question\" must be a non-empty string")
    answer = obj.get("answer")
    for name, value in (("question", question), ("answer", answer)):
        if isinstance(value, str) and (why := not_unicode(value)) is not None:
            raise bad(f"field \"{name}\" {why}")
    # a boolean is an int to Python, and json.loads reads NaN and Infinity, which are not JSON: none is a gold answer
    if answer is not None and (not isinstance(answer, str | int | float) or isinstance(answer, bool)):
        raise bad(f"field \"answer\" must be a string or a number, got {type(answer).__name__}")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise bad(f"field \"answer\" must be a string or a number, got {answer} (not JSON)")
    gold = gold_answer(answer) if answer is not None else None
    if answer is not None and gold is None:
        empty = isinstance(answer, str) and not answer.strip()
        raise bad("field \"answer\" is empty (leave it out for an item without a gold answer)"
                   if empty else "field \"answer\" has nothing after \"####\"")
    extra: dict[str, Any] = {}
    for k, v in obj.items():
        if k in ("question", "answer"):
            continue
        why = "its name is not valid Unicode" if not isinstance(k, str) or not_unicode(k) else None
        if why is None:
            why, v = json_value(v)
        if why is None:
            extra[k] = v
        elif dropped is not None:
            first = dropped.get(k, (why, line, 0))
            dropped[k] = (first[0], first[1], first[2] + 1)
    text_answer = answer if isinstance(answer, str) else (None if answer is None else str(answer))
    return Item(index=index, question=question, gold=gold, answer_text=text_answer, line=line, extra=extra,
                row=row)


def json_value(value: Any) -> tuple[str | None, Any]:
    """(None, the value as plain JSON) or (why it is not JSON, None), for an item's extra field. Traces, `--json`
    and `--by` read these fields, so each must be a string, a finite number, a boolean, null, or a list or object
    of those: a Parquet/Arrow column of bytes or images, a NaN, or a lone surrogate is not. A date or time becomes
    its ISO text (what a JSON writer would make of it)."""
    import datetime

    if value is None or isinstance(value, bool | int):
        return None, value
    if isinstance(value, float):
        return (None, value) if math.isfinite(value) else (f"a non-finite number ({value})", None)
    if isinstance(value, str):
        return (None, value) if not_unicode(value) is None else ("text that is not valid Unicode", None)
    if isinstance(value, datetime.date | datetime.time):
        return None, value.isoformat()
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            why, v = json_value(v)
            if why is not None:
                return f"a list holding {why}", None
            out.append(v)
        return None, out
    if isinstance(value, dict):
        obj = {}
        for k, v in value.items():
            why, v = ("a key that is not text", None) if not isinstance(k, str) or not_unicode(k) else json_value(v)
            if why is not None:
                return f"an object holding {why}", None
            obj[k] = v
        return None, obj
    return type(value).__name__, None


def parse_fields(items: list[str]) -> dict[str, str]:
    """`["question=problem", "answer=solution"]` -> {"question": "problem", "answer": "solution"}."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, src = item.partition("=")
        if not eq or not name.strip() or not src.strip():
            raise DatasetError(f"--field {item!r}: expected NAME=SOURCE_FIELD, e.g. --field question=problem")
        if name.strip() in out:
            raise DatasetError(f"--field {name.strip()} is given twice; keep one")
        out[name.strip()] = src.strip()
    return out


def load_dataset(path: str | Path, *, limit: int | None = None, fields: dict[str, str] | None = None,
                 on_note: Callable[[str], None] | None = None) -> list[Item]:
    """Every item of a dataset (see the module docstring for the sources), at most `limit` of them. `on_note`
    gets one line per extra field left out because it is not JSON (default: a Python warning)."""
    dropped: dict[str, tuple[str, int, int]] = {}
    items = _load(path, limit, fields, dropped)
    hf = not _is_text_source(str(path))
    for name, (why, first, count) in dropped.items():
        where = f"row {first}" if hf else f"line {first}"
        note = (f"note: {'<stdin>' if str(path) == '-' else path}: field \"{name}\" is not a JSON value (it holds {why}) in {count} of "
                f"{len(items)} items (first: {where}); it is left out of the items' fields (traces, --json, --by)")
        if on_note is not None:
            on_note(note)
        else:
            import warnings

            warnings.warn(note, stacklevel=2)
    return items


def _is_text_source(text_path: str) -> bool:
    from ttcl.safeio import is_dir

    # safeio's is_dir: an OSError (a name too long) is for the read to report; it was exit 70 (QA pass)
    return not (text_path.startswith("hf:") or is_dir(Path(text_path)) or text_path.endswith((".parquet", ".arrow")))


def _load(path: str | Path, limit: int | None, fields: dict[str, str] | None,
          dropped: dict[str, tuple[str, int, int]]) -> list[Item]:
    text_path = str(path)
    if text_path == "-":
        return _from_text(_read_stdin(), "<stdin>", limit, fields, dropped)
    if not _is_text_source(text_path):
        from ttcl.runtime.dataset_hf import load_hf

        return _from_rows(load_hf(text_path, limit), text_path, limit, fields, dropped)
    p = Path(path)
    try:  # the stat itself may fail (a name too long, a folder ttcl may not search): exit 70 before (QA pass)
        if not p.exists():
            raise DatasetError(f"{p}: error: dataset file not found")
        if p.is_dir():
            raise DatasetError(f"{p}: error: is a directory, expected a .jsonl file")
        real = str(p.resolve())
    except OSError as e:
        raise DatasetError(f"{p}: error: cannot read: {e.strerror or e}") from e
    if any(real == d or real.startswith(d + "/") for d in ("/proc", "/sys")):  # as for programs (docs/trust.md)
        raise DatasetError(f"{p}: error: is in a system directory (/proc or /sys), not a dataset")
    try:
        raw = read_bounded(p, MAX_DATASET_BYTES, what="dataset")
    except UnsafeRead as e:
        pipe = "\n  hint: to read a pipe, give --dataset - with the data on standard input" if "FIFO" in e.reason else ""
        raise DatasetError(f"{p}: error: {e.reason}{pipe}") from None
    except OSError as e:
        raise DatasetError(f"{p}: error: cannot read: {e.strerror}") from e
    return _from_text(raw, str(p), limit, fields, dropped)


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


# What a file that is not JSONL often is, by its first bytes
_PACKED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
           b"PK\x03\x04": "zip", b"PAR1": "Parquet", b"ARROW1": "Arrow"}


def _not_jsonl(raw: bytes, shown: str) -> str | None:
    """A hint for a file that is another format, or None."""
    kind = next((k for magic, k in _PACKED.items() if raw.startswith(magic)), None)
    if kind in ("Parquet", "Arrow"):
        return f"a {kind} file: name it FILE.{kind.lower()} (ttcl reads a {kind} file by its extension)"
    if kind is not None:
        return f"a {kind}-compressed file: decompress it first (ttcl reads JSONL as plain text)"
    if shown.lower().endswith((".csv", ".tsv")):
        return "CSV is not supported: convert it to JSONL (one JSON object per line) or Parquet"
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return "this looks like a JSON array; ttcl reads JSONL, one object per line (jq -c '.[]' FILE > FILE.jsonl)"
    return None


def _from_text(raw: bytes, shown: str, limit: int | None, fields: dict[str, str] | None,
               dropped: dict[str, tuple[str, int, int]]) -> list[Item]:
    try:
        return _parse_text(raw, shown, limit, fields, dropped)
    except DatasetError as e:
        hint = _not_jsonl(raw, shown)
        if hint is None or f"{shown}:1: " not in str(e):  # a hint only where the first line fails
            raise
        raise DatasetError(f"{e}\n  hint: {hint}") from None


def _parse_text(raw: bytes, shown: str, limit: int | None, fields: dict[str, str] | None,
                dropped: dict[str, tuple[str, int, int]]) -> list[Item]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _bad(shown, line, "not valid UTF-8") from e
    text = text.removeprefix("\ufeff")  # a byte-order mark (editors on Windows write one): not part of line 1
    items: list[Item] = []
    # Lines end at \n (or \r\n) only: str.splitlines() also breaks at U+2028, U+2029, U+0085, \x0b, \x0c and
    # \x1c-\x1e, which JSON strings may hold raw; line numbers are those of `wc -l`, `sed -n` and editors.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if limit is not None and len(items) >= limit:
            break
        items.append(parse_line(line, path=shown, line=lineno, index=len(items), fields=fields, dropped=dropped))
    if not items:
        raise DatasetError(f"{shown}: error: the dataset has no items")
    return items


def _from_rows(rows: list[dict[str, Any]], shown: str, limit: int | None, fields: dict[str, str] | None,
               dropped: dict[str, tuple[str, int, int]]) -> list[Item]:
    items = [parse_obj(row, path=shown, line=i + 1, index=i, fields=fields, dropped=dropped, row=True)
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
        raise DatasetError("--input: the input text is empty")
    if (why := not_unicode(question)) is not None:
        raise DatasetError(f"--input: the input text {why} (bytes that are not UTF-8?)")
    if len(question) > MAX_LINE_CHARS:
        raise DatasetError(f"--input: the input is {len(question):,} characters, more than {MAX_LINE_CHARS:,}")
    return [Item(index=0, question=question)]
