"""A wide run on a real local Ray cluster: 2 worker actors, the bundled models, one pooled budget.

One cluster (2 CPUs, bound to 127.0.0.1, usage stats off) serves the whole
module and is shut down at its end; the worker actors are reused from test
to test, as `ttcl eval` reuses them across a sweep. A worker is killed by
its pid with SIGKILL mid-run, the way an operator or the OOM killer would.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
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


def test_a_ctrl_c_records_what_the_shards_in_flight_spent(cluster: Any, data: dict[str, Path]) -> None:
    """Ctrl-C on a wide run (a KeyboardInterrupt in the driver, where the CLI's SIGINT lands) dropped the spend of
    the attempts in flight: no `lost` record, so a `--resume` could spend past the pool (QA pass: 2.3e8 FLOPs the
    ledger had charged were in no record). Now each in-flight attempt is settled and written, as a dead worker's."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    # 24 longer items, one at a time per shard, and a pool of 100 calls (every item runs; the module's 8 items
    # and 22 calls let a run on warm workers end before a look found an attempt in flight: it failed in CI)
    roomy = data["root"] / "roomy.ttc"
    roomy.write_text(POOLED.replace("calls <= 22;", "calls <= 100;"))
    ds = data["root"] / "longer_ctrl_c.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(24, [4, 5, 6], 7))))
    compiled = compile_program(roomy)
    items = load_dataset(ds)
    trace = data["root"] / "ctrl_c.jsonl"
    looks = []

    def interrupt(_: int) -> None:
        looks.append(True)
        if len(looks) >= 2:  # the second look, half a second in: each worker holds an item's reservation
            raise KeyboardInterrupt

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, progress=interrupt)
    stats = ray.get(distributed._POOL[0].stats.remote())
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    kept = sum(r["cost"]["calls"] for r in recs if r["type"] in ("item", "lost"))
    assert any(r["type"] == "lost" for r in recs)
    assert stats["held"]["calls"] == 0 and kept == pytest.approx(stats["spent"]["calls"])  # every charge recorded
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert sorted(read_trace(trace).items) == [it.index for it in items]
    lost = sum(r.cost["calls"] for r in read_trace(trace).lost)
    assert resumed.actual_total["calls"] + lost <= 100  # the pool, with what the interrupted attempts spent


def test_a_first_ctrl_c_finishes_the_items_in_flight_and_loses_nothing(cluster: Any, data: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """The first Ctrl-C of a wide run (`should_stop`, as the CLI's handler sets it) stopped at once: the attempts
    in flight were lost and charged to the pool (QA pass: 54% of a binding pool). Now the workers finish the
    items they started and start no more; no `lost` record is written, and the resume answers as one run."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    ds = tmp_path / "longer.jsonl"  # the module's 8 items can all finish before the second look
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(24, [4, 5, 6], 5))))
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(ds)
    trace = tmp_path / "drained.jsonl"
    asked = []

    def ctrl_c() -> bool:  # asked before the shards go out, then about twice a second: Ctrl-C at the second look
        asked.append(True)
        return len(asked) >= 2

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, should_stop=ctrl_c)
    back = read_trace(trace)
    assert not back.lost and 1 <= len(back.items) < len(items)
    stats = ray.get(distributed._POOL[0].stats.remote())
    assert stats["held"]["calls"] == 0  # every reservation settled as a charge of a finished item
    assert stats["spent"]["calls"] == pytest.approx(sum(rec.cost["calls"] for rec in back.items.values()))
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert _answers(resumed) == _answers(Runner(compiled, RunOptions(device="cpu")).run(items))


def test_a_wide_resume_counts_the_spend_its_trace_lost_in_the_pooled_line(cluster: Any, data: dict[str, Path]) -> None:
    """QA pass: after a Ctrl-C that lost attempts, a wide --resume enforced the lost spend but its `budget pooled`
    line (and `pool_beyond_items`) left it out, 2.1e9 / 4.5e10 where 4.1e10 was charged; one machine said it.
    The trace a kill leaves is made here from a finished run (whether a real Ctrl-C catches an attempt in flight
    depends on timing): the first two items' records dropped, and a `lost` record of two calls for one of them (as
    if a kill had cut its attempt short after its first calls)."""
    from ttcl.runtime.trace import LostRecord

    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    trace = data["root"] / "lost_then_resumed.jsonl"
    distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace), workers=2).run(items)
    dropped = {items[0].index, items[1].index}
    lines = [x for x in trace.read_text().splitlines(keepends=True)
             if json.loads(x).get("item") not in dropped or json.loads(x)["type"] == "header"]
    lost = LostRecord(item=items[1].index, worker="w1.0", shard=1,
                      cost={"calls": 2.0, "prompt_tokens": 0.0, "gen_tokens": 0.0, "flops": 0.0, "seconds": 0.0})
    trace.write_text("".join(lines) + lost.model_dump_json() + "\n")
    assert len(read_trace(trace).lost) == 1
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert resumed.items == len(items)
    assert resumed.pool_beyond_items == {"calls": 2.0}
    assert resumed.actual_total["calls"] + resumed.pool_beyond_items["calls"] <= 22  # the pool: calls <= 22


def test_a_need_split_cut_short_before_any_item_is_refused_on_resume(cluster: Any, data: dict[str, Path]) -> None:
    """`split = need` deals each shard's quota out at once: a Ctrl-C that saved no item but lost attempts' spend was
    resumed without a word, dealing smaller shares, and 39 of 60 answers moved (QA pass). The lost spend counts as
    work done: the resume is refused, before the cluster (the CLI) and by the runner."""
    from ttcl.commands.wide import Wide, check_trace_before_the_cluster
    from ttcl.errors import TtclError

    compiled = compile_program(ROOT / "programs" / "pooled_adaptive.ttc")
    items = load_dataset(data["ds"])
    trace = data["root"] / "need_cut.jsonl"

    def interrupt(done: int, _: int) -> None:
        if done:  # at the first look after a node step: the items wait at `allot`, their probes spent
            raise KeyboardInterrupt  # (at the first look of all, a worker on a loaded box may have spent nothing)

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, on_steps=interrupt)
    assert read_trace(trace).lost
    # The QA pass's Ctrl-C landed before any item record was written; here a fast item may have finished first:
    # its record is dropped, leaving the trace that Ctrl-C leaves (header, node and lost records, no item)
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text("".join(x for x in lines if json.loads(x)["type"] != "item"))
    cut = read_trace(trace)
    assert not cut.items and cut.lost
    with pytest.raises(TtclError, match=r"already holds 0 finished items and \d+ lost attempts' spend; rerun with "
                                        "--overwrite"):
        check_trace_before_the_cluster(compiled, Wide("local", 2, None), items, trace, resume=True)
    with pytest.raises(distributed.DistributedError, match="lost attempts' spend"):
        distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)


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


def test_a_worker_killed_by_pid_mid_run_loses_no_item(cluster: Any, data: dict[str, Path], reference: Any) -> None:
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(data["ds"])
    trace = data["root"] / "killed.jsonl"
    opts = RunOptions(device="cpu", trace=trace, max_batch_items=1)  # one item at a time: the shard takes a while
    pids: list[int] = []
    out: dict[str, Any] = {}

    def drive() -> None:
        try:
            out["summary"] = distributed.RayRunner(compiled, opts, workers=2).run(items, on_workers=pids.extend)
        except BaseException as e:  # surfaced by the assertions below
            out["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    # Generous waits: on a box shared with other jobs, starting workers alone has taken minutes.
    deadline = time.monotonic() + 900
    while t.is_alive() and time.monotonic() < deadline and not any(i % 2 == 0 for i in _items_in(trace)):
        time.sleep(0.05)  # shard 0 (the even items) has finished its first item: kill its worker mid-shard
    assert pids and t.is_alive(), out.get("error")
    os.kill(pids[0], signal.SIGKILL)
    t.join(timeout=900)
    assert not t.is_alive() and "error" not in out, out.get("error")
    summary = out["summary"]
    assert summary.distributed["restarts"] == 1
    # Same answers and the same charges as the run without a kill: the rerun starts with a cold prefix
    # cache, but each item is charged its prefill as if it ran alone (docs/runtime.md, "Running wide").
    assert _answers(summary) == _answers(reference)
    back = read_trace(trace)
    assert sorted(back.items) == [it.index for it in items]
    lost_calls = sum(rec.cost.get("calls", 0) for rec in back.lost)
    # The pool counted every attempt: the finished items plus whatever the killed attempt spent.
    assert summary.distributed["spent"]["calls"] == pytest.approx(summary.actual_total["calls"] + lost_calls)


def test_an_accountant_killed_mid_run_leaves_its_attempts_in_flight_charged_to_the_pool(
        cluster: Any, data: dict[str, Path]) -> None:
    """The accountant actor SIGKILLed (the OOM killer's way): the run ended as "a bug in ttcl" (exit 70), the
    attempts in flight went unrecorded, and a --resume dealt the pool out again as if they had spent nothing (QA
    pass). Now they are written as `lost` at their worst case, and the resumed run stays within the pool."""
    from ttcl.runtime.ray_cluster import DistributedError

    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    trace = data["root"] / "accountant.jsonl"
    out: dict[str, Any] = {}

    def drive() -> None:
        try:
            out["summary"] = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1),
                                                   workers=2).run(items)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    deadline = time.monotonic() + 900
    while t.is_alive() and time.monotonic() < deadline and not _items_in(trace):
        time.sleep(0.05)  # an item is in: both shards are running
    assert t.is_alive(), out
    os.kill(ray.get(distributed._POOL[0].pid.remote()), signal.SIGKILL)
    t.join(timeout=900)
    assert isinstance(out.get("error"), DistributedError), out
    said = str(out["error"])
    assert said.startswith("the run's accountant (the Ray actor ray::PoolService) died: ") and "--resume" in said
    back = read_trace(trace)
    assert back.lost and len(back.items) < len(items)
    assert f"{len(back.items)} finished item" in said and f"the {len(back.lost)} attempt" in said
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True, max_batch_items=1),
                                    workers=2).run(items)
    assert [r["item"] for r in resumed.results] == [it.index for it in items]
    final = read_trace(trace)
    recorded = sum(r.cost.get("calls", 0) for r in final.items.values()) + sum(r.cost.get("calls", 0) for r in final.lost)
    assert recorded <= 22  # `budget pooled { calls <= 22 }`: every attempt, the unknown ones at their worst case


def test_an_item_a_shards_share_stops_is_said_so(cluster: Any, data: dict[str, Path]) -> None:
    """Each shard has a fixed share of the pool: items stopped "budget exhausted: pooled calls" beside a pool line of
    6 / 7 (two shares of 3.5 calls; QA pass). The reason names the shard's share."""
    prog = data["root"] / "shares.ttc"
    prog.write_text(POOLED.replace("calls <= 22", "calls <= 7"))
    summary = distributed.RayRunner(compile_program(prog), RunOptions(device="cpu"), workers=2).run(
        load_dataset(data["ds"])[:6])
    stopped = [r for r in summary.results if r["status"] == "stopped"]
    assert stopped and summary.actual_total["calls"] < 7
    for r in stopped:
        shard = 0 if r["item"] % 2 == 0 else 1
        assert r["failures"]["main/paths"] == f"budget exhausted: pooled calls (shard {shard}'s share of the pool)"


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
    """A trace that opens but cannot be written fails in the actor: the error reads as on one machine."""
    code = main(["run", str(ADAPTIVE), "--dataset", str(data["ds"]), "--ray", "--trace", "/dev/full"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "ray::" not in err, err
    assert err.splitlines()[-1] == "/dev/full: error: not a regular file; give --trace a file path"


@pytest.mark.slow
def test_pooled_budget_holds_under_real_worker_kills(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random programs and budgets, a worker SIGKILLed after a random delay: every item done, pool held."""
    import random
    import sys

    from hypothesis import HealthCheck, given, reject, settings
    from hypothesis import strategies as st

    sys.path.insert(0, str(Path(__file__).parent))
    from gen_budget_programs import budget_programs
    from test_pool import MODEL_DIR, budgets

    from ttcl.compiler.costmodel import STATIC_UNITS
    from ttcl.errors import TtclSemanticError
    from ttcl.runtime.dataset import Item

    if not (MODEL_DIR / "config.json").exists():
        from ttcl.runtime.backends.random_model import save_random_gpt2

        save_random_gpt2(MODEL_DIR, n_positions=512)

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(prog=budget_programs(), budget=budgets(), delay=st.floats(0.0, 3.0), victim=st.integers(0, 1))
    def check(prog: Any, budget: tuple[str, str], delay: float, victim: int) -> None:
        src = prog.source.replace('model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)',
                                  f'model policy = "{MODEL_DIR}"').replace("verifier orm = reward(rm)",
                                                                           'verifier orm = check("arith")')
        src = src.replace("\nstrategy main", "\n" + budget[0] + budget[1] + "strategy main", 1)
        path = tmp_path_factory.mktemp("k") / "prog.ttc"
        path.write_text(src)
        try:
            compiled = compile_program(path)
        except TtclSemanticError:  # e.g. a generated program too long for the random model's 512 positions
            reject()
        items = [Item(index=i, question=q) for i, q in enumerate(["12 +7 *2", "5 -3", "9 *2", "40 -1 +3", "7 +7"])]
        trace = path.parent / f"t{random.randrange(10**9)}.jsonl"
        pids: list[int] = []
        out: dict[str, Any] = {}

        def drive() -> None:
            try:
                out["s"] = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1),
                                                 workers=2).run(items, on_workers=pids.extend)
            except BaseException as e:
                out["e"] = e

        t = threading.Thread(target=drive)
        t.start()
        while not pids and t.is_alive():
            time.sleep(0.02)
        time.sleep(delay)
        if pids and t.is_alive():
            try:
                os.kill(pids[victim], signal.SIGKILL)
            except ProcessLookupError:
                pass
        t.join(timeout=300)
        assert "e" not in out, out.get("e")
        s = out["s"]
        assert [r["item"] for r in s.results] == list(range(len(items)))
        pooled, per_item = s.budget_pooled, s.budget_item
        for unit in STATIC_UNITS:
            u = unit.value
            if u in pooled:  # everything spent, every attempt, lost ones in full
                assert s.distributed["spent"][u] <= pooled[u] * (1 + 1e-9) + 1e-9, (u, s.distributed)
            if u in per_item:
                assert s.actual_max[u] <= per_item[u] * (1 + 1e-9) + 1e-9, u

    check()


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


def test_an_item_that_kills_its_worker_every_time_is_failed_alone_and_the_rest_finish(
        cluster: Any, data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """A "poison" item (a --verifier that ends its process on one question) fails its shard 3 times. QA pass:
    the run ended with Ray's raw text; then (session 36) with the shard's unfinished items named, 6 of 12 saved.
    Now the shard's rest is split until the item fails alone: it is recorded as failed, every other item
    finishes as on one machine, and a resume keeps it failed without running anything."""
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)
    lines = data["ds"].read_text().splitlines()
    first = json.loads(lines[0])["question"]
    (tmp_path / "poison_r7.py").write_text(
        "import os\n\n\ndef longest(question, completion):\n"
        f"    if question.strip() == {first.strip()!r}:\n        os._exit(1)\n"
        "    return min(1.0, len(completion) / 100)\n")
    prog = tmp_path / "mine.ttc"
    prog.write_text(USERS_CHECKER)
    trace = tmp_path / "poison.jsonl"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})
    args = ["run", str(prog), "--dataset", str(data["ds"]), "--device", "cpu", "--verifier",
            "longest=poison_r7:longest", "--json"]
    code = main([*args, "--trace", str(trace), "--ray", "--workers", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for attempt in (2, 3):  # each restart is said as it happens
        assert f"unfinished items run again on a fresh worker (attempt {attempt} of 3)" in err, err
    assert "ray: shard 0's worker failed for the last time (its worker process died); its " in err, err
    assert "ray: item 0 fails its worker when it runs alone (its worker process died): it is recorded as failed" in err
    wide = {r["item"]: r for r in json.loads(out)["results"]}
    assert wide[0]["status"] == "failed" and wide[0]["answer"] is None and wide[0]["correct"] is False
    assert "its worker failed each time it ran this item, the last time alone" in wide[0]["error"]
    saved = read_trace(trace)
    assert sorted(saved.items) == list(range(len(lines))) and saved.items[0].status == "failed"
    assert saved.lost  # what the failed attempts spent is in the trace
    # every other item is as on one machine, with the same checker less its poison (it would end this process)
    (tmp_path / "plain_r7.py").write_text(
        "def longest(question, completion):\n    return min(1.0, len(completion) / 100)\n")
    code = main([*args[:-2], "longest=plain_r7:longest", "--json"])
    one, _ = capsys.readouterr()
    assert code == 0
    for r in json.loads(one)["results"][1:]:
        assert (wide[r["item"]]["answer"], wide[r["item"]]["status"]) == (r["answer"], r["status"])
    code = main([*args, "--trace", str(trace), "--ray", "--workers", "2", "--resume"])
    again, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(again)["results"] == json.loads(out)["results"]
    assert ("1 items failed in the earlier run and are kept as failed; `--resume --retry-failed` without --ray runs "
            "them again") in err


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
