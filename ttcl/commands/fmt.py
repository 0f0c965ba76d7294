"""`ttcl fmt`: rewrite .ttc files in canonical form (compiler/fmt.py).

Exit codes: 0 when every file is (now) canonical; 1 with `--check` when some
file would change (for CI); 2 when some file cannot be read or parsed. The
other files are still processed, so one run reports every problem.
"""

from __future__ import annotations

import difflib
import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ttcl.compiler.ast import Span
from ttcl.compiler.diagnostics import Diagnostic, DiagnosticError, SyntaxDiagnosticError
from ttcl.compiler.fmt import format_source
from ttcl.compiler.loader import read_program
from ttcl.programs import ProgramNameError, is_bundled_ref, resolve_program
from ttcl.safeio import PROGRAM_LIMIT, is_dir

EXIT_OK = 0
EXIT_WOULD_CHANGE = 1
EXIT_INVALID = 2


def _expand(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for every .ttc file below it."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            found = [str(f) for f in sorted(path.rglob("*.ttc")) if not is_dir(f)]
            if not found:  # as ruff and black do: nothing to format is not an error, but it is said
                typer.echo(f"{p}: no .ttc files below this directory; nothing to format", err=True)
            out.extend(found)
        else:
            out.append(p)
    return out


def _diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"{name} (original)", tofile=f"{name} (formatted)")
    return "".join(lines)


def _read_stdin() -> str:
    """Standard input, at most a program's size limit."""
    text = sys.stdin.read(PROGRAM_LIMIT + 1)
    if len(text) > PROGRAM_LIMIT:
        raise SyntaxDiagnosticError([Diagnostic(span=Span(file="<stdin>", line=0, column=0),
                                                message=f"standard input is more than {PROGRAM_LIMIT:,} characters")])
    return text


def fmt_files(paths: list[str], check: bool = False, diff: bool = False) -> int:
    """Format each file (or stdin for `-`) and return the exit code."""
    status = EXIT_OK
    for name in _expand(paths):
        try:
            if is_bundled_ref(name) and not check and not diff:
                raise ProgramNameError(f"{name}: error: a bundled program is read-only; use --check or --diff, "
                                       "or copy it first (`ttcl programs --show NAME > mine.ttc`)")
            old = _read_stdin() if name == "-" else read_program(resolve_program(name))
            new = format_source(old, "<stdin>" if name == "-" else name)
            if old.partition("\n")[0].endswith("\r"):
                new = new.replace("\n", "\r\n")  # as black does: a file keeps the line ends of its first line
        except (DiagnosticError, ProgramNameError) as e:
            typer.echo(str(e), err=True)
            status = EXIT_INVALID
            continue
        if name == "-" and not check and not diff:
            sys.stdout.write(new)
            continue
        if new == old:
            continue
        if diff:
            sys.stdout.write(_diff(old, new, name))
        if check or diff:
            if check:
                typer.echo(f"would reformat {name}", err=True)
                status = max(status, EXIT_WOULD_CHANGE)
            continue
        try:
            _write(Path(name), new)
        except OSError as e:
            typer.echo(f"{name}: error: cannot write the formatted file: {e.strerror or e}", err=True)
            status = EXIT_INVALID
            continue
        typer.echo(f"reformatted {name}", err=True)
    return status


def _write(path: Path, text: str) -> None:
    """Replace `path` whole or not at all (a full disk or a kill mid-write never leaves half a program); a file
    the user may not write is refused, not replaced behind its permissions."""
    if not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is not writable")
    tmp = path.with_name(f".{path.name}.ttcl-fmt-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    """Add `ttcl fmt` to the CLI."""

    @app.command("fmt")
    def fmt_command(
        files: Annotated[list[str], typer.Argument(help="Files or directories to format; `-` reads stdin and writes stdout.")],
        check: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 and list the files that would change.")] = False,
        diff: Annotated[bool, typer.Option("--diff", help="Change nothing; print a unified diff of what would change.")] = False,
    ) -> None:
        """Rewrite .ttc files in canonical form (in place unless --check or --diff)."""
        code = fmt_files(files, check=check, diff=diff)
        if code:
            raise typer.Exit(code)
