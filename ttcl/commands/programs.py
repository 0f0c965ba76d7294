"""`ttcl programs`: the bundled strategy programs, usable as `ttcl:NAME` wherever a program path goes."""

from __future__ import annotations

from typing import Annotated

import typer


def programs(
    show: Annotated[str | None, typer.Option("--show", help="Print one program's source (NAME or ttcl:NAME), e.g. to copy and edit it.")] = None,
) -> None:
    """List the bundled programs (run one with `ttcl run ttcl:NAME --input ...`)."""
    from ttcl.programs import PREFIX, bundled_names, resolve_program, summary

    if show is not None:
        path = resolve_program(show if show.startswith(PREFIX) else PREFIX + show)
        typer.echo(path.read_text(encoding="utf-8"), nl=False)
        return
    names = bundled_names()
    width = max(len(PREFIX + n) for n in names)
    for name in names:
        typer.echo(f"{PREFIX + name:<{width}}  {summary(name)}")
    typer.echo(f"\nuse: ttcl check {PREFIX}{names[-1]}   (ttcl programs --show NAME prints the source)")


def register(app: typer.Typer) -> None:
    app.command("programs")(programs)
