"""`ttcl models`, `ttcl zoo train` and `ttcl data`: the bundled model family and its task data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ttcl.errors import TtclError, TtclRuntimeError


class ZooArgumentError(TtclError):
    """A bad command-line argument to a zoo or data command."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"error: invalid value for {option}: {message}")

DEFAULT_OUT = "ttcl-zoo"  # relative to the working directory

zoo_app = typer.Typer(help="The bundled tiny model family (ttcl:arith-*).", no_args_is_help=True)
data_app = typer.Typer(help="Synthetic task data as GSM8K-style JSONL.", no_args_is_help=True)


def _fmt_params(n: object) -> str:
    if not isinstance(n, int):
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k"


def _headline(meta: dict) -> str:
    h = meta.get("headline")
    if not isinstance(h, dict) or "value" not in h:
        return "-"
    v = float(h["value"])
    metric = str(h.get("metric", ""))
    return f"AUROC {v:.3f}" if "auroc" in metric else f"{100 * v:.1f}% greedy"


def models() -> None:
    """List the bundled models: size, task, kind, training FLOPs and headline accuracy."""
    from rich.console import Console
    from rich.table import Table

    from ttcl.zoo.registry import list_models

    cards = list_models()
    if not cards:
        raise TtclRuntimeError("no bundled models are installed (train them with `ttcl zoo train`)")
    table = Table(title="bundled models (ttcl:NAME)")
    for col in ("name", "params", "non-emb", "task", "kind", "train FLOPs", "train s", "headline"):
        table.add_column(col, justify="right" if col in ("params", "non-emb", "train FLOPs", "train s") else "left")
    for m in cards:
        flops = m.get("training_flops")
        table.add_row(
            f"ttcl:{m.get('name')}",
            _fmt_params(m.get("params_total")),
            _fmt_params(m.get("params_non_embedding")),
            str(m.get("task", "?")),
            str(m.get("kind", "?")),
            f"{flops:.2e}" if isinstance(flops, int | float) else "?",
            f"{m.get('wall_seconds', '?')}",
            _headline(m),
        )
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


@zoo_app.command("train")
def train(
    only: Annotated[list[str] | None, typer.Option("--only", help="Train only this model (repeatable).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A few steps per model: checks the pipeline, not for shipping.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help=f"Write the models here (default: ./{DEFAULT_OUT}).")] = None,
    into_package: Annotated[bool, typer.Option("--into-package", help="Overwrite the shipped models inside the installed package (for maintainers).")] = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the card evaluation.")] = False,
) -> None:
    """Reproduce the bundled models from their seeds (CPU, one thread per model; see ttcl/zoo/README.md
    for the time). Writes to ./ttcl-zoo unless told otherwise; never touches the shipped models
    without --into-package."""
    from ttcl.zoo.registry import FAMILY as ALL
    from ttcl.zoo.registry import MODELS_DIR

    names = list(only) if only else list(ALL)
    unknown = [n.removeprefix("ttcl:") for n in names if n.removeprefix("ttcl:") not in ALL]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], ALL, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ZooArgumentError("--only", f"no model named {unknown[0]!r}{hint} (known: {', '.join(ALL)})")
    if into_package and out is not None:
        raise ZooArgumentError("--into-package", "give either --out DIR or --into-package, not both")
    if quick and into_package:
        raise ZooArgumentError("--quick", "quick models are not for shipping: drop --into-package")
    root = MODELS_DIR if into_package else (out if out is not None else Path(DEFAULT_OUT))
    if root.exists() and not root.is_dir():
        raise ZooArgumentError("--out", f"{str(root)!r} exists and is not a directory")
    typer.echo(f"writing models to {root.resolve()}", err=True)
    from ttcl.zoo.family import train_one  # torch and transformers load only from here

    for name in names:
        name = name.removeprefix("ttcl:")
        meta = train_one(name, root, is_quick=quick, evaluate=not no_eval,
                         log=lambda s: typer.echo(s, err=True))
        typer.echo(f"{name}: {meta['params_total']:,} params, {meta['wall_seconds']} s, headline {_headline(meta)}")


@data_app.command("arith")
def data_arith(
    steps: Annotated[str, typer.Option("--steps", help="Number of operations: N or A..B (cycled evenly).")] = "1..8",
    n: Annotated[str, typer.Option("--n", help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", help="Generator seed.")] = "0",
    max_value: Annotated[str, typer.Option("--max-value", help="Bound on every running value (99: what the bundled models learned; 999: harder).")] = "99",
) -> None:
    """Arith problems as JSONL lines {"question", "answer" (steps then '#### N'), "steps"} on stdout."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems, parse_steps_spec

    try:
        levels = parse_steps_spec(steps)
    except ValueError as e:
        raise ZooArgumentError("--steps", str(e)) from e
    count = _int_option("--n", n, minimum=0)
    seed_value = _int_option("--seed", seed)
    bound = _int_option("--max-value", max_value, minimum=9)
    for line in iter_jsonl(make_problems(count, levels, seed_value, bound) if count else []):
        sys.stdout.write(line + "\n")


@data_app.command("expr")
def data_expr(
    steps: Annotated[str, typer.Option("--steps", help="Number of operations over all expressions: N or A..B (cycled evenly), 2..12.")] = "2..8",
    n: Annotated[str, typer.Option("--n", help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", help="Generator seed.")] = "0",
) -> None:
    """Expr problems (precedence and parentheses, values up to 9999) as JSONL lines
    {"question", "answer" (one reduction per line, then '#### N'), "steps"} on stdout."""
    from ttcl.runtime.tasks.arith import parse_steps_spec
    from ttcl.runtime.tasks.expr import MAX_STEPS, MIN_STEPS, iter_jsonl, make_problems

    try:
        levels = parse_steps_spec(steps)
    except ValueError as e:
        raise ZooArgumentError("--steps", str(e)) from e
    if levels[0] < MIN_STEPS or levels[-1] > MAX_STEPS:
        raise ZooArgumentError("--steps", f"{MIN_STEPS} to {MAX_STEPS} operations (one per expression, two "
                               f"expressions at least), got {steps!r}")
    count = _int_option("--n", n, minimum=0)
    seed_value = _int_option("--seed", seed)
    for line in iter_jsonl(make_problems(count, levels, seed_value) if count else []):
        sys.stdout.write(line + "\n")


@data_app.command("countdown")
def data_countdown(
    steps: Annotated[str, typer.Option("--steps", help="Difficulty: the count of numbers given minus one, N or A..B (cycled evenly), 2..5.")] = "2..5",
    n: Annotated[str, typer.Option("--n", help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", help="Generator seed.")] = "0",
) -> None:
    """Countdown problems (reach a target from 3-6 numbers with + - * /) as JSONL lines
    {"question", "answer" (one combination per line, then '#### EXPRESSION'), "steps"} on stdout."""
    from ttcl.runtime.tasks.arith import parse_steps_spec
    from ttcl.runtime.tasks.countdown import MAX_STEPS, MIN_STEPS, iter_jsonl, make_problems

    try:
        levels = parse_steps_spec(steps)
    except ValueError as e:
        raise ZooArgumentError("--steps", str(e)) from e
    if levels[0] < MIN_STEPS or levels[-1] > MAX_STEPS:
        raise ZooArgumentError("--steps", f"{MIN_STEPS} to {MAX_STEPS} (the count of numbers given minus one: "
                               f"{MIN_STEPS + 1} to {MAX_STEPS + 1} numbers), got {steps!r}")
    count = _int_option("--n", n, minimum=0)
    seed_value = _int_option("--seed", seed)
    for line in iter_jsonl(make_problems(count, levels, seed_value) if count else []):
        sys.stdout.write(line + "\n")


def _int_option(option: str, text: str, minimum: int | None = None) -> int:
    # Parsed here, not by typer, so a bad value is a one-line ttcl error, never a traceback.
    try:
        value = int(text)
    except ValueError:
        raise ZooArgumentError(option, f"expected an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise ZooArgumentError(option, f"must be >= {minimum}, got {value}")
    return value


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.add_typer(zoo_app, name="zoo")
    app.add_typer(data_app, name="data")
