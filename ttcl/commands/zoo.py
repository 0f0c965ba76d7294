"""`ttcl models`, `ttcl zoo train` and `ttcl data`: the bundled model family and its task data."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from ttcl.commands.paths import named_path
from ttcl.errors import TtclError, TtclRuntimeError


class ZooArgumentError(TtclError):
    """A bad command-line argument to a zoo or data command."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"error: invalid value for {option}: {message}")

DEFAULT_OUT = "ttcl-zoo"  # relative to the working directory
_INT = "<int>"  # the help for an integer option read as text and parsed by _int_option (its own messages)

zoo_app = typer.Typer(help="The bundled tiny model family (ttcl:arith-*, ttcl:expr-*, ttcl:countdown-*).", no_args_is_help=True)
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


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON (every card field, and train_s).")] = False,
) -> None:
    """List the bundled models: size, task, kind, training FLOPs and seconds, and headline accuracy."""
    from rich.console import Console
    from rich.table import Table

    from ttcl.zoo.build import last_build, recorded_seconds
    from ttcl.zoo.registry import list_models, reference_builds

    cards = list_models()
    if not cards:
        raise TtclRuntimeError("no bundled models are installed (train them with `ttcl zoo train`)")
    # one thread's training seconds in the last whole-zoo build, as `ttcl zoo train --plan` reads them: a card's own
    # wall_seconds was recorded on whatever load its day's machine carried (up to 10x these; QA pass)
    seconds = recorded_seconds([str(m.get("name")) for m in cards])
    if as_json:
        rows = [{**m, "train_s": seconds.get(str(m.get("name")))} for m in cards]
        typer.echo(json.dumps({"models": rows, "train_s": f"each model's training on one thread, sampling and cards aside; from {last_build()}",
                               "built_on_request": reference_builds()}, indent=2, default=str))
        return
    table = Table(title="bundled models (ttcl:NAME)")
    for col in ("name", "params", "non-emb", "task", "kind", "train FLOPs", "train s", "headline"):
        table.add_column(col, justify="right" if col in ("params", "non-emb", "train FLOPs", "train s") else "left")
    for m in cards:
        flops = m.get("training_flops")
        secs = seconds.get(str(m.get("name")))
        table.add_row(
            f"ttcl:{m.get('name')}",
            _fmt_params(m.get("params_total")),
            _fmt_params(m.get("params_non_embedding")),
            str(m.get("task", "?")),
            str(m.get("kind", "?")),
            f"{flops:.2e}" if isinstance(flops, int | float) else "?",
            "?" if secs is None else f"{secs:.0f}",
            _headline(m),
        )
    console = Console(markup=False)  # a card's text is not markup
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=160, markup=False)
    console.print(table)
    console.print(f"train s: each model's training on one thread, sampling and cards aside; from {last_build()}",
                  highlight=False, soft_wrap=True)
    for name, ref in reference_builds().items():  # recipes the package cannot hold: built where the user asks
        console.print(f"built on request, not bundled: {name}, "
                      f"{_fmt_params(ref.get('params_total'))} params, {ref.get('task', '?')} {ref.get('kind', '?')}, "
                      f"{ref.get('what', '')}; build it with `ttcl zoo train --only {name} --shipped-deps`",
                      highlight=False, soft_wrap=True)


@zoo_app.command("train")
def train(
    only: Annotated[list[str] | None, typer.Option("--only", help="Train only this model (repeatable); what it needs must be in --out already or named too. Also builds the recipes the default build leaves out: expr-l-grown (the expr family's third size, too large for the package; with --shipped-deps) and the experimental ones.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A few steps per model: checks the pipeline, not for shipping.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help=f"Write the models here (default: ./{DEFAULT_OUT}).", parser=named_path)] = None,
    into_package: Annotated[bool, typer.Option("--into-package", help="Overwrite the shipped models inside the installed package (for maintainers).")] = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the card evaluation.")] = False,
    jobs: Annotated[str | None, typer.Option("--jobs", "-j", metavar="N", help="Models trained at once, each in its own process on one thread (default: the CPU cores this process may use). The bytes of a model do not depend on it.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the build order and the schedule estimated from the last whole-zoo build's training seconds (ttcl/zoo/build_times.json); train nothing.")] = False,
    shipped_deps: Annotated[bool, typer.Option("--shipped-deps", help="Copy the shipped models that the named ones read (an init_from, the policies a verifier samples) into --out where it lacks them, instead of training them first: `ttcl zoo train --only countdown-revise --shipped-deps` rebuilds that one model.")] = False,
) -> None:
    """Reproduce the bundled models from their seeds on the CPU.

    Independent models train in parallel (--jobs), each in its own process on one thread; a model starts when the models it reads (the policies a verifier samples, an init_from) are written. Writes to ./ttcl-zoo unless told otherwise; never touches the shipped models without --into-package. After each model it says whether the weights are byte-identical to the shipped file: they were on the two AMD EPYC kinds measured (the one that built them and a newer one), and an Intel processor gave another, equally valid training run. Times and hashes: ttcl/zoo/README.md, "Reproducing"."""
    import os

    from ttcl.zoo.registry import EXPERIMENTAL, FAMILY, MODELS_DIR

    known = FAMILY + EXPERIMENTAL
    names = list(dict.fromkeys(n.removeprefix("ttcl:") for n in only)) if only else list(FAMILY)
    unknown = [n for n in names if n not in known]
    if unknown:
        hint = _did_you_mean(unknown[0], known)
        raise ZooArgumentError("--only", f"no model named {unknown[0]!r}{hint} (known: {', '.join(FAMILY)}; "
                               f"experimental: {', '.join(EXPERIMENTAL)})")
    if into_package and out is not None:
        raise ZooArgumentError("--into-package", "give either --out DIR or --into-package, not both")
    if quick and into_package:
        raise ZooArgumentError("--quick", "quick models are not for shipping: drop --into-package")
    from ttcl.zoo import build

    n_jobs = build.default_jobs() if jobs is None else _int_option("--jobs", jobs, minimum=1)
    root = MODELS_DIR if into_package else (out if out is not None else Path(DEFAULT_OUT))
    if root.exists() and not root.is_dir():
        raise ZooArgumentError("--out", f"{str(root)!r} exists and is not a directory")
    shipped = MODELS_DIR.resolve()
    if not into_package and (root.resolve() == shipped or shipped in root.resolve().parents):  # QA pass: it wrote over them
        raise ZooArgumentError("--out", f"{str(root)!r} is the shipped models' directory: --out writes elsewhere "
                               "(the default is ./ttcl-zoo); maintainers rebuilding the package use --into-package")
    from ttcl.zoo.family import dependencies  # torch and transformers load only from here

    full = build.recipe_graph(known, lambda n: dependencies(n, evaluate=not no_eval))
    graph = build.subgraph(full, names)
    if plan:
        _print_plan(graph, n_jobs, {n: tuple(d for d in full[n] if d not in graph) for n in graph}, quick=quick,
                    shipped_deps=shipped_deps)
        return
    created = not root.exists()
    try:  # before any training: an --out that cannot be written fails now, not after the compute is spent
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".ttcl-write-check"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ZooArgumentError("--out", f"cannot write models to {str(root)!r}: {e.strerror or e}") from None
    missing = build.missing_outside(full, names, root)
    if missing and shipped_deps:
        _copy_shipped(sorted({d for m in missing.values() for d in m}), root)
        missing = build.missing_outside(full, names, root)
    if missing:
        if created and not any(root.iterdir()):
            root.rmdir()  # made by the check above, and nothing was copied into it
        n, m = next(iter(missing.items()))
        raise TtclRuntimeError(f"{n} needs {', '.join(m)} in {root}: train {'it' if len(m) == 1 else 'them'} "
                               f"first, add {' '.join(f'--only {d}' for d in m)}, or use the shipped "
                               f"{'one' if len(m) == 1 else 'ones'} with --shipped-deps")
    typer.echo(f"writing models to {root.resolve()} ({min(n_jobs, len(names))} at a time)", err=True)
    # what a rebuild is compared with: read before training, since --into-package overwrites it
    shipped = {} if quick else {n: build.weights_digest(MODELS_DIR / n) for n in graph}
    shipped_env = {} if quick else {n: build.shipped_build(n) for n in graph}
    reference = {n: build.reference_build(n) for n in graph if not quick and shipped[n] is None}
    same: dict[str, bool | None] = {}

    def done(name: str, meta: dict) -> None:
        line = f"{name}: {meta['params_total']:,} params, {meta['wall_seconds']} s, headline {_headline(meta)}"
        if not quick:
            ref_digest, ref_env = reference.get(name, (None, None))
            same[name], phrase = build.compare_with_shipped(
                root / name, shipped.get(name) or ref_digest, shipped_env.get(name) or ref_env, meta.get("build"),
                what="the shipped file" if shipped.get(name) else "the reference build (ttcl/zoo/reference_builds.json)")
            line += f"; {phrase}"
        typer.echo(line)

    import shlex

    again = [*(["--quick"] if quick else []), *(["--no-eval"] if no_eval else []),
             *(["--into-package"] if into_package else []), *(["--out", shlex.quote(str(out))] if out is not None else []),
             *(["--jobs", str(jobs)] if jobs is not None else [])]
    build.build(graph, root, jobs=n_jobs, is_quick=quick, evaluate=not no_eval, on_done=done, again=again,
                log=lambda s: typer.echo(s, err=True), debug="--debug" in sys.argv or bool(os.environ.get("TTCL_DEBUG")))
    compared = [n for n, v in same.items() if v is not None]
    if compared:
        differ = [n for n in compared if not same[n]]
        typer.echo(f"{len(compared) - len(differ)} of {len(compared)} models rebuilt byte-identical to the shipped "
                   "(or reference) files"
                   + (f"; differ: {', '.join(differ)} (see 'Reproducing' in ttcl/zoo/README.md)" if differ else ""))


@zoo_app.command("card")
def card(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The model whose card to evaluate again (e.g. countdown-s or ttcl:countdown-s).")],
    model: Annotated[Path | None, typer.Option("--model", help="A built model's folder (e.g. ./ttcl-zoo/NAME from `ttcl zoo train`) instead of the shipped one.", parser=named_path)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the new card (README.md) here.", parser=named_path)] = None,
) -> None:
    """Evaluate a model's card tables again from its weights, without training, and compare them with its card.

    Runs the evaluation `ttcl zoo train` runs after training (the card's fixed set, seed and sampling, on the same kernels and one thread as the build), on the shipped weights or on --model DIR, and prints each table row that differs from the card beside the model, with whether its new figures lie within the card's 95% intervals, or that every row came back identical. Exit 0 when every row is identical or within its intervals; 1 when a row lies outside them, has none to judge a difference by, or is missing or new. A verifier's card scores its policies' card samples, drawn again from the shipped policies (or from --model's folder where it holds them). On the kind of processor that built the model the rows come back exactly; elsewhere, within their intervals. Measured here on 2 cores on 2026-12-07: arith-s 13 s, countdown-s 31-41 s, countdown-check 124 s (a verifier's card samples its policies first); expr-s-narrow8-xlong-lik took 101 s on 2026-12-06, when the others took about 0.6x of these."""
    import tempfile

    from ttcl.zoo.family import set_kernels
    from ttcl.zoo.recard import compare, outside_intervals, recard
    from ttcl.zoo.registry import EXPERIMENTAL, FAMILY, MODELS_DIR

    name = name.removeprefix("ttcl:")
    if name not in FAMILY + EXPERIMENTAL:
        raise ZooArgumentError("NAME", f"no zoo model named {name!r}{_did_you_mean(name, FAMILY + EXPERIMENTAL)} "
                                       f"(known: {', '.join(FAMILY)})")
    source = model if model is not None else MODELS_DIR / name
    if model is None and name not in FAMILY:
        from ttcl.zoo.family import dependencies

        deps = " --shipped-deps" if dependencies(name) else ""
        raise ZooArgumentError("NAME", f"{name} is not shipped: build it with `ttcl zoo train --only {name}{deps}`, "
                                       f"then give --model ./ttcl-zoo/{name}")
    if model is not None and not model.is_dir():
        raise ZooArgumentError("--model", f"{model} is not a folder" if model.exists() else f"{model} does not exist")
    old_card = source / "README.md"
    if not old_card.is_file():
        raise ZooArgumentError("--model" if model is not None else "NAME", f"{source} has no card (README.md)")
    if out is not None and out.exists() and not out.is_dir():
        raise ZooArgumentError("--out", f"{out} exists and is not a folder")
    import os
    from unittest import mock

    def log(line: str) -> None:
        typer.echo(line, err=True)

    with mock.patch.dict(os.environ):  # the kernels and the sample cache are this command's only
        set_kernels(name)  # before torch's first kernel call in this process
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one "Loading weights" bar per model read
        with tempfile.TemporaryDirectory(prefix="ttcl-card-") as tmp:
            os.environ["TTCL_ZOO_CACHE"] = str(Path(tmp) / "cache")  # samples drawn here, kept nowhere
            text = recard(name, source, Path(tmp) / "models", shipped_root=MODELS_DIR, log=log).read_text()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "README.md").write_text(text)
        log(f"wrote the new card to {out / 'README.md'}")
    c = compare(old_card.read_text(), text)
    if c.identical:
        typer.echo(f"{name}: every table row of its card came back identical ({c.rows} rows; card: {old_card})")
        return
    typer.echo(f"{name}: {len(c.differ) + len(c.missing) + len(c.added)} of {c.rows} table rows differ from its card "
               f"({old_card}):")
    judged = [outside_intervals(a, b) for a, b in c.differ]
    for (a, b), out in zip(c.differ, judged, strict=True):
        verdict = ("no interval to judge by" if out is None else "outside the card's 95% interval: " + "; ".join(out)
                   if out else "within the card's 95% intervals")
        typer.echo(f"  card: {a}\n  now:  {b}\n        ({verdict})")
    for a in c.missing:
        typer.echo(f"  card: {a}\n  now:  (no such row)")
    for b in c.added:
        typer.echo(f"  card: (no such row)\n  now:  {b}")
    failing = card_failures(c, judged)
    if failing:  # a verdict a script can read, as `check`'s is (QA pass: 9 of 15 rows at 0% against 88%, exit 0)
        typer.echo(f"{name}: {failing} of {c.rows} rows lie outside the card's 95% intervals, have none to judge "
                   "them by, or are missing or new: exit 1")
        raise typer.Exit(1)


def card_failures(c: Any, judged: list[list[str] | None]) -> int:
    """The rows of a card comparison that fail it: outside the card's intervals, with no interval to judge a
    difference by, or missing or new (a differing row inside every interval passes)."""
    return sum(1 for out in judged if out is None or out) + len(c.missing) + len(c.added)


def _copy_shipped(names: list[str], root: Path) -> None:
    """Copy the shipped models `names` into `root` (a directory that lacks them)."""
    import shutil

    from ttcl.zoo.registry import META_FILE, MODELS_DIR

    for n in names:
        src, dst = MODELS_DIR / n, root / n
        if not (src / META_FILE).is_file():
            raise TtclRuntimeError(f"--shipped-deps: {n} is not shipped in this installation ({MODELS_DIR})")
        if dst.exists():
            raise TtclRuntimeError(f"--shipped-deps: {dst} exists but holds no trained model; remove it or train {n}")
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst)
        typer.echo(f"copied the shipped {n} into {dst}", err=True)


def _print_plan(graph: dict[str, tuple[str, ...]], jobs: int, outside: dict[str, tuple[str, ...]], *,
                quick: bool = False, shipped_deps: bool = False) -> None:
    """The schedule; `outside`: what each model needs that this build does not make (marked `*`: read from --out)."""
    from ttcl.zoo import build

    seconds = build.recorded_seconds(list(graph))
    slots = build.simulate(graph, seconds, jobs)
    needs = {n: ", ".join([*graph[n], *(f"{d}*" for d in outside.get(n, ()))]) or "-" for n in graph}
    w = max([14, *(len(n) for n in graph)])
    wn = max([24, *(len(v) for v in needs.values())])
    typer.echo(f"{'model':<{w}} {'needs':<{wn}} {'recorded s':>10} {'worker':>6} {'start min':>9} {'end min':>8}")
    for s in slots:
        sec = seconds[s.name]
        typer.echo(f"{s.name:<{w}} {needs[s.name]:<{wn}} {f'{sec:.0f}' if sec is not None else '?':>10} "
                   f"{s.worker:>6} {s.start / 60:>9.1f} {s.end / 60:>8.1f}")
    if any(outside.values()) and shipped_deps:  # QA pass: the note offered --shipped-deps to a plan that had it
        typer.echo("* not built by this command: copied from the shipped models into --out (--shipped-deps), "
                   "unless --out holds it trained already")
    elif any(outside.values()):
        typer.echo("* not built by this command: read from --out, where it must be trained first (add --only NAME), "
                   "or copied from the shipped models with --shipped-deps")
    total = sum(v or 0.0 for v in seconds.values())
    chain = max(build.chain_seconds(graph, seconds).values(), default=0.0)
    span = max((s.end for s in slots), default=0.0)
    unknown = [n for n, v in seconds.items() if v is None]
    least = "at least " if unknown else ""  # an unknown model counts 0 s: the figures are lower bounds
    typer.echo(f"estimate from recorded training seconds (ttcl/zoo/build_times.json: {build.last_build()}; "
               f"else the shipped model's ttcl_meta.json wall_seconds, or a recipe's reference build): "
               f"{least}{span / 60:.1f} min with {jobs} worker(s); {least}{total / 60:.1f} min one after another; "
               f"longest dependency chain {least}{chain / 60:.1f} min. Not included: sampling verifier data, "
               f"card evaluation, process start.")
    if quick:
        from ttcl.zoo.family import LM_RECIPES
        from ttcl.zoo.family import quick as quick_recipe

        steps = quick_recipe(next(iter(LM_RECIPES.values()))).train_steps
        typer.echo(f"--quick: the order above holds, but the times are the full build's; a quick build trains {steps} "
                   "steps per model and samples and evaluates a few items, so it takes far less (not recorded)")
    if unknown:
        typer.echo(f"no recorded time (counted as 0, so the estimate is a lower bound): {', '.join(unknown)}; "
                   "the zoo README's family tables give the seconds measured for experimental recipes")


@data_app.command("arith")
def data_arith(
    steps: Annotated[str, typer.Option("--steps", metavar="N|A..B", help="Number of operations: N or A..B (cycled evenly), 1..1000.")] = "1..8",
    n: Annotated[str, typer.Option("--n", metavar=_INT, help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", metavar=_INT, help="Generator seed.")] = "0",
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the JSONL here (folders made; written whole or not at all) instead of stdout.", parser=named_path)] = None,
    max_value: Annotated[str, typer.Option("--max-value", metavar=_INT, help="Bound on every running value (99: what the bundled models learned; 999: harder).")] = "99",
) -> None:
    """Arith problems: a chain of + - * on small numbers, as JSONL.

    Each line is {"question", "answer" (steps then '#### N'), "steps"}, on stdout."""
    from ttcl.runtime.tasks.arith import MAX_OPS, MAX_VALUE_DIGITS, iter_jsonl, iter_problems

    levels = _levels(steps, 1, MAX_OPS, "operations")  # the checker's most: a line `ttcl run` can load, made at once
    count = _int_option("--n", n, minimum=0)
    seed_value = _int_option("--seed", seed, minimum=0)  # random.Random(-n) draws what Random(n) does
    bound = _int_option("--max-value", max_value, minimum=9, digits=MAX_VALUE_DIGITS)  # what the checker reads
    _emit(iter_jsonl(iter_problems(count, levels, seed_value, bound) if count else []), output)


@data_app.command("expr")
def data_expr(
    steps: Annotated[str, typer.Option("--steps", metavar="N|A..B", help="Number of operations over all expressions: N or A..B (cycled evenly), 2..12.")] = "2..8",
    n: Annotated[str, typer.Option("--n", metavar=_INT, help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", metavar=_INT, help="Generator seed.")] = "0",
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the JSONL here (folders made; written whole or not at all) instead of stdout.", parser=named_path)] = None,
    style: Annotated[str, typer.Option("--style", help="How the answer writes a reduction: 'ops' (`12+7=19` per line), 'state' (the question rewritten with one operation reduced per line), 'trace' (both: `12+7=19 -> 19*3; 5*8`) or 'subst' (the sub-expression, its operands' values, its value: `(12+7)*3=19*3=57`).")] = "ops",
) -> None:
    """Expr problems: two or three expressions with precedence and parentheses, as JSONL.

    Every value stays in 0..99; each line is {"question", "answer" (one reduction per line, then '#### N,N'), "steps"}, on stdout."""
    from ttcl.runtime.tasks import expr

    if style not in expr.STYLES:
        raise ZooArgumentError("--style", f"one of {', '.join(expr.STYLES)}, got {style!r}")
    _write_task_jsonl(expr, steps, n, seed, output, "operations (one per expression, two expressions at least)",
                      style=style)


@data_app.command("countdown")
def data_countdown(
    steps: Annotated[str, typer.Option("--steps", metavar="N|A..B", help="Difficulty: the count of numbers given minus one, N or A..B (cycled evenly), 2..5.")] = "2..5",
    n: Annotated[str, typer.Option("--n", metavar=_INT, help="How many problems.")] = "500",
    seed: Annotated[str, typer.Option("--seed", metavar=_INT, help="Generator seed.")] = "0",
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the JSONL here (folders made; written whole or not at all) instead of stdout.", parser=named_path)] = None,
) -> None:
    """Countdown problems: reach a target from 3-6 numbers with + - * /, as JSONL.

    Each line is {"question", "answer" (one combination per line, then '#### EXPRESSION'), "steps"}, on stdout."""
    from ttcl.runtime.tasks import countdown

    _write_task_jsonl(countdown, steps, n, seed, output, "(the count of numbers given minus one: "
                      f"{countdown.MIN_STEPS + 1} to {countdown.MAX_STEPS + 1} numbers)")


def _levels(steps: str, lo: int, hi: int, what: str) -> list[int]:
    """`--steps N|A..B` as the task's levels in lo..hi, its ends checked before the range is built (`--steps
    3..1000000000000` ran out of memory: QA pass); `--steps 0` on expr names the task's range, not arith's."""
    from ttcl.runtime.tasks.arith import parse_steps_spec

    ends = [e.strip() for e in steps.split("..")]
    if all(e.isascii() and e.isdigit() for e in ends) and any(len(e) > 7 or not lo <= int(e) <= hi for e in ends):
        raise ZooArgumentError("--steps", f"{lo} to {hi:,} {what}, got {_shown(steps)}")
    try:
        levels = parse_steps_spec(steps)
    except ValueError as e:
        raise ZooArgumentError("--steps", str(e)) from e
    if levels[0] < lo or levels[-1] > hi:
        raise ZooArgumentError("--steps", f"{lo} to {hi:,} {what}, got {_shown(steps)}")
    return levels


def _write_task_jsonl(task: object, steps: str, n: str, seed: str, output: Path | None, what: str, **jsonl: str) -> None:
    """Validate the options and write `task`'s problems (a module with MIN_STEPS, MAX_STEPS,
    iter_problems and iter_jsonl, which takes `jsonl`) as JSONL on stdout or to `output`."""
    levels = _levels(steps, task.MIN_STEPS, task.MAX_STEPS, what)  # type: ignore[attr-defined]
    count = _int_option("--n", n, minimum=0)
    seed_value = _int_option("--seed", seed, minimum=0)  # random.Random(-n) draws what Random(n) does
    problems = task.iter_problems(count, levels, seed_value) if count else []  # type: ignore[attr-defined]
    _emit(task.iter_jsonl(problems, **jsonl), output)  # type: ignore[attr-defined]


def _emit(lines: Iterable[str], output: Path | None) -> None:
    """Write JSONL lines on stdout, or to `output` whole: into a temporary file beside it, renamed over it at the
    end, so a Ctrl-C or a full disk leaves the file as it was rather than cut short."""
    if output is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    from ttcl.commands.interrupts import terminating
    from ttcl.safeio import is_dir, make_parents, write_whole

    if is_dir(output):
        raise ZooArgumentError("--output", f"`{output}` is a folder; give a file path")
    count = 0

    def write(name: str) -> None:
        nonlocal count
        with open(name, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
                count += 1

    try:
        make_parents(output)
    except OSError as e:
        raise ZooArgumentError("--output", f"cannot write `{output}`: {e.strerror or e}") from e
    try:
        with terminating():
            write_whole(output, write)
    except OSError as e:  # a full disk, or `-o /dev/full`: not the value's fault
        raise TtclRuntimeError(f"{output}: error: cannot write the problems: {e.strerror or e}") from e
    typer.echo(f"wrote {count:,} problem{'s' if count != 1 else ''} to {output}", err=True)


def _did_you_mean(name: str, known: list[str]) -> str:
    """`; did you mean 'arith-direct'?` for a close name, case aside (`ARITH-DIRECT`, `expr-lk`), else ""."""
    import difflib

    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _shown(text: str) -> str:
    """An option's value as a message quotes it: a long one cut (a 5,000-digit seed was echoed whole)."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _int_option(option: str, text: str, minimum: int | None = None, digits: int = 1000) -> int:
    # Parsed here, not by typer, so a bad value is a one-line ttcl error, never a traceback.
    body = text.strip().lstrip("+-")
    if body.isascii() and body.isdigit() and len(body) > digits:
        raise ZooArgumentError(option, f"at most {digits:,} digits, got {len(body):,}")
    try:
        if not text.isascii():  # int() reads any script's digits (`٣`)
            raise ValueError
        value = int(text)
    except ValueError:
        raise ZooArgumentError(option, f"expected an integer, got {_shown(text)}") from None
    if minimum is not None and value < minimum:
        raise ZooArgumentError(option, f"must be >= {minimum}, got {value}")
    return value


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.add_typer(zoo_app, name="zoo")
    app.add_typer(data_app, name="data")
