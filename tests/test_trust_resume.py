"""Ctrl-C and kill loses nothing, `--resume` gives the uninterrupted results, and a pooled budget
holds across a kill (issue 11). Real `ttcl run` subprocesses on the shipped models, every item in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shipped import available

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not all(available(m) for m in ("ttcl:arith-s", "ttcl:arith-revise", "ttcl:arith-orm")),
                                reason="needs the shipped arith models")
ITEMS = 24
POOL_CALLS = 100  # 24 items x (up to) 10 calls: about 176 unpooled; the pool stops items in the later rounds
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _program(tmp: Path, pooled: bool) -> Path:
    text = (ROOT / "programs" / "revision.ttc").read_text()
    if pooled:
        text = text.replace("budget per item {", f"budget pooled {{\n    calls <= {POOL_CALLS}\n}}\n\nbudget per item {{")
    path = tmp / ("pooled.ttc" if pooled else "per_item.ttc")
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    ds = tmp_path_factory.mktemp("resume") / "d.jsonl"
    ds.write_text("".join(line if line.endswith("\n") else line + "\n"
                          for line in iter_jsonl(make_problems(ITEMS, [2, 3], seed=11))))
    return ds


def _base(prog: Path, ds: Path, trace: Path) -> list[str]:
    return [sys.executable, "-m", "ttcl.cli", "run", str(prog), "--dataset", str(ds), "--set", "threshold=1.0",
            "--device", "cpu", "--trace", str(trace)]


def _results(path: Path) -> list[dict]:
    from ttcl.runtime.trace import read_trace

    t = read_trace(path)
    out = []
    for i in sorted(t.items):
        rec = t.items[i].model_dump()
        rec["cost"] = {k: v for k, v in rec["cost"].items() if k != "seconds"}
        rec.pop("seconds")
        out.append(rec)
    return out


def _interrupt_when(proc: subprocess.Popen, trace: Path, nodes: int, sig: int) -> None:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if trace.exists() and trace.read_text().count('"type": "node"') >= nodes:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)


def _pool_spent(path: Path) -> float:
    """Calls the pool was charged across every attempt: spent, plus grants a kill cut short."""
    from ttcl.runtime.trace import read_trace

    t = read_trace(path)
    assert t.spent is not None and t.cut_short is not None
    return t.spent.get("calls", 0.0) + t.cut_short.get("calls", 0.0)


def _check_interrupted_then_resume(prog: Path, ds: Path, tmp: Path, sig: int) -> tuple[list[dict], list[dict], Path]:
    full, part = tmp / "full.jsonl", tmp / "part.jsonl"
    subprocess.run(_base(prog, ds, full), check=True, capture_output=True, env=ENV, timeout=900)
    proc = subprocess.Popen(_base(prog, ds, part), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    _interrupt_when(proc, part, nodes=3 * ITEMS, sig=sig)
    _, err = proc.communicate(timeout=600)
    from ttcl.runtime.trace import read_trace

    cut = read_trace(part)
    assert len(cut.items) < ITEMS, "interrupted too late to test anything"
    assert sum(len(v) for v in cut.partial.values()) >= 2 * ITEMS  # finished steps reached the trace as they finished
    if sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGTERM (preemption), SIGHUP (a closed terminal)
        assert proc.returncode == 128 + sig, err  # are taken as Ctrl-C is
        assert ("Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name) + ": stopping after the running step" in err
        assert not cut.cut_short, cut.cut_short  # no grant left without its spend: the running step finished
        assert f"of {ITEMS} items finished and saved to {part}" in err
        assert "resume with: ttcl run " in err and err.rstrip().endswith("--resume")
        assert "Traceback" not in err
    resumed = subprocess.run([*_base(prog, ds, part), "--resume"], capture_output=True, env=ENV, timeout=900, text=True)
    assert resumed.returncode == 0, resumed.stderr
    return _results(full), _results(part), part


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_sigint_all_items_in_flight_pooled_resume_is_identical(sig: int, data: Path, tmp_path: Path) -> None:
    """Ctrl-C stops after the running step: nothing is lost, the message says how to resume, and the
    resumed run ends with exactly the uninterrupted results, even though the pool stops some items. SIGTERM
    likewise (QA pass: it ended the run at once, silent, its running batch lost and charged at worst case), and
    SIGHUP (QA pass: exit 129 at once, no word)."""
    full, resumed, part = _check_interrupted_then_resume(_program(tmp_path, pooled=True), data, tmp_path, sig)
    assert len(resumed) == ITEMS
    assert resumed == full
    stopped = sum(1 for r in full if r["status"] == "stopped")
    assert stopped > 0  # the pool really bound
    assert sum(r["cost"]["calls"] for r in resumed) <= POOL_CALLS
    assert _pool_spent(part) <= POOL_CALLS


@pytest.mark.slow
def test_sigkill_per_item_resume_is_identical(data: Path, tmp_path: Path) -> None:
    full, resumed, _ = _check_interrupted_then_resume(_program(tmp_path, pooled=False), data, tmp_path, signal.SIGKILL)
    assert resumed == full
    assert all(r["cost"]["calls"] <= 10 for r in resumed)


@pytest.mark.slow
def test_sigkill_pooled_never_exceeds_the_pool(data: Path, tmp_path: Path) -> None:
    """A kill mid-batch loses that batch's calls: `--resume` charges the pool their worst case, so the
    calls of every attempt together stay within the pool; no item is lost."""
    full, resumed, part = _check_interrupted_then_resume(_program(tmp_path, pooled=True), data, tmp_path, signal.SIGKILL)
    assert [r["item"] for r in resumed] == list(range(ITEMS))
    assert _pool_spent(part) <= POOL_CALLS
    assert sum(r["cost"]["calls"] for r in resumed) <= POOL_CALLS
    from ttcl.runtime.trace import read_trace

    lost = (read_trace(part).cut_short or {}).get("calls", 0.0)
    if lost == 0:  # the kill fell between two batches: nothing to pay twice
        assert resumed == full
    else:  # the lost batch was paid for, so the pool runs out earlier than without the kill
        assert sum(r["status"] == "stopped" for r in resumed) >= sum(r["status"] == "stopped" for r in full)
        assert sum(r["cost"]["calls"] for r in resumed) + lost <= POOL_CALLS


def test_progress_moves_before_any_item_finishes(data: Path) -> None:
    """With every item in flight, the progress counts node steps as they finish, long before the items do."""
    from ttcl.commands.run import _Progress
    from ttcl.compiler.pipeline import compile_program
    from ttcl.programs import resolve_program
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.runner import Runner, RunOptions

    compiled = compile_program(resolve_program("ttcl:revision"), overrides={"threshold": "1.0"})
    items = load_dataset(data, limit=6)
    seen: list[tuple[float, int]] = []

    class Watch(_Progress):
        def after_item(self, **kw: object) -> None:
            seen.append((self.progress.tasks[0].completed, self.done))
            super().after_item(**kw)

    with Watch(len(items), "items") as bar:
        Runner(compiled, RunOptions(device="cpu")).run(items, progress=bar)
        task = bar.progress.tasks[0]
        assert task.completed == task.total == len(items) * len(compiled.dag)
    assert seen[0][1] == 0 and seen[0][0] >= len(items) * 9  # nine steps of every item done before the first item ends
    assert json.dumps(bar.done) == str(len(items))


def test_a_resumed_lookahead_search_backs_up_the_same_scores(tmp_path: Path) -> None:
    """Candidates lost their lineage (and FLOPs) through a replay: resumed after its rollouts were scored,
    `backup` matched no rollout to its frontier, every score came out None, and 9 of 40 answers changed
    (QA pass on programs/lookahead.ttc). Cut here just before the first `backup`, as a kill would."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(line if line.endswith("\n") else line + "\n"
                          for line in iter_jsonl(make_problems(3, [3, 4], seed=5))))
    prog = ROOT / "programs" / "lookahead.ttc"
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    base = [sys.executable, "-m", "ttcl.cli", "run", str(prog), "--dataset", str(ds), "--device", "cpu", "--trace"]
    subprocess.run([*base, str(full)], check=True, capture_output=True, env=ENV, timeout=600)
    lines = full.read_text().splitlines(keepends=True)
    first = next(k for k, ln in enumerate(lines) if json.loads(ln).get("node_id") == "main/frontier.backup")
    cut.write_text("".join(lines[:first]))
    subprocess.run([*base, str(cut), "--resume"], check=True, capture_output=True, env=ENV, timeout=600)
    resumed, whole = _results(cut), _results(full)
    assert [{**r, "cost": None} for r in resumed] == [{**r, "cost": None} for r in whole]
    # a later step prefills again what the replayed steps had (docs/runtime.md): more, never less
    assert all(r["cost"][u] >= w["cost"][u] for r, w in zip(resumed, whole, strict=True) for u in w["cost"])

    def backups(path: Path) -> dict[int, list]:
        from ttcl.runtime.trace import read_trace

        return {i: [n.outputs for n in nodes if n.node_id == "main/frontier.backup"]
                for i, nodes in read_trace(path).nodes.items()}

    assert backups(cut) == backups(full)
    assert all(c["score"] is not None for outs in backups(cut).values() for out in outs for c in out)


def test_a_resume_with_other_inputs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--input` and `inputs=` are a dataset too: resuming a trace with other inputs returned the first run's
    answers as theirs, exit 0 and no model call (QA pass)."""
    import ttcl
    from ttcl.cli import main
    from ttcl.runtime.trace import TraceError

    trace = tmp_path / "t.jsonl"
    base = ["run", "ttcl:self_consistency", "--set", "n=2", "--device", "cpu", "--trace", str(trace)]
    assert main([*base, "--input", "1 +1"]) == 0
    assert main([*base, "--input", "9 *9", "--resume"]) == 2
    assert "cannot --resume: the inputs differ from those this trace was written with" in capsys.readouterr().err
    assert main([*base, "--input", "1 +1", "--resume"]) == 0  # the same input resumes

    kw = {"set": {"n": 2}, "device": "cpu", "trace": tmp_path / "api.jsonl"}
    first = ttcl.run("ttcl:self_consistency", inputs=["1 +1", "37 +12 *3"], **kw)
    with pytest.raises(TraceError, match="the inputs differ"):
        ttcl.run("ttcl:self_consistency", inputs=["9 *9", "5 -3", "4 +4"], resume=True, **kw)
    assert ttcl.run("ttcl:self_consistency", inputs=["1 +1", "37 +12 *3"], resume=True, **kw).answers == first.answers


def test_a_resume_with_another_value_of_an_imported_param_is_refused(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The header pinned only the entry module's params: a trace written with `--set wbon.temperature=0.1`
    resumed at 1.9 without a word, its answers a mix of both runs (QA pass). Imported params are pinned too."""
    import ttcl
    from ttcl.cli import main
    from ttcl.runtime.trace import TraceError

    trace = tmp_path / "t.jsonl"
    base = ["run", "ttcl:adaptive", "--input", "1 +1", "--set", "probe=2", "--device", "cpu", "--trace", str(trace)]
    assert main([*base, "--set", "wbon.temperature=0.1"]) == 0
    capsys.readouterr()
    assert main([*base, "--set", "wbon.temperature=1.9", "--resume"]) == 2
    assert ("cannot --resume: the set of params differs from the one this trace was written with (wbon.temperature "
            "0.1, now wbon.temperature 1.9)") in capsys.readouterr().err
    assert main([*base, "--set", "wbon.temperature=0.1", "--resume"]) == 0
    out = ttcl.run("ttcl:adaptive", inputs="1 +1", set={"probe": 2, "wbon.max_tokens": 100}, device="cpu",
                   trace=tmp_path / "api.jsonl")
    assert out.summary.header["params"]["wbon.max_tokens"] == 100
    assert out.summary.header["params"]["wbon.temperature"] == 0.8
    with pytest.raises(TraceError, match="wbon.max_tokens 100, now wbon.max_tokens 96"):
        ttcl.run("ttcl:adaptive", inputs="1 +1", set={"probe": 2, "wbon.max_tokens": 96}, device="cpu",
                 trace=tmp_path / "api.jsonl", resume=True)
    # `wbon.n` is no such param to pin: adaptive's one call gives `n = hard_n` itself
    with pytest.raises(ttcl.TtclError, match="`--set wbon.n=4` changes nothing"):
        ttcl.run("ttcl:adaptive", inputs="1 +1", set={"probe": 2, "wbon.n": 4}, device="cpu")


def test_a_ctrl_c_before_an_overwrite_begins_does_not_offer_the_earlier_run(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C while the models load (or a Ray cluster starts) under --overwrite said the earlier run's items
    were "finished and saved" and offered `--resume`, which would continue that run (left alone last stop)."""
    from ttcl.cli import main
    from ttcl.runtime import runner

    trace = tmp_path / "t.jsonl"
    args = ["run", str(_program(tmp_path, pooled=False)), "--dataset", str(data), "--limit", "2", "--set",
            "threshold=1.0", "--device", "cpu", "--trace", str(trace)]
    assert main(args) == 0
    before = trace.read_bytes()
    real_init = runner.Runner.__init__

    def ctrl_c_while_loading(self: object, *a: object, **kw: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered before the run opens its trace
        time.sleep(1)
        real_init(self, *a, **kw)

    monkeypatch.setattr(runner.Runner, "__init__", ctrl_c_while_loading)
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert trace.read_bytes() == before
    assert "interrupted before the run began" in err and "still holds the earlier run" in err, err
    assert "--resume" not in err and "saved" not in err


RESCORE = """\
ttcl 1
model policy = "ttcl:arith-s"
model reviser = "ttcl:arith-revise"
verifier orm = reward("ttcl:arith-orm")
strategy main(question: text[<=40]) -> answer {
    d = sample(policy, "{question}\\n", n = 2, max_tokens = 112, temperature = 0.8)
    s = verify(orm, d)
    r = revise(reviser, s, prompt = "{question}\\nattempt:\\n{c.text}\\nfix:\\n", max_tokens = 112)
    f = verify(orm, s + r)
    return vote(f, weight = score)
}
"""


def test_a_resume_reuses_the_scores_of_replayed_verifies(tmp_path: Path, data: Path) -> None:
    """`verify` scores a candidate once per verifier and item; a replayed `verify` did not refill that cache, so
    the resumed run paid the verifier again for candidates it had scored (QA pass: 74 calls over 200 items of
    revision.ttc; under a tight budget, items the run had finished were stopped). Cut just before `revise`."""
    from ttcl.cli import main

    prog = tmp_path / "rescore.ttc"
    prog.write_text(RESCORE)
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    base = ["run", str(prog), "--dataset", str(data), "--limit", "6", "--device", "cpu", "--trace"]
    assert main([*base, str(full)]) == 0
    lines = full.read_text().splitlines(keepends=True)
    first = next(k for k, ln in enumerate(lines) if json.loads(ln).get("node_id") == "main/r")
    cut.write_text("".join(lines[:first]))
    assert main([*base, str(cut), "--resume"]) == 0
    resumed, whole = _results(cut), _results(full)
    assert [{**r, "cost": None} for r in resumed] == [{**r, "cost": None} for r in whole]
    assert [r["cost"]["calls"] for r in resumed] == [w["cost"]["calls"] for w in whole]  # was 2 more per item

    def reused(path: Path) -> list[int]:
        from ttcl.runtime.trace import read_trace

        return [n.reused for nodes in read_trace(path).nodes.values() for n in nodes if n.node_id == "main/f"]

    assert reused(cut) == reused(full) and min(reused(full)) >= 2  # s's two candidates, scored once


def test_a_resume_accepts_the_same_program_however_its_path_is_spelled(tmp_path: Path, data: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The program's hash took in the path as typed: the same unchanged file resumed from another folder, by
    its absolute path, or as a copy, was refused as "the program differs" (QA pass). Its imports count by
    their place beside it; what they say still counts."""
    from ttcl.cli import main

    (tmp_path / "a").mkdir()
    prog = tmp_path / "a" / "adaptive.ttc"
    prog.write_text((ROOT / "programs" / "adaptive.ttc").read_text().replace('import "ttcl:weighted_best_of_n"',
                                                                             'import "weighted_best_of_n.ttc"'))
    (tmp_path / "a" / "weighted_best_of_n.ttc").write_text((ROOT / "programs" / "weighted_best_of_n.ttc").read_text())
    trace = tmp_path / "t.jsonl"
    monkeypatch.chdir(tmp_path)
    assert main(["run", "a/adaptive.ttc", "--dataset", str(data), "--limit", "2", "--trace", str(trace)]) == 0
    monkeypatch.chdir(tmp_path / "a")
    assert main(["run", str(prog), "--dataset", str(data), "--limit", "2", "--trace", str(trace), "--resume"]) == 0
    copy = tmp_path / "b"
    copy.mkdir()
    for f in ("adaptive.ttc", "weighted_best_of_n.ttc"):
        (copy / f).write_text((tmp_path / "a" / f).read_text())
    assert main(["run", str(copy / "adaptive.ttc"), "--dataset", str(data), "--limit", "2", "--trace", str(trace),
                 "--resume"]) == 0
    (copy / "weighted_best_of_n.ttc").write_text((copy / "weighted_best_of_n.ttc").read_text() + "\n# changed\n")
    assert main(["run", str(copy / "adaptive.ttc"), "--dataset", str(data), "--limit", "2", "--trace", str(trace),
                 "--resume"]) == 2
    # the refusal names the file that changed (left alone last stop: "the program differs", two hashes)
    assert ("cannot --resume: the program differs from the one this trace was written with (changed: "
            "weighted_best_of_n.ttc)") in capsys.readouterr().err


def _pool_of_40_calls(tmp_path: Path) -> Path:
    prog = tmp_path / "pool.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget pooled {\n    calls <= 40\n    on_exhaust = shrink\n}\n'
                    'strategy main(question: text[<=40]) -> answer {\n'
                    '    return vote(sample(policy, "{question}\\n", n = 4, max_tokens = 40, temperature = 0.8))\n}\n')
    return prog


def _cut_after_the_fourth_grant(trace: Path) -> None:
    """What a kill leaves once the second batch of two items has its grants and no spend."""
    lines = trace.read_text().splitlines(keepends=True)
    grants = [k for k, ln in enumerate(lines) if json.loads(ln)["type"] == "grant"]
    trace.write_text("".join(lines[: grants[3] + 1]))


def test_the_pooled_line_counts_what_a_kill_cut_short(tmp_path: Path, data: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed trace's grants with no spend (a kill cut their step short) are charged to the pool at their
    worst case; the `budget pooled` line left that out (QA pass: 191 items stopped for an exhausted pool beside
    `tokens 11,390 / 60,000`). Cut here after the second batch's grants, before their spend."""
    from ttcl.cli import main

    prog = _pool_of_40_calls(tmp_path)
    trace = tmp_path / "t.jsonl"
    run = ["run", str(prog), "--dataset", str(data), "--limit", "6", "--batch-items", "2", "--trace", str(trace)]
    assert main(run) == 0
    _cut_after_the_fourth_grant(trace)  # items 2 and 3 granted 4 calls each, nothing spent
    capsys.readouterr()
    assert main([*run, "--resume"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("budget pooled"))
    assert "(cut short by a kill 8 of it)" in line, line


def test_eval_says_when_a_kept_trace_had_pool_charged_for_a_kill(tmp_path: Path, data: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An eval rerun on traces a kill cut short had less of its pool and a lower accuracy, and said only "items
    stopped" (QA pass: 0.40 where an uninterrupted eval gave 0.50). The row now says what the pool was charged."""
    from ttcl.cli import main

    prog = _pool_of_40_calls(tmp_path)
    traces = tmp_path / "traces"
    ev = ["eval", str(prog), "--dataset", str(data), "--limit", "6", "--batch-items", "2", "--traces", str(traces)]
    assert main(ev) == 0
    assert "kill" not in capsys.readouterr().out
    (trace,) = traces.glob("*.jsonl")
    _cut_after_the_fourth_grant(trace)  # items 2 and 3 granted 4 calls each, nothing spent
    assert main([*ev, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["pool_beyond_items"] == {"calls": 8}
    assert main(ev) == 0
    assert "pool charged 8 calls for attempts a kill cut short" in capsys.readouterr().out


SIBLINGS = """ttcl 1
model policy = "ttcl:arith-s"
budget per item {
    flops <= 4.5e7
    on_exhaust = shrink
}
strategy main(question: text[<=40]) -> answer {
    probe = sample(policy, "{question}\\n", n = 2, max_tokens = 112, temperature = 0.8)
    more = sample(policy, "{question}\\n", n = 2, max_tokens = 112, temperature = 0.8)
    third = sample(policy, "{question}\\n", n = 8, max_tokens = 112, temperature = 0.8)
    return vote(probe + more + third)
}
"""


def test_a_kill_at_any_write_resumes_to_the_same_answers_and_costs(tmp_path: Path, data: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Three siblings of one step are reserved together; their spend and node records were written one by one, and
    a kill between two of them left one sibling recorded: on resume it was charged its actual beside the other's
    reservation, and the other, shrunk less, drew more samples (QA pass: 6 calls for 8, an answer changed). A
    step's records are now one write. Every point a kill can leave (each write's end) resumes to the run's results."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.runner import Runner, RunOptions
    from ttcl.runtime.trace import TraceWriter

    prog = tmp_path / "siblings.ttc"
    prog.write_text(SIBLINGS)
    compiled = compile_program(prog)
    items = load_dataset(data)[:3]
    full = tmp_path / "full.jsonl"
    ends: list[int] = []
    for name in ("write_progress", "write_item"):
        original = getattr(TraceWriter, name)

        def spy(self: TraceWriter, *args: object, _original=original) -> None:
            _original(self, *args)
            ends.append(self.path.stat().st_size)

        monkeypatch.setattr(TraceWriter, name, spy)
    Runner(compiled, RunOptions(device="cpu", trace=full, max_batch_items=1)).run(items)
    monkeypatch.undo()
    text = full.read_bytes()
    want = _results(full)
    assert any(r["cost"]["calls"] < 12 for r in want)  # `third` was shrunk: the siblings' reservations bind
    for k, end in enumerate(sorted(set(ends))[:-1]):
        cut = tmp_path / f"cut{k}.jsonl"
        cut.write_bytes(text[:end])
        Runner(compiled, RunOptions(device="cpu", trace=cut, resume=True, max_batch_items=1)).run(items)
        got = [{**r, "cost": {u: v for u, v in r["cost"].items() if u not in ("prompt_tokens", "flops")}}
               for r in _results(cut)]
        assert got == [{**r, "cost": {u: v for u, v in r["cost"].items() if u not in ("prompt_tokens", "flops")}}
                       for r in want], f"a kill after byte {end} of {len(text)}"
