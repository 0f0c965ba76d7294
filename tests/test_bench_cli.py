"""The bench scripts refuse bad input in one line, exit 2, and print no traceback (QA pass on bench/).

Only cases that fail at argument parsing or before any model is loaded: each takes a few seconds at
most (the slowest import torch first). The seed-list refusals of `ttcl.zoo.testbed.seed_list` are
tested in test_expr_zoo.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _bench_cli():
    spec = importlib.util.spec_from_file_location("bench_cli", BENCH / "cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _bench_cli()


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


# (script, arguments, what the error line says): refused by argparse, before any work
USAGE = [
    ("bench_check.py", ["--runs", "0"], "argument --runs: expected a positive integer, got 0"),
    ("bench_check.py", ["--blocks", "-3"], "argument --blocks: expected a positive integer, got -3"),
    ("zoo_malloc.py", ["--rounds", "-1"], "argument --rounds: expected a positive integer, got -1"),
    ("zoo_malloc.py", ["--recipes", "expr-s:abc"], "--recipes: 'expr-s:abc': expected NAME:STEPS"),
    ("zoo_malloc.py", ["--recipes", "nope:10"], "--recipes: 'nope' is not a zoo recipe"),
    ("bench_ray.py", ["--items", "-5", "--skip-overhead"], "argument --items: expected a positive integer, got -5"),
    ("bench_ray.py", ["--items", "5"], "--items 5: expected at least --record (16)"),
    ("bench_serve.py", ["--clients", "-1"], "argument --clients: expected a positive integer, got -1"),
    ("bench_endpoint.py", ["--vllm-python", "/nonexistent/python"], "--vllm-python /nonexistent/python: not an executable"),
    ("bench_generate.py", ["--only", "z"], "--only 'z': expected letters among a, b, c, d"),
    ("bench_generate.py", ["--items", "-5", "--only", "a"], "argument --items: expected a positive integer, got -5"),
    ("bench_run.py", ["--naive-items", "-1"], "argument --naive-items: expected a non-negative integer, got -1"),
    ("bench_run.py", ["--steps", "2,x"], "argument --steps: expected comma-separated positive integers"),
    ("testbed_policy.py", ["--per-level", "-5"], "argument --per-level: expected a positive integer, got -5"),
    ("gate_a_replication.py", ["--seeds", "777001,777001"], "--seeds: seed 777001 is given twice"),
    ("testbed_gates.py", ["--seed", "1,,2"], "--seed: an empty element in '1,,2'"),
    ("training_variance.py", ["--seeds", "1,,x", "--out", "unused"], "--seeds: expected comma-separated integers"),
    ("bench_generate.py", ["--temperature", "-1"], "argument --temperature: expected a temperature (a number, 0 or more), got -1"),
    ("testbed_gates.py", ["--temperature", "nan"], "argument --temperature: expected a temperature (a number, 0 or more), got nan"),
    ("testbed_policy.py", ["--seed", "-2"], "argument --seed: expected a non-negative integer, got -2"),
]


@pytest.mark.parametrize(("script", "args", "says"), USAGE, ids=[f"{s} {' '.join(a)}" for s, a, _ in USAGE])
def test_a_bad_argument_is_a_usage_error(script: str, args: list[str], says: str) -> None:
    p = _run(script, *args)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert lines[0].startswith(f"usage: {script}")
    assert lines[-1].startswith(f"{script}: error: {says}"), lines[-1]


# refused by main_guarded: a TtclError's message in one line, `error: ...`, before any model is loaded
ERRORS = [
    ("testbed_policy.py", ["--policy", "ttcl:nope", "--per-level", "2"], "error: unknown bundled model 'ttcl:nope'"),
    ("zoo_table.py", ["--models", "nope"], "error: unknown bundled model 'ttcl:nope'"),
]


@pytest.mark.parametrize(("script", "args", "says"), ERRORS, ids=[f"{s} {' '.join(a)}" for s, a, _ in ERRORS])
def test_bad_input_found_later_is_one_error_line(script: str, args: list[str], says: str) -> None:
    p = _run(script, *args)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), p.stderr


def test_the_library_module_is_not_a_script() -> None:
    p = _run("baselines.py")
    assert p.returncode == 2
    assert p.stderr.splitlines() == ["error: bench/baselines.py is a library of bench_generate.py and bench_run.py, "
                                     "not a script"]


@pytest.mark.parametrize(("fn", "text", "value"), [
    (cli.positive_int, "1", 1), (cli.positive_int, "64", 64), (cli.nonnegative_int, "0", 0),
    (cli.positive_int_list, "2,3,4", [2, 3, 4]), (cli.positive_int_list, "5", [5]),
    (cli.temperature, "0", 0.0), (cli.temperature, "0.7", 0.7),
])
def test_count_types_read_what_they_should(fn, text: str, value) -> None:
    assert fn(text) == value


@pytest.mark.parametrize(("fn", "text", "message"), [
    (cli.positive_int, "0", "expected a positive integer, got 0"),
    (cli.positive_int, "-5", "expected a positive integer, got -5"),
    (cli.positive_int, "abc", "expected a positive integer, got 'abc'"),
    (cli.nonnegative_int, "-1", "expected a non-negative integer, got -1"),
    (cli.positive_int_list, "2,,3", "expected comma-separated positive integers"),
    (cli.positive_int_list, "0,1", "expected comma-separated positive integers"),
    (cli.positive_int_list, "", "expected comma-separated positive integers"),
    (cli.temperature, "-0.5", "expected a temperature"), (cli.temperature, "inf", "expected a temperature"),
    (cli.temperature, "hot", "expected a temperature"),
])
def test_count_types_refuse_with_a_message(fn, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        fn(text)


def test_main_guarded_turns_a_ttcl_error_into_one_line(capsys) -> None:
    from ttcl.errors import TtclRuntimeError

    def main() -> int:
        raise TtclRuntimeError("no such model")

    with pytest.raises(SystemExit) as e:
        cli.main_guarded(main)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: no such model\n"


def test_main_guarded_ends_a_ctrl_c_quietly(capsys) -> None:
    def main() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        cli.main_guarded(main)
    assert e.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(("returned", "code"), [(None, 0), (0, 0), (1, 1), (2, 2)])
def test_main_guarded_exits_with_what_main_returns(returned, code: int) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main_guarded(lambda: returned)
    assert e.value.code == code
