"""A small public Python API: run a strategy from code, the way `ttcl run` does.

    import ttcl
    out = ttcl.run("ttcl:self_consistency", inputs="37 +12 *3", set={"n": 8}, device="cpu")
    out.answers          # ["97"]: wrong (the answer is 147); the bundled arith-s is a 33k-parameter model
    out.summary.rows     # bound vs actual per node

Everything `ttcl run` checks is checked here too, before a model loads: every problem with an argument is a
`TtclError` (exit code 2 semantics, as a bad `ttcl run` option) naming the keyword and what it expects. Errors
raised by the compiler and the runtime (a bad param value, a trace that already holds a run) are the ones
`ttcl run` prints, so they name its flags; a note on the exception says which keyword each flag is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from ttcl.errors import TtclError
from ttcl.safeio import is_dir, same_file, where_written

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N, as `ttcl run --device` (ttcl/commands/run.py)
DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")  # as `ttcl run --dtype`


class RunArgumentError(TtclError):
    """A `ttcl.run(...)` argument of the wrong type or value (exit code 2, as a bad `ttcl run` option)."""


@dataclass
class RunResult:
    """The answers (one per input, in order) and the full run summary."""

    answers: list[str | None]
    summary: Any  # ttcl.runtime.runner.RunSummary

    @property
    def accuracy(self) -> float | None:
        return self.summary.accuracy


def run(
    path: str | Path,
    *,
    inputs: str | Sequence[str] | None = None,
    dataset: str | Path | None = None,
    set: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors `--set`
    models: Mapping[str, str] | None = None,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    trace: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    fields: Mapping[str, str] | None = None,
    judge: str | None = None,
    retry_failed: bool = False,
    max_input_tokens: int | None = None,
    verifiers: Mapping[str, str] | None = None,
    allow_remote: Sequence[str] | None = None,
    batch_items: int | None = None,
    schedule: str = "auto",
) -> RunResult:
    """Compile `path` (a .ttc file or `ttcl:NAME`) and run it on `inputs` (texts) or a JSONL `dataset`.

    `inputs="TEXT"` (one string) is `ttcl run --input TEXT`: an input longer than the strategy's declared
    `text[<=N]` raises a `TtclError` naming the node it could not reach. `inputs=[...]` (a list of strings) is a
    dataset without gold answers: an item over its bound is stopped (its answer None, `summary.stopped` counts
    it) and the others run, as `ttcl run --dataset` does. `set={"n": 8}` is `--set n=8`, `models={"policy":
    PATH_OR_URL}` is `--model policy=...`, `trace=FILE` with `resume=True` or `overwrite=True` is `--trace`
    with `--resume` or `--overwrite`, `limit=N` runs the first N items, `fields={"question": "problem"}` maps a
    dataset's fields (`--field`). `judge`: how answers are judged right, as `ttcl run --judge` (None: equality
    with the gold answer). `retry_failed=True` with `resume=True` runs again the items the trace holds as failed
    (`--retry-failed`). `max_input_tokens=N` bounds an input declared as plain `text` (`--max-input-tokens`).
    `verifiers={"mine": "my_checks:score"}` is `--verifier mine=my_checks:score`: your own checker for
    `check("mine")` and `judge="mine"`, registered for the rest of this process. `allow_remote=["HOST"]`
    (`--allow-remote`) lets the program's own endpoints name a host other than this machine, `batch_items=N`
    (`--batch-items`) keeps at most N items in flight, `schedule="lockstep"` or `"stream"` is `--schedule`.
    Every problem with an argument raises a `TtclError`; see the module docstring."""
    try:
        return _run(path, inputs=inputs, dataset=dataset, sets=set, models=models, seed=seed, device=device,
                    dtype=dtype, trace=trace, resume=resume, overwrite=overwrite, limit=limit, fields=fields,
                    judge=judge, retry_failed=retry_failed, max_input_tokens=max_input_tokens,
                    verifiers=verifiers, allow_remote=allow_remote, batch_items=batch_items, schedule=schedule)
    except TtclError as e:
        _note_keywords(e)
        raise


def _run(path: Any, *, inputs: Any, dataset: Any, sets: Any, models: Any, seed: Any, device: Any, dtype: Any,
         trace: Any, resume: Any, overwrite: Any, limit: Any, fields: Any, judge: Any, retry_failed: Any,
         max_input_tokens: Any, verifiers: Any, allow_remote: Any, batch_items: Any, schedule: Any) -> RunResult:
    from ttcl.commands.compile import allowed_hosts, register_verifiers
    from ttcl.compiler.params import parse_set_overrides
    from ttcl.compiler.pipeline import compile_program
    from ttcl.programs import resolve_program
    from ttcl.runtime.accountant import input_over_bound
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.judge import make_judge
    from ttcl.runtime.runner import Runner, RunOptions

    # the types first, then what `ttcl run` checks, in its order; all of it before a model loads
    program_text = _path_text("path", path, "a .ttc path or `ttcl:NAME`")
    if "\n" in program_text or program_text.lstrip().startswith("ttcl 1"):
        raise RunArgumentError("path: got the text of a program, not a path: save it to a .ttc file and give its path "
                               "(or `ttcl:NAME` for a bundled program)")
    data = None if dataset is None else _path_text("dataset", dataset, "a dataset path (FILE.jsonl, -, hf:NAME)")
    trace_path = None if trace is None else where_written(Path(_path_text("trace", trace, "a file path for the JSONL trace")))
    overrides = parse_set_overrides([f"{k}={_as_text(v)}" for k, v in _set_arg(sets).items()])
    model_overrides = _models_arg(models)
    seed = _int("seed", seed)
    limit = None if limit is None else _int("limit", limit)
    max_input_tokens = None if max_input_tokens is None else _int("max_input_tokens", max_input_tokens)
    if max_input_tokens is not None and max_input_tokens < 1:
        raise RunArgumentError(f"max_input_tokens={max_input_tokens}: expected a positive number of tokens")
    resume, overwrite = _bool("resume", resume), _bool("overwrite", overwrite)
    retry_failed = _bool("retry_failed", retry_failed)
    if retry_failed and not resume:
        raise RunArgumentError("retry_failed=True reruns the failed items of a resumed trace: add resume=True")
    batch_items = None if batch_items is None else _int("batch_items", batch_items)
    if batch_items is not None and batch_items < 1:
        raise RunArgumentError(f"batch_items={batch_items}: expected a positive number of items")
    _choice("schedule", schedule, ("auto", "lockstep", "stream"))
    if isinstance(allow_remote, str) or not (allow_remote is None or isinstance(allow_remote, Sequence)
                                             and all(isinstance(h, str) for h in allow_remote)):
        raise RunArgumentError(f"allow_remote: expected a list of host names, e.g. allow_remote=['gpu-box'], "
                               f"got {_type_name(allow_remote)}")
    _choice("device", device, DEVICES)
    _choice("dtype", dtype, DTYPES)
    if resume and trace_path is None:
        raise RunArgumentError("resume=True needs trace=FILE (the trace to resume from)")
    if resume and overwrite:
        raise RunArgumentError("resume=True and overwrite=True contradict each other: keep one")
    program = resolve_program(program_text)
    if trace_path is not None:
        _refuse_trace_over_input(trace_path, {"program": program, "dataset": Path(data) if data else None})
        if is_dir(trace_path):
            raise RunArgumentError(f"trace={str(trace_path)!r}: is a directory; give a file name, "
                                   f"e.g. trace={str(trace_path / 'run.jsonl')!r}")
    example = "a mapping of checker names to module:function, e.g. verifiers={'mine': 'my_checks:score'}"
    for name, target in _mapping("verifiers", verifiers, example).items():
        register_verifiers([f"{name}={_path_text(f'verifiers[{name!r}]', target, 'module:function')}"])
    if judge is not None and not isinstance(judge, str):
        raise RunArgumentError(f"judge: expected a checker's name (a string) or None, got {_type_name(judge)}")
    make_judge(judge)  # an unknown checker is refused before any model loads, naming the known ones
    if limit is not None and limit < 1:
        raise RunArgumentError(f"limit={limit}: expected a positive number of items")
    if (inputs is None) == (data is None):
        raise RunArgumentError("ttcl.run: give exactly one of inputs= or dataset=")
    if data is not None:
        items = load_dataset(data, limit=limit, fields=_fields_arg(fields))
    else:
        if fields is not None:
            raise RunArgumentError("fields= maps a dataset's fields to the item's: give it with dataset=, not inputs=")
        items = _input_items(inputs, limit)
    from ttcl.commands.compile import pin_endpoints

    # a server URL names the model it serves, as `ttcl run --model NAME=URL` does, so its FLOPs can be counted
    compiled = compile_program(program, overrides=overrides, model_overrides=pin_endpoints(model_overrides),
                               max_input_tokens=max_input_tokens, allow_remote=allowed_hosts(list(allow_remote or [])))
    opts = RunOptions(seed=seed, device=device, dtype=dtype, trace=trace_path, resume=resume, overwrite=overwrite,
                      dataset=Path(data) if data else None, judge=judge, retry_failed=retry_failed,
                      max_batch_items=batch_items, schedule=schedule)
    summary = Runner(compiled, opts).run(items)
    if isinstance(inputs, str):  # one input, as `--input`: over its declared bound is bad input, not an answer
        why = input_over_bound(summary.results[0], "inputs")
        if why is not None:
            raise RunArgumentError(why)
    return RunResult(answers=[r["answer"] for r in summary.results], summary=summary)


def _input_items(inputs: Any, limit: int | None) -> list[Any]:
    """`inputs="TEXT"`: one item, checked as `--input`; `inputs=[...]`: items, checked as dataset lines."""
    from ttcl.runtime.dataset import MAX_LINE_CHARS, Item, not_unicode

    if isinstance(inputs, str):
        texts, names = [inputs], ["inputs"]
    elif isinstance(inputs, Sequence) and not isinstance(inputs, bytes | bytearray):
        texts = list(inputs)[:limit]
        names = [f"inputs[{i}]" for i in range(len(texts))]
        if not texts:
            raise RunArgumentError("inputs: expected at least one input text, got an empty list")
    else:
        raise RunArgumentError(f"inputs: expected a string or a list of strings, got {_type_name(inputs)}")
    for name, text in zip(names, texts, strict=True):
        if not isinstance(text, str):
            raise RunArgumentError(f"{name}: expected a string, got {_type_name(text)}")
        if not text.strip():
            raise RunArgumentError(f"{name}: the input text is empty")
        if len(text) > MAX_LINE_CHARS:
            raise RunArgumentError(f"{name}: the input is {len(text):,} characters, more than {MAX_LINE_CHARS:,}")
        if (why := not_unicode(text)) is not None:  # a tokenizer's TypeError after the models loaded (QA pass)
            raise RunArgumentError(f"{name}: the input text {why}")
    return [Item(index=i, question=t) for i, t in enumerate(texts)]


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _path_text(name: str, value: Any, expected: str) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text.strip():
        got = "an empty string" if isinstance(text, str) else _type_name(value)
        raise RunArgumentError(f"{name}: expected {expected}, got {got}")
    return text


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise RunArgumentError(f"{name}: expected an int, got {_type_name(value)}")
    _printable(name, value)
    return int(value)


def _printable(name: str, value: Any) -> None:
    """An int past Python's 4,300 digits cannot be written as text (a seed is hashed as text, a param is typed from
    it): a bare ValueError before (QA pass)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        try:
            str(value)
        except ValueError:
            raise RunArgumentError(f"{name}: an int of more than 4,300 digits, past what Python writes as text") from None


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RunArgumentError(f"{name}: expected True or False, got {_type_name(value)}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or not (value in allowed or (name == "device" and value.startswith("cuda:"))):
        more = ", cuda:N" if name == "device" else ""
        raise RunArgumentError(f"{name}={value!r}: expected one of {', '.join(allowed)}{more}")


def _mapping(name: str, value: Any, example: str) -> dict[str, Any]:
    """A mapping with non-empty string keys (without `=`, which would split a `--set`-style item)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k.strip() and "=" not in k for k in value):
        raise RunArgumentError(f"{name}: expected {example}" + ("" if isinstance(value, Mapping)
                                                               else f", got {_type_name(value)}"))
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for k, v in value.items():
        if k.strip() in out:  # `{" n ": 2, "n": 3}` ran with 3 (QA pass); the CLI refuses `--set n=2 --set n=3`
            raise RunArgumentError(f"{name}: {given[k.strip()]!r} and {k!r} name the same key; keep one")
        out[k.strip()], given[k.strip()] = v, k
    return out


def _set_arg(value: Any) -> dict[str, Any]:
    out = _mapping("set", value, "a mapping of param names to values, e.g. set={'n': 8}")
    for k, v in out.items():
        if v is None:
            raise RunArgumentError(f"set={{{k!r}: None}}: expected a number, a string or a bool "
                                   f"(leave {k!r} out to keep the param's default)")
        if isinstance(v, Integral) and not isinstance(v, bool):  # numpy.int64 from a sweep's arange
            _printable(f"set[{k!r}]", v)
            out[k] = int(v)
        elif isinstance(v, Real) and not isinstance(v, bool):
            out[k] = float(v)
        elif not isinstance(v, str | bool):
            raise RunArgumentError(f"set[{k!r}]: expected a number, a string or a bool, got {_type_name(v)}")
    return out


def _models_arg(value: Any) -> dict[str, str]:
    example = "a mapping of model names to paths or URLs, e.g. models={'policy': 'ttcl:arith-m'}"
    return {k: _path_text(f"models[{k!r}]", v, "a model path or URL")
            for k, v in _mapping("models", value, example).items()}


def _fields_arg(value: Any) -> dict[str, str]:
    example = "a mapping of item names to the dataset's field names, e.g. fields={'question': 'problem'}"
    out = _mapping("fields", value, example)
    for k, v in out.items():
        if not isinstance(v, str) or not v.strip():
            raise RunArgumentError(f"fields[{k!r}]: expected a dataset field name, got "
                                   f"{'an empty string' if isinstance(v, str) else _type_name(v)}")
    return {k: v.strip() for k, v in out.items()}


def _refuse_trace_over_input(trace: Path, inputs: dict[str, Path | None]) -> None:
    """`trace=` naming the program or the dataset it runs: writing the trace would destroy it (as `ttcl run`)."""
    for what, path in inputs.items():
        if path is not None and str(path) != "-" and same_file(trace, path):
            raise RunArgumentError(f"trace={str(trace)!r}: that is the {what} this run reads, and writing there "
                                   "would destroy it; give trace= another path")


# `ttcl run`'s flags, as the compiler's and runtime's own messages name them, and their keywords here
_KEYWORDS = {"--set": "set={NAME: VALUE}", "--model": "models={NAME: PATH}", "--trace": "trace=FILE",
             "--resume": "resume=True", "--overwrite": "overwrite=True", "--judge": "judge=NAME",
             "--retry-failed": "retry_failed=True",
             "--field": "fields={NAME: FIELD}", "--input": "inputs=TEXT", "--limit": "limit=N",
             "--max-input-tokens": "max_input_tokens=N", "--verifier": "verifiers={NAME: 'module:function'}",
             "--allow-remote": "allow_remote=[HOST]", "--batch-items": "batch_items=N", "--schedule": "schedule=NAME"}


def _note_keywords(e: TtclError) -> None:
    """An error shared with `ttcl run` names its flags: a note says which keyword of `ttcl.run` each one is."""
    named = [f"{flag} is {kw}" for flag, kw in _KEYWORDS.items() if re.search(rf"{flag}(?![\w-])", str(e))]
    if named and not isinstance(e, RunArgumentError):
        e.add_note("in ttcl.run(): " + ", ".join(named))


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
