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
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ttcl.compiler.ast import Span
from ttcl.compiler.diagnostics import Diagnostic, DiagnosticError, SyntaxDiagnosticError
from ttcl.compiler.fmt import format_source
from ttcl.compiler.loader import decode_program, read_program
from ttcl.programs import ProgramNameError, is_bundled_ref, resolve_program
from ttcl.safeio import PROGRAM_LIMIT, is_dir

EXIT_OK = 0
EXIT_WOULD_CHANGE = 1
EXIT_INVALID = 2


def _expand(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for every .ttc file below it."""
    out: list[str] = []
    for p in paths:
        if not p:  # `ttcl fmt "$F"` with F empty formatted every program below the working directory (QA pass)
            raise SyntaxDiagnosticError([Diagnostic(span=Span(file="''", line=1, column=1),
                                                    message="an empty path names no file")])
        path = Path(p)
        if p != "-" and is_dir(path):  # safeio's: an OSError (a name too long) was exit 70 (QA pass)
            found, unreadable = _programs_below(path)
            if unreadable:  # rglob skipped them without a word, and `fmt --check` passed (QA pass)
                raise SyntaxDiagnosticError([Diagnostic(span=Span(file=d, line=1, column=1), message=f"cannot read "
                                                        f"this directory: {why}") for d, why in unreadable])
            if not found:  # as ruff and black do: nothing to format is not an error, but it is said
                typer.echo(f"{p}: no .ttc files below this directory; nothing to format", err=True)
            out.extend(found)
        else:
            out.append(p)
    return out


def _programs_below(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The .ttc files below `root`, sorted, and the folders below it that cannot be read, with why."""
    import os

    found: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for top, dirs, files in os.walk(root, onerror=lambda e: unreadable.append((str(e.filename), e.strerror))):
        dirs.sort()
        found.extend(os.path.join(top, f) for f in files if f.endswith(".ttc"))  # a folder named x.ttc is in dirs
    return sorted(found, key=lambda f: Path(f).parts), unreadable


def _diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"{name} (original)", tofile=f"{name} (formatted)")
    return "".join(lines)


def _read_stdin() -> str:
    """Standard input, at most a program's size limit."""
    if sys.stdin is None:  # started with stdin closed (`<&-`): exit 70 before (QA pass)
        raise SyntaxDiagnosticError([Diagnostic(span=Span(file="<stdin>", line=1, column=1),
                                                message="this process has no standard input to read a program from")])
    raw = getattr(sys.stdin, "buffer", None)  # bytes, decoded as a file's are (a test runner's stdin: text only)
    data = raw.read(PROGRAM_LIMIT + 1) if raw is not None else sys.stdin.read(PROGRAM_LIMIT + 1).encode("utf-8")
    if len(data) > PROGRAM_LIMIT:
        raise SyntaxDiagnosticError([Diagnostic(span=Span(file="<stdin>", line=1, column=1),
                                                message=f"standard input is more than {PROGRAM_LIMIT:,} bytes")])
    return decode_program(data, "<stdin>")


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
    """Write `text` to the file `path` names, which stays the same file: a symlink is followed and stays a link
    (the file it points to is formatted), a hard-linked file keeps its inode, so every name sees the new text,
    and the mode is kept. A file the user may not write is refused, not replaced behind its permissions.

    A file with one name is replaced whole or not at all (a temporary file beside it, renamed over it): a full
    disk or a kill mid-write never leaves half a program. A rename would give a hard-linked file a new inode, so
    its other names would keep the old text: it is rewritten in place instead, after its old text is saved beside
    it as `NAME.ttcl-fmt-backup` (removed once the write is done), so a crash mid-write loses nothing."""
    real = path.resolve(strict=True)
    if not os.access(real, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is not writable")
    st = real.stat()
    data = text.encode("utf-8")
    if st.st_nlink > 1:
        _write_in_place(real, data)
        return
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".ttcl-fmt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, real)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_in_place(real: Path, data: bytes) -> None:
    """Overwrite a hard-linked file's content (same inode), its old content saved beside it until the new one is
    on disk; a write that fails (a full disk, Ctrl-C) puts the old content back."""
    backup = real.with_name(f"{real.name}.ttcl-fmt-backup")
    old = real.read_bytes()
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never through a planted link
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"`{backup}` exists (left by an interrupted `ttcl fmt`?); "
                              "compare it with the file, then remove it") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(old)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        backup.unlink(missing_ok=True)
        raise
    try:
        _overwrite(real, data)
    except BaseException as e:
        try:
            _overwrite(real, old)
        except OSError:
            raise OSError(getattr(e, "errno", None) or errno.EIO,
                          f"{getattr(e, 'strerror', None) or e}; its old text is saved in `{backup}`") from e
        backup.unlink(missing_ok=True)
        raise
    backup.unlink()


def _overwrite(real: Path, data: bytes) -> None:
    with open(real, "r+b") as f:  # "r+": the old text is cut only after the new text is written over it
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


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
