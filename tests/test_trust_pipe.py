"""A closed stdout (`ttcl ... | head -1`) ends quietly with 141 (128 + SIGPIPE), as Unix tools do: not 1,
which is a budget verdict's code, no traceback and no "Exception ignored" at exit; a run's trace stays whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipped import available

from ttcl.errors import EXIT_IO, EXIT_PIPE

ROOT = Path(__file__).resolve().parent.parent


def _closed(*args: str, read_first_line: bool = False) -> tuple[int, str]:
    """Run `ttcl ARGS` with its stdout's reader gone (after one line, or at once); its exit code and stderr."""
    p = subprocess.Popen([sys.executable, "-m", "ttcl.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    if read_first_line:
        assert p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    return p.wait(timeout=300), err


def test_head_on_a_long_dataset_exits_141_quietly() -> None:
    code, err = _closed("data", "arith", "--n", "100000", read_first_line=True)
    assert code == EXIT_PIPE == 141, err
    assert err == ""


@pytest.mark.parametrize("args", [["programs"], ["check", "ttcl:self_consistency", "--json"]])
def test_output_buffered_until_exit_also_exits_141(args: list[str]) -> None:
    code, err = _closed(*args)
    assert code == 141 and "Exception ignored" not in err and "Traceback" not in err, err


@pytest.mark.skipif(not available("ttcl:arith-s"), reason="bundled arith-s not installed")
def test_a_run_with_a_trace_keeps_it_whole(tmp_path: Path) -> None:
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems
    from ttcl.runtime.trace import read_trace

    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(4, [2], seed=5))))
    trace = tmp_path / "t.jsonl"
    run = ["run", "ttcl:self_consistency", "--dataset", str(ds), "--set", "n=1", "--device", "cpu",
           "--trace", str(trace)]
    code, err = _closed(*run)
    assert code == 141 and "Traceback" not in err and "Exception ignored" not in err, err
    assert sorted(read_trace(trace).items) == [0, 1, 2, 3]
    done = subprocess.run([sys.executable, "-m", "ttcl.cli", *run, "--resume", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"] == 4


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["data", "countdown", "--n", "3", "--steps", "2"], ["programs"],
                                  ["check", "ttcl:self_consistency", "--json"], ["models"]])
def test_stdout_on_a_full_disk_is_one_line_and_exit_74(args: list[str]) -> None:
    """It was an internal error (exit 70: "a bug in ttcl") from whichever writer met the full disk."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "ttcl.cli", *args], stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=300)
    assert p.returncode == EXIT_IO == 74
    assert p.stderr == "error: cannot write the output to stdout: No space left on device\n"


def test_a_closed_stdout_is_refused_before_any_work() -> None:
    """`ttcl ... >&-` printed an internal error and then a raw traceback (exit 1)."""
    p = subprocess.run([sys.executable, "-m", "ttcl.cli", "data", "countdown", "--n", "3"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=lambda: os.close(1))
    assert p.returncode == 74
    assert p.stderr == "error: stdout is closed; redirect it to a file (or to /dev/null)\n"
