"""`ttcl serve`: serve strategies as an OpenAI-compatible endpoint (see `ttcl.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttcl.errors import (
    EXIT_INTERRUPTED,
    TtclBudgetError,
    TtclError,
    TtclRuntimeError,
    TtclSemanticError,
)


class ServeOptionError(TtclSemanticError):
    """A malformed `ttcl serve` option (exit 2)."""


def parse_presets(items: list[str]) -> list[tuple[str, list[str]]]:
    """`["fast:n=4,temperature=0.5"]` -> [("fast", ["n=4", "temperature=0.5"])]."""
    out = []
    for item in items:
        name, colon, sets = item.partition(":")
        binds = [b.strip() for b in sets.split(",") if b.strip()]
        if not colon or not name.strip() or not binds or any("=" not in b for b in binds):
            raise ServeOptionError(f"--preset {item!r}: expected NAME:PARAM=VALUE[,PARAM=VALUE], e.g. --preset fast:n=4")
        names = [b.split("=", 1)[0].strip() for b in binds]
        if twice := sorted({k for k in names if names.count(k) > 1}):
            raise ServeOptionError(f"--preset {item!r}: param {twice[0]} is given twice")
        out.append((name.strip(), binds))
    return out


def with_preset(sets: list[str], binds: list[str]) -> list[str]:
    """The params a preset's model id runs with: the `--set` values, each replaced by the preset's own of the same
    name (QA pass: `/v1/models` listed `n=8` and `n=2` for `--set n=8 --preset tiny:n=2`, which runs with n=2)."""
    merged = {b.split("=", 1)[0].strip(): b for b in sets}
    merged.update({b.split("=", 1)[0].strip(): b for b in binds})
    return list(merged.values())


def in_preset_words(message: str, name: str, binds: list[str]) -> str:
    """A compile error about a preset's own param in the words the user typed: `--preset fast:n=999`, not the
    `--set n=999` the preset is compiled as (QA pass)."""
    for b in binds:
        message = message.replace(f"`--set {b}`", f"`--preset {name}:{b}`")
    return message


def parse_key_budget(items: list[str]) -> dict[str, float]:
    units = ("calls", "prompt_tokens", "gen_tokens", "tokens", "flops")
    out: dict[str, float] = {}
    for item in items:
        unit, eq, value = item.partition("=")
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if not eq or unit not in units or limit <= 0:
            raise ServeOptionError(f"--key-budget {item!r}: expected UNIT=LIMIT with UNIT one of {', '.join(units)}")
        out[unit] = limit
    return out


def serve(
    programs: Annotated[list[Path], typer.Argument(help="The .ttc programs to serve, as paths or ttcl:NAME (each is a model id: its file stem).")],
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Listen port, 0..65535 (0: any free port).")] = 8000,
    model: Annotated[list[str] | None, typer.Option("--model", help="Bind a model: --model policy=PATH or URL (repeatable).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A param for every served program (repeatable).")] = None,
    preset: Annotated[list[str] | None, typer.Option("--preset", help="An extra model id STEM:NAME with params: --preset fast:n=4 (repeatable; applies to the first program).")] = None,
    allow_remote: Annotated[list[str] | None, typer.Option("--allow-remote", help="A host the programs' own endpoints may name.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    key_budget: Annotated[list[str] | None, typer.Option("--key-budget", help="A pooled budget per API key: --key-budget flops=1e12 (repeatable).")] = None,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", help="How long to gather concurrent requests into one batch.")] = 20.0,
) -> None:
    """Serve strategies as an OpenAI-compatible endpoint: /v1/chat/completions, /v1/completions, /v1/models, /health."""
    from ttcl.commands.compile import parse_model_overrides
    from ttcl.compiler.params import parse_set_overrides
    from ttcl.programs import resolve_program
    from ttcl.runtime.backends.endpoint_http import unseeded
    from ttcl.serve import ApiError, Server, Strategy
    from ttcl.serve_listen import bind, run_uvicorn

    if not programs:
        raise ServeOptionError("give at least one program to serve")
    if not host.strip():  # an unset $HOST: it bound every interface and printed http://:PORT/v1 (QA pass)
        raise ServeOptionError("--host '': an empty listen address; give one, as 127.0.0.1 (this machine only) or "
                               "0.0.0.0 (every interface)")
    if not 0 <= port <= 65535:
        raise ServeOptionError(f"--port {port}: expected a port in 0..65535 (0: any free port)")
    if not (batch_window_ms >= 0 and batch_window_ms != float("inf")):
        raise ServeOptionError(f"--batch-window-ms {batch_window_ms:g}: expected a number of milliseconds, 0 or more")
    parse_model_overrides(model or [])  # a malformed or repeated --model/--set fails as in `ttcl run` (exit 2)
    parse_set_overrides(set_ or [])
    strategies: list[Strategy] = []
    for p in programs:
        path = resolve_program(p)
        if not path.is_file():
            raise ServeOptionError(f"{p}: error: no such program file")
        strategies.append(Strategy(path.stem, path, list(set_ or [])))
    presets: dict[str, tuple[str, list[str]]] = {}
    for name, binds in parse_presets(preset or []):
        first = strategies[0]
        strategies.append(Strategy(f"{first.id}:{name}", first.program, with_preset(first.sets, binds)))
        presets[strategies[-1].id] = (name, binds)
    ids = [s.id for s in strategies]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ServeOptionError(f"two served strategies have the same id {', '.join(twice)} (file stem or preset name)")
    budgets = parse_key_budget(key_budget or [])
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:  # bound before the models load, so a port in use or a bad --host fails at once
        sockets = bind(host, port)
    except OSError as e:
        why = e.strerror or str(e)
        raise ServeOptionError(f"cannot listen on {where} (--host, --port): {why[:1].lower()}{why[1:]}") from None
    try:
        server = Server(strategies, models=list(model or []), allow_remote=allow_remote, device=device, dtype=dtype,
                        key_budget=budgets, batch_window_s=batch_window_ms / 1000)
        noted: set[str] = set()
        for s in strategies:  # compile and load every model up front: a bad program or model fails now, not per request
            try:
                for url, why in unseeded(server.admit(s.id, {}).runner.backends).items():  # said as `ttcl run` says
                    if url not in noted:  # it (QA pass: a seed's answers varied on SGLang, and serve said nothing)
                        noted.add(url)
                        typer.echo(f"ttcl serve: note: {why}; a request's `seed` does not fix its answer", err=True)
            except ApiError as e:  # a budget verdict (exit 1) or bad input (exit 2), not an internal error
                said = in_preset_words(e.message, *presets.get(s.id, ("", [])))
                raise (TtclBudgetError if e.code == "over_budget" else ServeOptionError)(said) from None
            except TtclError as e:
                if s.id not in presets or (said := in_preset_words(str(e), *presets[s.id])) == str(e):
                    raise
                raise ServeOptionError(said) from None
        server.serving = True
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    bound_port = sockets[0].getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/v1"

    def listening() -> None:
        typer.echo(f"ttcl serve: {', '.join(s.id for s in strategies)} on {url}", err=True)

    try:
        started = run_uvicorn(server, sockets, listening)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn finished the requests in flight and stopped
        typer.echo("ttcl serve: interrupted, stopped", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not started:
        raise TtclRuntimeError(f"the server on {where} did not start")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
