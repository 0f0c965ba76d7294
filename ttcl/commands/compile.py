"""`ttcl check` and `ttcl graph`: the static budget report and the DAG drawing.

Exit codes of `ttcl check`: 0 when the worst case fits every budget (or no
budget is declared), 1 when it is over (the report names the dominating
nodes and the amount over per unit), 2 when the program is invalid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ttcl.commands.paths import named_path
from ttcl.compiler.budget_report import BudgetReport, LimitCheck
from ttcl.compiler.diagnostics import DiagnosticError
from ttcl.compiler.pipeline import Compiled, compile_program
from ttcl.errors import TtclError, TtclSemanticError
from ttcl.safeio import make_parents, same_file, where_written, write_whole

EXIT_FITS = 0
EXIT_OVER = 1
EXIT_INVALID = 2


class OptionError(TtclSemanticError):
    """A malformed command-line option value (exit 2)."""


def parse_model_overrides(items: list[str]) -> dict[str, str]:
    """`["policy=/models/x"]` -> `{"policy": "/models/x"}`; a name bound twice is refused, as `--set` does."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise OptionError(f"--model {item!r}: expected NAME=PATH, e.g. --model policy=/models/llama-1b")
        if name.strip() in out:
            raise OptionError(f"--model {name.strip()} is given twice ({out[name.strip()]!r} and {path.strip()!r}); "
                              "keep one")
        out[name.strip()] = path.strip()
    return out


def rebind_models(models: list[str], binds: list[str]) -> list[str]:
    """`--model` items with a series' own binds (`ttcl eval --compare/--greedy`) in place of the ones they rebind:
    a series may rebind a model every series gets, which is not the same name given twice."""
    names = {b.partition("=")[0].strip() for b in binds}
    return [m for m in models if m.partition("=")[0].strip() not in names] + list(binds)


def register_verifiers(items: list[str]) -> None:
    """`--verifier NAME=module:function`: the user's own checker, named on the command line only."""
    if not items:
        return
    from ttcl.compiler import checks_calls
    from ttcl.runtime.tasks import register_cli_checker

    for item in items:
        name, eq, target = item.partition("=")
        if not eq:
            raise OptionError(f"--verifier {item!r}: expected NAME=module:function, e.g. --verifier mine=my_checks:score")
        register_cli_checker(name.strip(), target.strip())
    checks_calls.registered_checkers.cache_clear()


VerifierOpt = Annotated[list[str] | None, typer.Option(
    "--verifier", help="Your own checker for check(\"NAME\"): --verifier NAME=module:function (repeatable; "
    "command line only, never from a program).")]


def compile_from_cli(program: Path, sets: list[str], models: list[str], max_input_tokens: int | None,
                     allow_remote: list[str] | None = None,
                     on_unreached: Callable[[str], None] | None = None) -> Compiled:
    """Parse the shared options and compile; every problem is a TtclError."""
    from ttcl.compiler.params import parse_set_overrides
    from ttcl.programs import resolve_program

    program = resolve_program(program)
    if max_input_tokens is not None and max_input_tokens < 1:  # as `text[<=0]` is refused
        raise OptionError(f"--max-input-tokens {max_input_tokens}: expected a positive number of tokens")
    return compile_program(
        program, overrides=parse_set_overrides(sets),
        model_overrides=pin_endpoints(parse_model_overrides(models), on_unreached),
        max_input_tokens=max_input_tokens, allow_remote=allowed_hosts(allow_remote),
    )


def pin_endpoints(overrides: dict[str, str], on_unreached: Callable[[str], None] | None = None) -> dict[str, str]:
    """A `--model NAME=URL` whose server serves one model that is on this machine names it (`?model=ID`),
    so `ttcl check` counts its FLOPs from the local config. Only the user's own refs are looked up."""
    from ttcl.compiler.endpoints import is_endpoint

    if not any(is_endpoint(v) for v in overrides.values()):
        return overrides
    from ttcl.runtime.backends.endpoint import pin_served_model

    return {k: pin_served_model(v, on_unreached) if is_endpoint(v) else v for k, v in overrides.items()}


def allowed_hosts(cli: list[str] | None) -> list[str]:
    """Hosts a program's endpoints may name: `--allow-remote HOST` plus `allow_remote` in the user's config. A URL
    or a `host:port` never matches a host, so it is refused rather than kept and ignored."""
    import ipaddress
    import re

    from ttcl.config import user_config

    for host in cli or []:
        try:
            ipaddress.ip_address(host.strip().strip("[]"))
            continue  # an address, IPv6 ones with their colons included
        except ValueError:
            pass
        m = re.fullmatch(r"(?:[a-z][a-z0-9+.-]*://)?(\[[^\]]*\]|[^/:\[\]]+)(?::\d+)?(?:/.*)?", host.strip(), re.I)
        if host.strip() and (m is None or m.group(0) != m.group(1)):
            shown = m.group(1).strip("[]") if m else None
            raise OptionError(f"--allow-remote {host!r}: expected a host name or address, not a URL or host:port"
                              + (f"; give --allow-remote {shown}" if shown else ""))
        if not re.fullmatch(r"[^\W_][\w.-]*", host.strip()) or not host.isprintable():
            # an empty name, a space, or bytes that are not text (a surrogate) were accepted and never matched (QA pass)
            raise OptionError(f"--allow-remote {ascii(host)}: expected a host name or address (letters, digits, "
                              "`.`, `-`), such as gpu-box.internal or 10.0.0.5")
    return [*(cli or []), *user_config().allow_remote]


def _num(x: float) -> str:
    return f"{int(x):,}" if x == int(x) and abs(x) < 1e15 else f"{x:.3e}"


def _flops(x: float) -> str:
    return "0" if x == 0 else f"{x:.3e}"


def _limit_text(lim: LimitCheck) -> str:
    fmt = _flops if lim.unit == "flops" else _num
    if lim.status == "run time":
        return f"{lim.unit} <= {fmt(lim.limit)} ({lim.note})"
    mark = "ok" if lim.status == "fits" else f"OVER by {fmt(lim.over_by)}"
    return f"{lim.unit} {fmt(lim.bound or 0)} / {fmt(lim.limit)} {mark}"


MAX_ROWS = 500  # nodes a report's table shows; the totals and the verdict count them all


def print_report(report: BudgetReport, console: Console) -> None:
    table = Table(title=f"{report.file}: worst case per item ({report.entry})", show_lines=False)
    for col, justify in (("line", "right"), ("node", "left"), ("op", "left"), ("calls", "right"),
                         ("prompt_tokens", "right"), ("gen_tokens", "right"), ("tokens", "right"), ("flops", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in report.rows[:MAX_ROWS]:
        b = row.bound
        # a node of an imported module: its file's name too (QA pass: a line number of another file, unnamed)
        line = str(row.line) if row.file == report.file else f"{Path(row.file).name}:{row.line}"
        table.add_row(line, row.node + (" ?" if row.guarded else ""), row.op, _num(b["calls"]),
                      _num(b["prompt_tokens"]), _num(b["gen_tokens"]), _num(b["tokens"]), _flops(b["flops"]))
    if len(report.rows) > MAX_ROWS:  # 43k rows took 25 s to print (QA pass); --json keeps every one
        table.add_row("", f"... {len(report.rows) - MAX_ROWS:,} more nodes (--json lists them all)", "", "", "", "",
                      "", "")
    t = report.total
    table.add_section()
    table.add_row("", "total", "", _num(t["calls"]), _num(t["prompt_tokens"]), _num(t["gen_tokens"]),
                  _num(t["tokens"]), _flops(t["flops"]), style="bold")
    console.print(table)
    if any(row.guarded for row in report.rows):  # said only where a row is marked (QA pass: always printed)
        console.print("? = guarded (runs only on some paths); totals take the dearer arm of each branch")
    console.print(f"FLOPs: {report.formula}")
    if report.params:
        shown = {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in report.params.items()}
        console.print("params: " + ", ".join(f"{k} = {v}" for k, v in shown.items()))  # as the program spells them
    for choice in report.auto:
        why = f" ({choice.param} = {choice.value + 1} would give {choice.next_over})" if choice.next_over else " (top of its range)"
        console.print(f"auto: {choice.param} = {choice.value} in {choice.low}..{choice.high}{why}")
    for scope in ("item", "pooled"):
        lims = [lim for lim in report.limits if lim.scope == scope]
        if lims:
            console.print(f"budget {'per item' if scope == 'item' else 'pooled'}: " + "; ".join(_limit_text(lim) for lim in lims))
    for sub in report.sub_budgets:
        console.print(f"sub-budget of {sub.call} (called at {sub.file}:{sub.line}, declared in {sub.module}): "
                      + "; ".join(_limit_text(lim) for lim in sub.limits))
    for warning in report.warnings:
        console.print(styled("[yellow]warning:[/] ", warning), highlight=False)
    _print_verdict(report, console)


def _print_verdict(report: BudgetReport, console: Console) -> None:
    if report.verdict == "fits":
        console.print(styled("[bold green]verdict: fits[/]", ": the worst case is within every per-item budget"))
        return
    if report.verdict == "no budget":
        if any(lim.scope == "item" for lim in report.limits):  # `seconds` alone: nothing a static bound can prove
            console.print("verdict: nothing to prove statically: the per-item budget sets only run-time limits")
        else:
            console.print("verdict: no per-item budget declared; nothing to prove")
        return
    console.print(styled("[bold red]verdict: OVER BUDGET[/]"))
    groups = [("", report.limits)] + [(f"sub-budget of {sub.call}: ", sub.limits) for sub in report.sub_budgets]
    for prefix, limits in groups:
        for lim in limits:
            if lim.status != "over":
                continue
            fmt = _flops if lim.unit == "flops" else _num
            console.print(f"  {prefix}{lim.unit}: bound {fmt(lim.bound or 0)} > limit {fmt(lim.limit)}, over by {fmt(lim.over_by)}")
            for dom in lim.dominating:
                console.print(f"    {dom.node} ({dom.op}, line {dom.line}): {fmt(dom.amount)} ({dom.share:.0%})")
    console.print("  fix: lower params with --set (e.g. n, max_tokens), or raise the budget")


@contextmanager
def errors_as_json(on: bool) -> Iterator[None]:
    """With --json, a TtclError raised within is printed on stdout as `ttcl check --json` prints diagnostics, and
    the command exits with its code; without, it goes on up (one line on stderr)."""
    try:
        yield
    except TtclError as e:
        if not on:
            raise
        typer.echo(json.dumps(diagnostics_json(e), indent=2))
        raise typer.Exit(e.exit_code) from None


def diagnostics_json(err: TtclError) -> dict[str, object]:
    if isinstance(err, DiagnosticError):
        diags = [d.model_dump(mode="json") | {"rendered": d.render(err.sources.get(d.span.file))} for d in err.diagnostics]
    else:  # an error with no place in a program (a missing file, a bad option): the same keys, span null
        diags = [{"span": None, "message": str(err), "expected": None, "hint": None, "severity": "error", "code": "E",
                  "rendered": str(err)}]
    return {"verdict": "invalid" if err.exit_code == EXIT_INVALID else "over", "exit_code": err.exit_code, "diagnostics": diags}


ProgramArg = Annotated[Path, typer.Argument(readable=False, help="The .ttc program: a path, or ttcl:NAME for a bundled one (`ttcl programs` lists them).", parser=named_path)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a param: --set n=64 (repeatable; bon.n=8 for an import).")]
ModelOpt = Annotated[list[str] | None, typer.Option("--model", help="Bind a model: --model policy=PATH or policy=http://HOST:PORT/v1 (repeatable).")]
MaxInputOpt = Annotated[int | None, typer.Option("--max-input-tokens", help="Length bound for inputs declared without one.")]
AllowRemoteOpt = Annotated[list[str] | None, typer.Option("--allow-remote", help="A host the program's own endpoints may name (repeatable).")]


def check(
    program: ProgramArg,
    set_: SetOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_input_tokens: MaxInputOpt = None,
    allow_remote: AllowRemoteOpt = None,
    verifier: VerifierOpt = None,
) -> None:
    """Prove that the worst case fits the budget: one row per node, totals, verdict (exit 0 fits, 1 over, 2 invalid)."""
    register_verifiers(verifier or [])
    try:
        compiled = compile_from_cli(program, set_ or [], model or [], max_input_tokens, allow_remote,
                                    on_unreached=lambda line: typer.echo(line, err=True))
    except TtclError as e:
        if not as_json:
            raise
        typer.echo(json.dumps(diagnostics_json(e), indent=2))
        raise typer.Exit(e.exit_code) from None
    report = compiled.report
    code = EXIT_OVER if report.verdict == "over" else EXIT_FITS
    if as_json:  # every --json answer carries `verdict` and `exit_code`, whatever the verdict
        typer.echo(json.dumps(report.model_dump(mode="json") | {"exit_code": code}, indent=2))
    else:
        print_report(report, Console(width=None if sys.stdout.isatty() else 200, markup=False))
    raise typer.Exit(code)


def graph(
    program: ProgramArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="dot | mermaid | png")] = "dot",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here (default: stdout; PROGRAM.png for png).", parser=named_path)] = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    max_input_tokens: MaxInputOpt = None,
    allow_remote: AllowRemoteOpt = None,
) -> None:
    """Draw the compiled DAG with each node's op, line and cost bound (guards drawn dashed)."""
    from ttcl.compiler.render import to_dot, to_mermaid, to_png

    if fmt not in ("dot", "mermaid", "png"):
        raise OptionError(f"--format {fmt!r}: expected dot, mermaid or png")
    compiled = compile_from_cli(program, set_ or [], model or [], max_input_tokens, allow_remote)
    dag, report = compiled.dag, compiled.report
    # every file the program reads, however it was named (QA pass: `ttcl graph v1:sc.ttc -o v1:sc.ttc` compared
    # against `sc.ttc`, and `ttcl:dvts` against `dvts`, and overwrote the program with its drawing)
    inputs = {"program": program_input(program)} | {f"imported file {name}": Path(name) for name in compiled.sources
                                                     if not name.startswith("ttcl:")}
    if fmt == "png":
        data = to_png(to_dot(dag, report))
        target = output or Path(str(program).removeprefix("ttcl:")).with_suffix(".png")
        refuse_input_as_output(target, "--output", inputs)
        _write(target, data)
        typer.echo(f"wrote {target}", err=True)
        return
    text = to_dot(dag, report) if fmt == "dot" else to_mermaid(dag, report)
    refuse_input_as_output(output, "--output", inputs)
    if output is None:
        sys.stdout.write(text)
    else:
        _write(output, text.encode())
        typer.echo(f"wrote {output}", err=True)


def report_console() -> Console:
    """The console a report table prints to: the terminal's width, 120 at least; a pipe or a file gets a table as
    wide as it needs, up to 240 columns (QA passes: node names and overlay cells were cut to `…` at 120)."""
    return Console(width=max(120, Console().width) if sys.stdout.isatty() else 240, markup=False)


def styled(markup: str, plain: str = "") -> Text:
    """`[bold]answer:[/] ` as styled text, then `plain` as it is. A report console reads no markup (`markup=False`):
    user text (a param's value, a path, an answer, a field's value) holding `[/]` was an internal error, and `[x]`
    vanished (QA pass)."""
    return Text.from_markup(markup) + Text(plain)


def program_input(program: Path | str) -> Path:
    """The file a program argument names: `ttcl:NAME` is the bundled file, anything else a path as written (a `:`
    in it included)."""
    from ttcl.programs import ProgramNameError, resolve_program

    try:
        return resolve_program(program)
    except ProgramNameError:  # said by the command that reads it
        return Path(str(program))


def refuse_input_as_output(output: Path | None, option: str, inputs: dict[str, Path | None]) -> None:
    """Exit 2 when the file `option` would write is one of the command's inputs (`ttcl graph p.ttc -o p.ttc`,
    `--trace data.jsonl --overwrite`): writing it would destroy what the user ran."""
    if output is None:
        return
    for what, path in inputs.items():
        if path is not None and str(path) != "-" and same_file(where_written(output), path):
            raise OptionError(f"{option} {output}: that is the {what} this command reads, and writing there would "
                              f"destroy it; give {option} another path")


def _write(path: Path, data: bytes) -> None:
    """Write an output file whole (a link followed, a device written through), making its folders as `--trace`
    does."""
    try:
        make_parents(path)
        write_whole(path, lambda name: Path(name).write_bytes(data))
    except OSError as e:
        raise OptionError(f"cannot write `{path}`: {e.strerror or e}") from e


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("graph")(graph)
