"""Ctrl-C at any moment of a command, start-up included: exit 130 and the one word `interrupted`, never a
Python traceback (docs/trust.md). Real processes, real SIGINTs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "programs" / "revision.ttc"
SCRIPT = Path(sys.executable).parent / "ttcl"  # the console script of this environment


def _interrupt(cmd: list[str], after: float, stdin: int | None = None) -> tuple[int, str, str]:
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(after)
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def test_the_console_script_starts_the_guarded_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ttcl"] == "ttcl.__main__:main"


@pytest.mark.parametrize("how", ["python -m ttcl", "console script"])
def test_ctrl_c_during_start_up_prints_no_traceback(how: str) -> None:
    """It printed a traceback ending in KeyboardInterrupt while the CLI imported its modules (QA s36 #10: `timeout
    -s INT 0.5 ttcl check ...`). Interrupts are sent at fractions of an uninterrupted run's time, so some land in
    the imports on any machine; each either ends the command (130, `interrupted`) or comes after it finished."""
    if how == "console script" and not SCRIPT.exists():
        pytest.skip("no console script beside this interpreter")
    cmd = ([sys.executable, "-m", "ttcl"] if how == "python -m ttcl" else [str(SCRIPT)]) + ["check", str(PROGRAM)]
    start = time.monotonic()
    full = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    whole = time.monotonic() - start
    assert full.returncode == 0, full.stderr
    interrupted = 0
    for fraction in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
        code, out, err = _interrupt(cmd, max(0.08, whole * fraction))
        assert "Traceback" not in err, (fraction, err)
        if code == 0:  # it finished first
            assert out == full.stdout and err == "", (fraction, err)
        else:
            # 130, or killed by the SIGINT itself (-2 here), which a shell also reports as 130: seen once in CI,
            # after `interrupted` was printed, when the interrupt met the interpreter's exit
            assert code in (130, -signal.SIGINT) and err == "interrupted\n", (fraction, code, err)
            interrupted += 1
    assert interrupted >= 2  # the early ones land in the start-up on any machine


def test_ctrl_c_inside_a_command_says_interrupted() -> None:
    """A Ctrl-C in a command that does not handle it itself (here `fmt -` waiting on stdin) exited 130 silently:
    typer turns the KeyboardInterrupt into its own Exit(130)."""
    cmd = [sys.executable, "-m", "ttcl", "fmt", "-"]
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "ttcl", "fmt", "--help"], capture_output=True, cwd=ROOT, timeout=120)
    started = time.monotonic() - start
    for wait in (2 * started + 0.5, 4 * started + 2):  # waiting on stdin by then; a second try under heavy load
        code, _, err = _interrupt(cmd, wait, stdin=subprocess.PIPE)
        assert "Traceback" not in err
        assert code == 130
        if err == "interrupted\n":
            return
    raise AssertionError(f"a Ctrl-C in `fmt -` said {err!r}, not `interrupted`")


def test_a_ctrl_c_a_library_turned_into_its_own_error_is_still_an_interrupt() -> None:
    """CI once sent its SIGINT while pydantic built a schema: pydantic-core raised `SchemaError: Error building
    "tagged-union" validator: ... KeyboardInterrupt`, the KeyboardInterrupt kept only as text, and the guard
    printed the traceback. Here a real SIGINT reaches the real entry point while the stand-in for the CLI's
    imports turns it into such an error, its cause dropped; the command ends `interrupted`, exit 130."""
    code = (
        "import os, signal, sys, time, types\n"
        "import ttcl.__main__ as entry\n"
        "cli = types.ModuleType('ttcl.cli')\n"
        "def main():\n"
        "    caught = False\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(5)\n"
        "    except KeyboardInterrupt:\n"
        "        caught = True\n"
        "    if caught:  # raised outside the handler: no __context__, as from native code\n"
        "        raise RuntimeError('Error building validator: KeyboardInterrupt: ')\n"
        "cli.main = main\n"
        "sys.modules['ttcl.cli'] = cli\n"
        "sys.exit(entry.main())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 130 and p.stderr == "interrupted\n", (p.returncode, p.stderr)
