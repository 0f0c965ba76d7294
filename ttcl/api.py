"""A small public Python API: run a strategy from code, the way `ttcl run` does.

    import ttcl
    out = ttcl.run("programs/self_consistency.ttc", inputs="37 +12 *3", set={"n": 8})
    out.answers          # ["142"]
    out.summary.rows     # bound vs actual per node

Everything `ttcl run` checks is checked here too: errors are `TtclError`s
with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttcl.errors import TtclError


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
) -> RunResult:
    """Compile `path` and run it on `inputs` (texts) or a JSONL `dataset`.

    `judge`: how answers are judged right, as `ttcl run --judge` (None: equality with the gold answer)."""
    from ttcl.compiler.params import parse_set_overrides
    from ttcl.compiler.pipeline import compile_program
    from ttcl.programs import resolve_program
    from ttcl.runtime.dataset import Item, load_dataset
    from ttcl.runtime.runner import Runner, RunOptions

    if (inputs is None) == (dataset is None):
        raise TtclError("ttcl.run: give exactly one of inputs= or dataset=")
    if dataset is not None:
        items = load_dataset(dataset, limit=limit, fields=dict(fields or {}))
    else:
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        items = [Item(index=i, question=t) for i, t in enumerate(texts)][:limit]
    overrides = parse_set_overrides([f"{k}={_as_text(v)}" for k, v in (set or {}).items()])
    compiled = compile_program(resolve_program(path), overrides=overrides, model_overrides=dict(models or {}))
    opts = RunOptions(seed=seed, device=device, dtype=dtype, trace=Path(trace) if trace else None, resume=resume,
                      overwrite=overwrite, dataset=Path(dataset) if dataset else None, judge=judge)
    summary = Runner(compiled, opts).run(items)
    return RunResult(answers=[r["answer"] for r in summary.results], summary=summary)


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
