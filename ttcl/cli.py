"""The `ttcl` command line.

Each area registers its commands from its own module in `ttcl.commands`,
so the compiler, runtime and zoo commands evolve independently. Every
`TtclError` is printed as a diagnostic with its exit code; a Python
traceback means a bug in ttcl, never bad input.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ttcl import __version__
from ttcl.errors import TtclError

app = typer.Typer(
    name="ttcl",
    help="ttcl: the test-time compute language. Check, run and evaluate inference-time strategies under a budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that define `register(app)`; a missing one is skipped so a partial
# checkout still gives a working CLI.
_COMMAND_MODULES = ("compile", "fmt", "run", "eval", "zoo", "programs", "serve")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ttcl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """ttcl: the test-time compute language."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ttcl.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"ttcl.commands.{name}":
                continue
            raise
        module.register(app)


_register_all()


def _ray_option(argv: list[str]) -> list[str]:
    """`--ray` alone means a local cluster, `--ray ADDRESS` joins one: click has no optional-value option."""
    out: list[str] = []
    k = 0
    while k < len(argv):
        tok = argv[k]
        if tok == "--ray":
            nxt = argv[k + 1] if k + 1 < len(argv) else ""
            if nxt and not nxt.startswith("-") and (":" in nxt or nxt in ("auto", "local")):
                out.append(f"--ray={nxt}")
                k += 2
                continue
            out.append("--ray=local")
        else:
            out.append(tok)
        k += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning ttcl errors into clean messages and exit codes."""
    try:
        result = app(args=_ray_option(sys.argv[1:] if argv is None else list(argv)), standalone_mode=False)
        if isinstance(result, int):  # a command's `raise typer.Exit(code)` comes back as its code here
            return result
    except TtclError as e:
        typer.echo(str(e), err=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors come through here
        import click

        # typer >= 0.20 raises its vendored click's exceptions (`typer._click`), not `click`'s.
        if isinstance(e, click.ClickException) or any(c.__name__ == "ClickException" for c in type(e).__mro__):
            e.show()  # type: ignore[attr-defined]
            return e.exit_code  # type: ignore[attr-defined]
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
