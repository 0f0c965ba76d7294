"""A wide run on a real local Ray cluster: 2 worker actors, the bundled models, one pooled budget.

One cluster (2 CPUs, bound to 127.0.0.1, usage stats off) serves the whole
module and is shut down at its end; the worker actors are reused from test
to test, as `ttcl eval` reuses them across a sweep. Faults (a Ctrl-C, a
worker or the accountant killed mid-run) are test_distributed_faults.py's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from ttcl.cli import main  # noqa: E402
from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.runtime import distributed  # noqa: E402
from ttcl.runtime.dataset import load_dataset  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions  # noqa: E402
from ttcl.runtime.trace import read_trace  # noqa: E402

pytestmark = pytest.mark.ray

ROOT = Path(__file__).parent.parent
ADAPTIVE = ROOT / "programs" / "adaptive.ttc"

POOLED = """\
ttcl 1
model policy = "ttcl:arith-s"
param n: int = 4 in 1..64
budget per item { calls <= 4; gen_tokens <= 400 }
budget pooled { calls <= 22; on_exhaust = shrink }
strategy main(question: text[<=40]) -> answer {
    paths = sample(policy, "{question}\\n", n = n, max_tokens = 40, temperature = 0.8)
    return vote(paths)
}
"""


@pytest.fixture(scope="module")
def cluster() -> Any:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started = distributed.connect(num_cpus=2)
    try:
        yield ray
    finally:
        if started:
            distributed.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    root = tmp_path_factory.mktemp("wide")
    ds = root / "arith.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(8, [1, 2, 3, 4], 3))))
    prog = root / "pooled.ttc"
    prog.write_text(POOLED)
    return {"root": root, "ds": ds, "pooled": prog}


def _static(cost: dict[str, float]) -> dict[str, float]:
    return {u: v for u, v in cost.items() if u != "seconds"}  # wall time is the one thing allowed to differ


def _answers(summary: Any) -> list[tuple[Any, ...]]:
    return [(r["item"], r["answer"], r["status"], _static(r["cost"])) for r in summary.results]


@pytest.fixture(scope="module")
def reference(data: dict[str, Path]) -> Any:
    """adaptive.ttc on the dataset in this process, without Ray."""
    compiled = compile_program(ADAPTIVE)
    return Runner(compiled, RunOptions(device="cpu")).run(load_dataset(data["ds"]))


def test_eval_with_ray_matches_eval_without(cluster: Any, data: dict[str, Path], reference: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The README's command: `ttcl eval programs/adaptive.ttc --dataset arith.jsonl --ray --workers 2`."""
    rows = []
    for extra in ([], ["--ray", "--workers", "2"]):
        assert main(["eval", str(ADAPTIVE), "--dataset", str(data["ds"]), "--device", "cpu", "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        row = {k: v for k, v in out["rows"][0].items() if k not in ("wall_seconds", "seconds_per_item")}
        for it in row.get("item_rows", []):  # per-item rows carry each item's wall seconds
            it["cost"].pop("seconds", None)
        rows.append(row)
    assert rows[0] == rows[1]
    assert rows[0]["accuracy"] == reference.accuracy


def test_one_and_two_workers_give_the_same_answers_under_a_pooled_budget(cluster: Any, data: dict[str, Path]) -> None:
    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    runs = [distributed.RayRunner(compiled, RunOptions(device="cpu"), workers=w, shards=2).run(items) for w in (1, 2)]
    assert _answers(runs[0]) == _answers(runs[1])
    for s in runs:
        assert s.actual_total["calls"] <= 22  # the pool holds across the shards
        assert s.distributed is not None and s.distributed["spent"]["calls"] == s.actual_total["calls"]
    assert any(row.shrunk for row in runs[0].rows)  # the pool binds: the shards' fixed quotas decided it


def test_allocating_splits_run_wide_within_each_shards_quota(cluster: Any, data: dict[str, Path]) -> None:
    """`split = even` gives each item pool/N on one machine and on two workers alike; `need` ranks within shards."""
    even = data["root"] / "even.ttc"
    even.write_text(POOLED.replace("on_exhaust = shrink }", "on_exhaust = shrink; split = even }"))
    items = load_dataset(data["ds"])
    compiled = compile_program(even)
    one = Runner(compiled, RunOptions(device="cpu")).run(items)
    wide = distributed.RayRunner(compiled, RunOptions(device="cpu"), workers=2, shards=2).run(items)
    assert _answers(wide) == _answers(one)
    assert any(row.shrunk for row in one.rows)  # the even share binds
    need = compile_program(ROOT / "programs" / "pooled_adaptive.ttc", overrides={"probe": "2", "more": "2"})
    s = distributed.RayRunner(need, RunOptions(device="cpu"), workers=2, shards=2).run(items)
    assert len(s.results) == len(items)
    assert s.actual_total["flops"] <= 3e9


def test_even_shares_and_random_streams_follow_the_whole_run_across_shards_and_on_a_resume(
        cluster: Any, data: dict[str, Path]) -> None:
    """QA pass: a question repeated in two shards drew the same samples in both (each shard counted the repeats
    of a question among its own items: 6 of 30 answers differed from one machine), and a wide `--resume` split
    its shard's leftover among the items left (bigger caps: every resumed item differed)."""
    even = data["root"] / "even_dup.ttc"
    even.write_text(POOLED.replace("on_exhaust = shrink }", "on_exhaust = shrink; split = even }"))
    dup = data["root"] / "dup.jsonl"
    dup.write_text("".join(line + "\n" + line + "\n" for line in data["ds"].read_text().splitlines()))
    items = load_dataset(dup)  # each question twice, side by side: shard_of is round-robin, so in both shards
    compiled = compile_program(even)
    one = Runner(compiled, RunOptions(device="cpu")).run(items)
    full = data["root"] / "even_full.jsonl"
    wide = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=full, max_batch_items=1), workers=2,
                                 shards=2).run(items)
    assert _answers(wide) == _answers(one)
    lines = full.read_text().splitlines(keepends=True)
    cut = [k for k, line in enumerate(lines) if json.loads(line)["type"] == "item"][5]  # keep 6 of 16 items
    part = data["root"] / "even_part.jsonl"
    part.write_text("".join(lines[: cut + 1]))
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=part, resume=True, max_batch_items=1),
                                    workers=2, shards=2).run(items)
    assert _answers(resumed) == _answers(one)


def test_progress_counts_the_node_steps_of_items_in_flight(cluster: Any, data: dict[str, Path]) -> None:
    """With every item of a shard in flight (the default), the items finish together at the end: the bar stood
    at 0% until then (left alone in the last stop's note). Node steps in flight are counted now, as on one
    machine, and never past items x DAG nodes (that they arrive before the items finish: tests/test_pool.py)."""
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(data["ds"])
    seen: list[tuple[int, int, int]] = []
    finished = [0]
    runner = distributed.RayRunner(compiled, RunOptions(device="cpu"), workers=2)
    runner.run(items, progress=lambda n: finished.__setitem__(0, n),
               on_steps=lambda done, total: seen.append((finished[0], done, total)))
    total = len(items) * len(compiled.dag)
    assert seen and all(t == total and 0 <= d <= total for _, d, t in seen)
    assert seen[-1] == (len(items), total, total)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


def _items_in(path: Path) -> list[int]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # being written
        if rec.get("type") == "item":
            out.append(rec["item"])
    return out

def test_resume_rebuilds_the_pool_from_the_trace(cluster: Any, data: dict[str, Path]) -> None:
    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    full = data["root"] / "full.jsonl"
    whole = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=full), workers=2).run(items)
    lines = full.read_text().splitlines(keepends=True)
    cut = [k for k, line in enumerate(lines) if json.loads(line)["type"] == "item"][2]  # keep 3 items
    part = data["root"] / "part.jsonl"
    part.write_text("".join(lines[: cut + 1]))
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=part, resume=True), workers=2).run(items)
    assert _answers(resumed) == _answers(whole)
    kept = sum(rec.cost["calls"] for rec in read_trace(part).items.values() if rec.item in _items_in(full)[:3])
    assert resumed.distributed["spent"]["calls"] == pytest.approx(resumed.actual_total["calls"])
    assert resumed.distributed["spent"]["calls"] >= kept  # restored spend was booked before the rest ran
    assert sorted(read_trace(part).items) == [it.index for it in items]
    with pytest.raises(distributed.DistributedError, match="continues this trace's plan of 2 shards"):  # was ignored
        distributed.RayRunner(compiled, RunOptions(device="cpu", trace=part, resume=True), workers=2, shards=3).run(items)


@pytest.mark.parametrize("extra, says", [
    (["--resume", "--shards", "3"], "error: --resume continues this trace's plan of 2 shards"),
    (["--resume", "--seed", "1"], "error: cannot --resume: the seed differs"),
    ([], "the trace file already exists"),
])
def test_a_trace_the_run_cannot_resume_is_refused_before_the_cluster_starts(
        cluster: Any, data: dict[str, Path], extra: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass: each was refused only after a cluster had started (about 5 s locally, longer on a real one)."""
    trace = data["root"] / f"refused{''.join(extra)}.jsonl"
    run = ["run", str(data["pooled"]), "--dataset", str(data["ds"]), "--limit", "4", "--ray", "--trace", str(trace)]
    assert main(run) == 0 and read_trace(trace).header.shards == 2
    capsys.readouterr()
    code = main([*run, *extra])
    err = capsys.readouterr().err
    assert code == 2 and "ray: starting" not in err and says in err, err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_trace_error_in_the_accountant_actor_is_its_own_one_line(cluster: Any, data: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A trace the accountant actor cannot write fails in the actor: the error reads as on one machine. (The
    command line refuses a device file as a trace before any cluster starts.)"""
    from ttcl.runtime.trace import TraceError

    runner = distributed.RayRunner(compile_program(ADAPTIVE), RunOptions(device="cpu", trace=Path("/dev/full")),
                                   workers=1)
    with pytest.raises(TraceError) as e:
        runner.run(load_dataset(data["ds"])[:1])
    assert str(e.value) == "/dev/full: error: not a regular file; give --trace a file path"
    code = main(["run", str(ADAPTIVE), "--dataset", str(data["ds"]), "--ray", "--trace", "/dev/full"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "ray:" not in err, err
    assert err.strip() == "error: --trace /dev/full: not a regular file; give a file path, e.g. --trace run.jsonl"


USERS_CHECKER = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier mine = check("longest")
budget per item { calls <= 4; gen_tokens <= 400 }
strategy main(question: text[<=40]) -> answer {
    paths = sample(policy, "{question}\\n", n = 4, max_tokens = 40, temperature = 0.8)
    return best(verify(mine, paths))
}
"""


def test_a_users_checker_reaches_the_workers(cluster: Any, data: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                            request: pytest.FixtureRequest) -> None:
    """`--verifier NAME=module:function` is registered in each worker process too (the module is
    imported there from the directory the command ran in), so `check("NAME")` scores the same with
    and without Ray."""
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)
    (tmp_path / "wide_checks_r7.py").write_text(
        "def longest(question, completion):\n    return min(1.0, len(completion) / 100)\n")
    prog = tmp_path / "mine.ttc"
    prog.write_text(USERS_CHECKER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})
    answers = []
    for extra in ([], ["--ray", "--workers", "2"]):
        code = main(["run", str(prog), "--dataset", str(data["ds"]), "--device", "cpu", "--json",
                     "--verifier", "longest=wide_checks_r7:longest", *extra])
        out = capsys.readouterr().out
        assert code == 0, out
        answers.append([(r["item"], r["answer"], r["status"]) for r in json.loads(out)["results"]])
    assert answers[0] == answers[1] and all(s == "ok" for _, _, s in answers[0])


def test_a_wide_run_charges_items_as_alone_and_says_what_its_caches_shared(cluster: Any, data: dict[str, Path]) -> None:
    """One item at a time per shard, so that later items find earlier items' prompts in their worker's
    prefix cache: each item is charged as on one machine, and the summary adds up what the workers'
    caches served across items."""
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(data["ds"])
    one = Runner(compiled, RunOptions(device="cpu", max_batch_items=1)).run(items)
    wide = distributed.RayRunner(compiled, RunOptions(device="cpu", max_batch_items=1), workers=2, shards=2).run(items)
    assert _answers(wide) == _answers(one)
    assert one.shared_across_items["prompt_tokens"] > 0
    assert 0 < wide.shared_across_items["prompt_tokens"] <= one.shared_across_items["prompt_tokens"]


def test_a_worker_reloads_when_only_the_models_change(cluster: Any, data: dict[str, Path]) -> None:
    """QA pass: the workers are kept between the runs of one process (an eval's series), and a run that differed
    only in its models (`--compare policy=ttcl:arith-l`) reused the first run's runner: arith-l's row was
    arith-s's run. Each run now answers as one machine does with its own models."""
    items = load_dataset(data["ds"])[:4]
    opts = RunOptions(device="cpu")
    for ref in ("ttcl:arith-s", "ttcl:arith-l", "ttcl:arith-s"):
        compiled = compile_program(ADAPTIVE, model_overrides={"policy": ref})
        wide = distributed.RayRunner(compiled, opts, workers=1).run(items)
        one = Runner(compiled, opts).run(items)
        assert _answers(wide) == _answers(one), ref
        assert wide.header["models"]["policy"] == ref


def test_workers_beyond_the_shards_are_not_started(cluster: Any, data: dict[str, Path]) -> None:
    """`--workers 3 --shards 2` started and loaded a third worker that never had a shard (QA pass); on this
    2-CPU cluster it could not even be placed. Now 2 start, and the run says so."""
    notes: list[str] = []
    summary = distributed.RayRunner(compile_program(ADAPTIVE), RunOptions(device="cpu"), workers=3, shards=2).run(
        load_dataset(data["ds"])[:4], on_note=notes.append)
    assert summary.distributed["workers"] == 2 and summary.items == 4
    assert notes == ["ray: 2 shards, so 2 of the 3 workers are used (a shard runs on one worker at a time)"]



def test_a_shard_with_no_item_gets_no_worker(cluster: Any, data: dict[str, Path]) -> None:
    """One item on `--workers 2` started a second worker that loaded the models for an empty shard (QA pass)."""
    notes: list[str] = []
    summary = distributed.RayRunner(compile_program(ADAPTIVE), RunOptions(device="cpu"), workers=2).run(
        load_dataset(data["ds"])[:1], on_note=notes.append)
    assert summary.distributed["workers"] == 1 and summary.items == 1
    assert notes == ["ray: 2 shards, 1 with items to run, so 1 of the 2 workers is used (a shard runs on one worker "
                     "at a time)"]


def test_a_wide_resume_keeps_the_dtype_its_trace_was_written_with(cluster: Any, data: dict[str, Path]) -> None:
    """The driver knows no dtype before its workers load, so a float32 trace went on in bfloat16 under --ray (QA
    pass: 2 answers changed); one machine refused it. It is checked once the workers have loaded."""
    from ttcl.runtime.trace import TraceError

    compiled = compile_program(ADAPTIVE)
    items = load_dataset(data["ds"])[:2]
    trace = data["root"] / "dtype.jsonl"
    Runner(compiled, RunOptions(device="cpu", dtype="float32", trace=trace)).run(items)
    before = trace.read_bytes()
    with pytest.raises(TraceError, match=r"the dtype differs from the one this trace was written with \('float32', "
                                         r"now 'bfloat16'\)"):
        distributed.RayRunner(compiled, RunOptions(device="cpu", dtype="bfloat16", trace=trace, resume=True),
                              workers=1).run(items)
    assert trace.read_bytes() == before
