"""`ttcl zoo train`'s build: the dependency graph read from the recipes, the parallel schedule,
bytes that do not depend on --jobs, and a failing model reported by name. Only `--quick`
models are trained here (30 steps each, in real worker processes)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from ttcl.zoo import build  # noqa: E402
from ttcl.zoo.family import (  # noqa: E402
    ALL,
    LM_RECIPES,
    VERIFIER_RECIPES,
    VERIFIER_SAMPLE_SPECS,
    cpu_capability,
    dependencies,
)
from ttcl.zoo.registry import EXPERIMENTAL, FAMILY, META_FILE, MODELS_DIR, REFERENCE_BUILDS  # noqa: E402


def _main(capfd, *args: str) -> tuple[int, str]:
    """The CLI in this process (its workers are real processes); exit code and stderr."""
    from ttcl.cli import main

    capfd.readouterr()
    code = main(list(args))
    return code, capfd.readouterr().err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the graph (no training)


def test_every_model_builds_after_what_its_recipe_reads() -> None:
    graph = build.recipe_graph(ALL, dependencies)
    order = build.topological_order(graph)
    assert sorted(order) == sorted(ALL)
    at = {n: i for i, n in enumerate(order)}
    for name, r in VERIFIER_RECIPES.items():  # a verifier after the policies it samples and its init_from
        needs = {*VERIFIER_SAMPLE_SPECS[name].policies, r.init_from}
        assert set(graph[name]) == needs
        assert all(at[d] < at[name] for d in needs)
    for name, r in LM_RECIPES.items():
        if r.init_from:
            assert r.init_from in graph[name] and at[r.init_from] < at[name]
    # expr-revise trains on the expr verifier's samples: it needs every policy they come from
    assert set(graph["expr-revise"]) == {"expr-s", "expr-m"}
    assert graph["arith-s"] == () and graph["arith-revise"] == ()  # arith revise data is synthetic


def test_a_cycle_or_an_unknown_dependency_is_an_error() -> None:
    with pytest.raises(build.ZooGraphError, match="dependency cycle: a -> b -> c -> a"):
        build.topological_order({"a": ("b",), "b": ("c",), "c": ("a",), "d": ()})
    with pytest.raises(build.ZooGraphError, match="'v' needs 'p9', which has no recipe"):
        build.recipe_graph(["p", "v"], lambda n: ("p9",) if n == "v" else ())
    with pytest.raises(build.ZooGraphError, match="'v' needs 'x'"):
        build.topological_order({"v": ("x",)})


def test_schedule_keeps_dependencies_and_the_worker_count() -> None:
    graph = build.subgraph(build.recipe_graph(ALL, dependencies), FAMILY)
    seconds = {n: 100.0 + 10 * i for i, n in enumerate(graph)}
    for jobs in (1, 2, 3):
        slots = build.simulate(graph, seconds, jobs)
        assert sorted(s.name for s in slots) == sorted(graph)
        end = {s.name: s.end for s in slots}
        for s in slots:
            assert all(end[d] <= s.start for d in graph[s.name])
        for t in {s.start for s in slots}:  # never more than `jobs` at once
            assert sum(s.start <= t < s.end for s in slots) <= jobs
    one = max(s.end for s in build.simulate(graph, seconds, 1))
    two = max(s.end for s in build.simulate(graph, seconds, 2))
    assert one == pytest.approx(sum(seconds.values()))
    assert max(sum(seconds.values()) / 2, max(build.chain_seconds(graph, seconds).values())) <= two < one


def test_recorded_seconds_prefer_the_last_whole_zoo_build(tmp_path: Path) -> None:
    """build_times.json (the last whole-zoo build) covers models of the default build; a shipped model
    it lacks (one shipped after that build) falls back to its card's wall_seconds, a recipe that is not
    shipped has no time, and a broken or missing file falls back to the cards."""
    times = json.loads(build.BUILD_TIMES.read_text())
    assert set(times["training_seconds"]) <= set(FAMILY) and "expr-s" in times["training_seconds"] and times["cpu"]
    got = build.recorded_seconds(["expr-s", "expr-s-narrow8-xlong", "expr-prm-long"])
    assert got["expr-s"] == times["training_seconds"]["expr-s"] and got["expr-prm-long"] is None
    assert got["expr-s-narrow8-xlong"] == times["training_seconds"]["expr-s-narrow8-xlong"]
    older = tmp_path / "older.json"  # a build from before expr-s-narrow8-xlong shipped
    older.write_text(json.dumps({"training_seconds": {"expr-s": 1.0}}))
    later = json.loads((MODELS_DIR / "expr-s-narrow8-xlong" / "ttcl_meta.json").read_text())["wall_seconds"]
    assert build.recorded_seconds(["expr-s", "expr-s-narrow8-xlong"], times=older) == {
        "expr-s": 1.0, "expr-s-narrow8-xlong": later}
    card = json.loads((MODELS_DIR / "expr-s" / "ttcl_meta.json").read_text())["wall_seconds"]
    (tmp_path / "t.json").write_text("{not json")
    for broken in (tmp_path / "t.json", tmp_path / "none.json", None):
        assert build.recorded_seconds(["expr-s"], times=broken) == {"expr-s": card}


def test_only_builds_the_named_models_and_names_what_is_missing(tmp_path: Path, capfd) -> None:
    graph = build.recipe_graph(ALL, dependencies)
    assert build.subgraph(graph, ["expr-prm", "expr-s"]) == {"expr-prm": ("expr-s",), "expr-s": ()}
    assert build.missing_outside(graph, ["expr-prm", "expr-s"], tmp_path) == {"expr-prm": ["expr-m"]}
    code, err = _main(capfd, "zoo", "train", "--only", "expr-prm", "--quick", "--out", str(tmp_path / "z"))
    assert code == 2
    assert "expr-prm needs expr-s, expr-m in" in err and "--only expr-s --only expr-m" in err
    assert "--shipped-deps" in err
    assert "Traceback" not in err
    assert not (tmp_path / "z").exists()
    # what only a card reads is not needed without one: countdown-check trains from countdown-s alone
    assert dependencies("countdown-check") == ("countdown-s", "countdown-m")
    assert dependencies("countdown-check", evaluate=False) == ("countdown-s",)
    code, err = _main(capfd, "zoo", "train", "--only", "countdown-check", "--no-eval", "--out", str(tmp_path / "z"))
    assert code == 2 and "countdown-check needs countdown-s in" in err, err


def test_shipped_deps_copies_what_the_model_reads_and_builds_it(tmp_path: Path, capfd, monkeypatch) -> None:
    """`--only NAME --shipped-deps`: the shipped models NAME reads are copied (byte for byte) into
    --out, and NAME is built on them; nothing else is trained."""
    monkeypatch.setenv("TTCL_ZOO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "z"
    code, err = _main(capfd, "zoo", "train", "--only", "expr-prm", "--quick", "--no-eval", "--shipped-deps",
                      "--jobs", "1", "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["expr-m", "expr-prm", "expr-s"]
    for dep in ("expr-s", "expr-m"):
        assert f"copied the shipped {dep}" in err
        assert _sha(out / dep / "model.safetensors") == _sha(MODELS_DIR / dep / "model.safetensors")
    assert (out / "expr-prm" / "model.safetensors").is_file()
    assert "[zoo] expr-s: started" not in err  # copied, not trained


def test_shipped_deps_refuses_a_half_written_directory(tmp_path: Path, capfd) -> None:
    (tmp_path / "z" / "expr-s").mkdir(parents=True)  # no config.json: a build that did not finish
    code, err = _main(capfd, "zoo", "train", "--only", "expr-prm", "--quick", "--shipped-deps", "--out", str(tmp_path / "z"))
    assert code == 2 and "holds no trained model" in err and "Traceback" not in err


def test_a_rebuild_is_compared_with_the_shipped_bytes(tmp_path: Path) -> None:
    """What `ttcl zoo train` prints after each model: byte-identical to the shipped file, or
    which two sha256 differ (on another processor every model differs; ttcl/zoo/README.md)."""
    shipped = build.weights_digest(MODELS_DIR / "arith-s")
    assert shipped == _sha(MODELS_DIR / "arith-s" / "model.safetensors")
    same = tmp_path / "same"
    same.mkdir()
    shutil.copyfile(MODELS_DIR / "arith-s" / "model.safetensors", same / "model.safetensors")
    ok, phrase = build.compare_with_shipped(same, shipped)
    assert ok is True and "byte-identical" in phrase and shipped[:8] in phrase
    other = tmp_path / "other"
    other.mkdir()
    data = bytearray((same / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (other / "model.safetensors").write_bytes(bytes(data))
    ok, phrase = build.compare_with_shipped(other, shipped)
    assert ok is False and "differs" in phrase and shipped[:8] in phrase and _sha(other / "model.safetensors")[:8] in phrase
    ok, phrase = build.compare_with_shipped(tmp_path / "empty", shipped)
    assert ok is False and "no model.safetensors" in phrase
    assert build.compare_with_shipped(same, None)[0] is None  # an experimental recipe: nothing shipped
    # what the two recorded build environments say
    env = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "cpu_capability": "AVX512"}
    _, phrase = build.compare_with_shipped(other, shipped, env, env | {"cpu": {"model_name": "x"}})
    assert "same torch, transformers and kernels, so another processor" in phrase
    _, phrase = build.compare_with_shipped(other, shipped, env, env | {"cpu_capability": "AVX2"})
    assert "other cpu_capability AVX512 there, AVX2 here" in phrase
    amd = {"vendor": "AuthenticAMD", "model_name": "AMD EPYC", "family_model": "25/17", "flags": ["avx2"]}
    intel = {"vendor": "GenuineIntel", "model_name": "Intel(R) Xeon(R) Processor", "family_model": "6/167", "flags": []}
    _, phrase = build.compare_with_shipped(other, shipped, env | {"cpu": amd},
                                           env | {"cpu": intel, "transformers": "5.25.0"})
    assert ("another processor (AuthenticAMD AMD EPYC, family/model 25/17 there, GenuineIntel Intel(R) Xeon(R) "
            "Processor, family/model 6/167 here;") in phrase and "other transformers 5.24.0 there, 5.25.0 here" in phrase
    _, phrase = build.compare_with_shipped(other, shipped, env | {"cpu": amd}, env | {"cpu": dict(amd)})
    assert "the same recorded processor" in phrase and "unexpected" in phrase
    _, phrase = build.compare_with_shipped(other, shipped, env | {"cpu": amd}, env | {"cpu": amd, "cpu_capability": "AVX2"})
    assert "another processor" not in phrase and "other cpu_capability AVX512 there, AVX2 here" in phrase
    _, phrase = build.compare_with_shipped(other, shipped, None, env)
    assert "records no build environment" in phrase
    assert build.weights_digest(tmp_path / "empty") is None


def test_a_build_records_the_processor_it_ran_on() -> None:
    from ttcl.zoo.family import build_environment, cpu_identity

    info = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_tile

processor\t: 1
vendor_id\t: SomethingElse
"""
    assert cpu_identity(info) == {"vendor": "GenuineIntel", "model_name": "Intel(R) Xeon(R) Platinum 8480+",
                                  "family_model": "6/143", "flags": ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]}
    assert set(cpu_identity("")) == {"processor"}  # no /proc/cpuinfo (macOS): what platform says
    env = build_environment()
    assert env["threads"] >= 1 and env["cpu"] and env["cpu_capability"]


def test_build_times_are_one_whole_build_of_the_default_family(tmp_path: Path) -> None:
    """`--plan` estimates from build_times.json: it must hold every model of the default build, and
    say which build it was; an unreadable file falls back to a plain pointer, never an error."""
    d = json.loads(build.BUILD_TIMES.read_text())
    assert set(d["training_seconds"]) == set(FAMILY) and d["models"] == len(FAMILY)
    assert all(v > 0 for v in d["training_seconds"].values())
    said = build.last_build()
    assert f"{len(FAMILY)} models on {d['cpu_short']} on {d['date']}" in said
    assert f"took {d['wall_seconds'] / 60:.1f} min of wall time with {d['jobs']} workers" in said
    broken = tmp_path / "times.json"
    broken.write_text("{}")
    assert build.last_build(broken) == "the last whole-zoo build"


def test_reference_builds_name_recipes_that_are_built_but_not_shipped(tmp_path: Path) -> None:
    """A recipe the package cannot hold (expr-l-grown: the weights are at the 25 MB cap) records the
    sha256 of a reference build, so that a rebuild can still say whether it came back byte-identical."""
    data = json.loads(REFERENCE_BUILDS.read_text())
    assert "expr-l-grown" in data["models"]
    for name, entry in data["models"].items():
        assert name in LM_RECIPES and name not in FAMILY and not (MODELS_DIR / name).exists()
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) and entry["build"]["torch"]
        assert build.reference_build(name) == (entry["sha256"], entry["build"])
    assert build.reference_build("expr-s") == (None, None)  # shipped: compared with its own file
    built = tmp_path / "m"
    built.mkdir()
    (built / "model.safetensors").write_bytes(b"weights")
    what = "the reference build (ttcl/zoo/reference_builds.json)"
    ok, phrase = build.compare_with_shipped(built, build.weights_digest(built), what=what)
    assert ok is True and phrase.startswith(f"byte-identical to {what}")
    ok, phrase = build.compare_with_shipped(built, "0" * 64, what=what)
    assert ok is False and phrase.startswith(f"differs from {what}")
    from typer.testing import CliRunner

    from ttcl.cli import app

    plan = CliRunner().invoke(app, ["zoo", "train", "--only", "expr-l-grown", "--plan"])
    assert plan.exit_code == 0 and "at least" not in plan.output  # its reference build's seconds
    # what it is grown from is not built here: the plan names it (it said "-"), marked as read from --out
    assert re.search(r"^expr-l-grown +expr-m\* ", plan.output, re.M) and "* not built by this command" in plan.output
    assert "or copied from the shipped models with --shipped-deps" in plan.output
    # with --shipped-deps the note says they are copied (QA pass: it offered --shipped-deps to a plan that had it)
    deps = CliRunner().invoke(app, ["zoo", "train", "--only", "expr-l-grown", "--plan", "--shipped-deps"])
    assert deps.exit_code == 0 and "copied from the shipped models into --out (--shipped-deps)" in deps.output
    assert "or copied from the shipped models with --shipped-deps" not in deps.output
    assert build.recorded_seconds(["expr-l-grown"])["expr-l-grown"] == data["models"]["expr-l-grown"]["training_seconds"]
    assert "--quick:" not in plan.output
    # --plan --quick: the full build's seconds, said to be so (it printed them as the quick build's estimate)
    quick = CliRunner().invoke(app, ["zoo", "train", "--only", "arith-s", "--plan", "--quick"])
    assert quick.exit_code == 0 and "--quick: the order above holds, but the times are the full build's" in quick.output
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert "built on request, not bundled: expr-l-grown" in listed.output
    assert "ttcl zoo train --only expr-l-grown --shipped-deps" in listed.output


def test_expr_l_is_experimental_built_only_when_named() -> None:
    assert "expr-l" in EXPERIMENTAL and "expr-l" not in FAMILY and "expr-l" in LM_RECIPES
    assert not (MODELS_DIR / "expr-l").exists()
    from typer.testing import CliRunner

    from ttcl.cli import app

    plan = CliRunner().invoke(app, ["zoo", "train", "--only", "expr-l", "--plan"])
    assert plan.exit_code == 0, plan.output
    assert plan.output.split("\n")[1].startswith("expr-l ")
    # no whole build timed expr-l: its 0 s make the estimate a lower bound, and the plan says so
    assert "at least 0.0 min with" in plan.output and "lower bound): expr-l;" in plan.output
    default = CliRunner().invoke(app, ["zoo", "train", "--plan", "--jobs", "2"])
    assert default.exit_code == 0 and not re.search(r"\bexpr-l\b", default.output)  # expr-lik is another model
    assert "2 worker(s)" in default.output and "at least" not in default.output
    assert "expr-l" in CliRunner().invoke(app, ["zoo", "train", "--help"]).output


# ------------------------------------------------------------------ real (quick) builds


def test_parallel_build_gives_the_bytes_of_a_one_at_a_time_build(tmp_path: Path, monkeypatch) -> None:
    """Two independent models in two workers at once, against the same two built one after the
    other by a one-worker build; each worker runs the CPU kernels its model shipped from."""
    monkeypatch.setenv("TTCL_ZOO_CACHE", str(tmp_path / "cache"))
    graph = build.subgraph(build.recipe_graph(ALL, dependencies), ["arith-m", "expr-s"])  # independent
    logs: list[str] = []
    done = build.build(graph, tmp_path / "par", jobs=2, is_quick=True, evaluate=False, log=logs.append)
    assert sorted(done) == sorted(graph)
    assert any("2 running" in line for line in logs)  # both ran at once
    for n in graph:
        one = build.subgraph(graph, [n])
        assert build.build(one, tmp_path / "seq", jobs=1, is_quick=True, evaluate=False, log=lambda s: None) == [n]
        assert _sha(tmp_path / "par" / n / "model.safetensors") == _sha(tmp_path / "seq" / n / "model.safetensors")
    assert _sha(tmp_path / "par" / "arith-m" / "model.safetensors") != _sha(tmp_path / "par" / "expr-s" / "model.safetensors")
    for n in graph:  # the weights are as readable as the config (transformers wrote them 0600; QA pass)
        d = tmp_path / "par" / n
        assert (d / "model.safetensors").stat().st_mode & 0o777 == (d / "config.json").stat().st_mode & 0o777
    if platform.machine() in ("x86_64", "AMD64"):
        built = {n: json.loads((tmp_path / "par" / n / META_FILE).read_text())["build"]["cpu_capability"] for n in graph}
        assert built["arith-m"] == cpu_capability("arith-m") == "AVX2"  # the kernels the shipped arith came from
        best = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                              capture_output=True, text=True, check=True,
                              env={k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}).stdout.strip()
        if best == "AVX512":
            assert built["expr-s"] == cpu_capability("expr-s") == "AVX512"


def test_the_build_log_drops_two_known_benign_transformers_warnings_and_keeps_the_rest() -> None:
    """transformers warns on every zoo model that no attention mask is passed (training is right-padded
    under a causal mask) and that the config names no loss type; the build's log drops those two only."""
    import logging

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, msg, None, None)

    assert not build._known_benign(rec("We strongly recommend passing in an `attention_mask` since your input_ids may be padded."))
    assert not build._known_benign(rec("`loss_type=None` was set in the config but it is unrecognized."))
    assert build._known_benign(rec("Some weights of GPT2ForTokenClassification were not initialized"))
    assert build._known_benign(rec("an `attention_mask` was passed"))


def _tunables() -> str | None:
    return os.environ.get("GLIBC_TUNABLES")


def test_workers_start_with_the_allocator_setting_and_a_users_own_is_kept(monkeypatch) -> None:
    """A build's workers (spawned processes) start with ALLOCATOR_TUNABLES, which glibc reads only at a
    process's start; the build's own environment is restored after it, and a GLIBC_TUNABLES the user set
    wins. (That the setting leaves the weights alone: bench/zoo_malloc.py.)"""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def in_a_worker() -> str | None:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            return ex.submit(_tunables).result()

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with build._worker_allocator():
        assert in_a_worker() == build.ALLOCATOR_TUNABLES
    assert "GLIBC_TUNABLES" not in os.environ
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    with build._worker_allocator():
        assert in_a_worker() == "glibc.malloc.arena_max=2"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"


def test_a_failing_model_is_named_and_stops_what_needs_it(tmp_path: Path, capfd, monkeypatch) -> None:
    """A real failure: the directory arith-m must be written to is a file. arith-orm, which
    needs arith-m, is not started; what it also needs (arith-l) is a real model in --out."""
    root = tmp_path / "z"
    root.mkdir()
    shutil.copytree(MODELS_DIR / "arith-l", root / "arith-l")
    (root / "arith-m").write_text("not a model directory")
    monkeypatch.setenv("TTCL_ZOO_CACHE", str(tmp_path / "cache"))
    code, err = _main(capfd, "zoo", "train", "--only", "arith-m", "--only", "arith-orm", "--quick", "--no-eval",
                      "--jobs", "2", "--out", str(root))
    assert code == 2, err
    assert "1 model(s) failed, 1 not built" in err
    assert "[zoo] arith-m: FAILED: FileExistsError" in err and "arith-m: FileExistsError" in err.split("not built")[1]
    assert "arith-orm: not built (needs arith-m, which failed)" in err
    assert "[zoo] arith-orm: started" not in err
    assert "Traceback" not in err and "We strongly recommend passing in an `attention_mask`" not in err
    assert not (root / "arith-orm").exists()


def test_an_out_that_cannot_be_written_fails_before_training(tmp_path: Path, capfd) -> None:
    """It failed after the training, with a raw NotADirectoryError (QA pass)."""
    afile = tmp_path / "afile"
    afile.write_text("")
    code, err = _main(capfd, "zoo", "train", "--only", "arith-s", "--quick", "--out", str(afile / "x"))
    assert code == 2 and "params total=" not in err and "Traceback" not in err
    assert f"error: invalid value for --out: cannot write models to '{afile / 'x'}': Not a directory" in err


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_what_is_written(tmp_path: Path) -> None:
    """Ctrl-C to the whole process group (as a terminal sends it) while two full-size models
    train: exit 130, a message saying what to rerun, no process of the build left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "TTCL_ZOO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    code = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); " \
           "from ttcl.cli import main; sys.exit(main(sys.argv[1:]))"  # SIGINT as in a terminal
    proc = subprocess.Popen([sys.executable, "-c", code, "zoo", "train", "--only", "arith-s", "--only", "arith-m",
                             "--no-eval", "--jobs", "2", "--out", str(tmp_path / "z")],
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.time() + 600
    while time.time() < deadline:  # until both workers train
        lines.append(proc.stderr.readline())
        if sum("params total=" in line for line in lines) == 2:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    assert "interrupted: built nothing" in rest
    # the command that finishes it repeats the options (it dropped them: a full build into ./ttcl-zoo, QA pass)
    assert f"to finish: ttcl zoo train --only arith-s --only arith-m --no-eval --out {tmp_path / 'z'} --jobs 2" in rest
    assert "Traceback" not in rest
    left = True
    for _ in range(30):  # nobody left in the build's process group (workers, resource tracker)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            left = False
            break
        time.sleep(0.5)
    assert not left
