"""`ttcl zoo train`'s build: the models' dependency graph, read from the recipes
(`ttcl.zoo.family.dependencies`), and a scheduler that trains independent models at once,
each in a fresh worker process on one thread (`--jobs N`).

A model's bytes do not depend on the schedule: every model trains in its own spawned process
(never forked: torch's threads do not survive a fork) that fixes its thread count and seeds,
exactly as a `--only NAME` build would. A model starts once every model it reads is written;
the one with the longest chain of work behind it (by the shipped models' recorded training
seconds) goes first. A failure names the model and stops only what depends on it; Ctrl-C
(or SIGTERM) stops the workers and keeps every model already written.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ttcl.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, TtclError, TtclRuntimeError
from ttcl.zoo.registry import META_FILE, MODELS_DIR, _read_meta, reference_builds

Log = Callable[[str], None]
Graph = Mapping[str, Sequence[str]]


class ZooGraphError(TtclRuntimeError):
    """The recipes' dependencies are not a DAG of known models."""


class ZooBuildFailed(TtclRuntimeError):
    """Some models failed (or were not built because a model they need failed)."""

    def __init__(self, message: str, internal: bool) -> None:
        super().__init__(message)
        self.exit_code = EXIT_INTERNAL if internal else 2


class ZooBuildInterrupted(TtclError):
    exit_code = EXIT_INTERRUPTED


def default_jobs() -> int:
    """The CPU cores this process may run on."""
    cores = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    return max(1, cores)


WEIGHTS = "model.safetensors"

# glibc's malloc for the workers: blocks up to 256 MiB come from the heap and the heap is not trimmed, so
# a training step reuses the memory of the last one instead of mapping fresh zeroed pages for every large
# tensor (measured: bench/zoo_malloc.py). It moves memory, not arithmetic: torch aligns every tensor itself,
# and the weights come out the same. A GLIBC_TUNABLES the user set is left alone.
ALLOCATOR_TUNABLES = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824"


def weights_digest(model_dir: Path) -> str | None:
    """sha256 of a model directory's weights, or None if it has none."""
    import hashlib

    path = model_dir / WEIGHTS
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_build(name: str) -> dict | None:
    """The build environment the shipped model `name` recorded (`ttcl_meta.json` `build`), if any."""
    env = _read_meta(MODELS_DIR / name).get("build")
    return env if isinstance(env, dict) else None


def reference_build(name: str) -> tuple[str | None, dict | None]:
    """(sha256, build environment) recorded for a recipe that is built but not shipped, or (None, None)."""
    entry = reference_builds().get(name, {})  # the registry keeps only dict entries
    return entry.get("sha256"), entry.get("build")


def compare_with_shipped(built: Path, shipped: str | None, shipped_build: dict | None = None,
                         this_build: dict | None = None, what: str = "the shipped file") -> tuple[bool | None, str]:
    """Whether the weights in `built` are the shipped ones (`shipped`: their sha256, or None
    when the model is not shipped), and a phrase that says so and, when they differ, what in
    the two builds' recorded environments (`ttcl_meta.json` `build`) differs. `what` names the
    file compared with (a recipe built but not shipped is compared with its reference build)."""
    if shipped is None:
        return None, "not shipped: nothing to compare"
    got = weights_digest(built)
    if got is None:
        return False, f"no {WEIGHTS} written"
    if got == shipped:
        return True, f"byte-identical to {what} (sha256 {got[:8]}...)"
    return False, (f"differs from {what} (sha256 {got[:8]}... against {shipped[:8]}...): "
                   f"{why_different(shipped_build, this_build)}; see 'Reproducing' in ttcl/zoo/README.md")


def why_different(shipped: dict | None, here: dict | None) -> str:
    """What the recorded build environments say about two builds whose bytes differ: the
    processors first when both are recorded (the usual cause, measured), then torch,
    transformers and the kernel level."""
    if not isinstance(shipped, dict) or not isinstance(here, dict):
        return "the shipped file records no build environment (other CPU kernels, processor or library versions)"
    keys = ("torch", "transformers", "cpu_capability")
    other = [f"{k} {shipped.get(k)} there, {here.get(k)} here" for k in keys if shipped.get(k) != here.get(k)]
    there_cpu, here_cpu = shipped.get("cpu"), here.get("cpu")
    if isinstance(there_cpu, dict) and isinstance(here_cpu, dict):
        there_p, here_p = _processor(there_cpu), _processor(here_cpu)
        if there_p != here_p:
            return (f"another processor ({there_p} there, {here_p} here; MKL picks "
                    "its own kernels per processor)" + "".join(f"; other {o}" for o in other))
        if not other:
            return "the same recorded processor, torch, transformers and kernels (unexpected: please report it)"
    if other:
        return "other " + "; ".join(other)
    return "same torch, transformers and kernels, so another processor (MKL picks its own kernels per processor)"


def _processor(cpu: dict) -> str:
    """A recorded processor in words: vendor, name and family/model (`family.cpu_identity`)."""
    if "family_model" not in cpu:
        return str(cpu.get("processor", "?"))
    return f"{cpu.get('vendor', '?')} {cpu.get('model_name', '?')}, family/model {cpu['family_model']}"


def recipe_graph(names: Sequence[str], deps: Callable[[str], Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Every recipe's dependencies; one on a model without a recipe is an error."""
    graph = {n: tuple(deps(n)) for n in names}
    for n, ds in graph.items():
        for d in ds:
            if d not in graph:
                raise ZooGraphError(f"recipe {n!r} needs {d!r}, which has no recipe (known: {', '.join(graph)})")
    topological_order(graph)
    return graph


def topological_order(graph: Graph) -> list[str]:
    """The names, each after everything it needs (ties in the graph's order). A dependency
    outside the graph or a cycle is an error that names it."""
    for n, ds in graph.items():
        unknown = [d for d in ds if d not in graph]
        if unknown:
            raise ZooGraphError(f"{n!r} needs {unknown[0]!r}, which is not a model of this build")
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: placed

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            raise ZooGraphError(f"dependency cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in graph[n]:
            visit(d, [*path, n])
        state[n] = 2
        order.append(n)

    for n in graph:
        visit(n, [])
    return order


def subgraph(graph: Graph, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The build of `names` only: dependencies outside it must already be built."""
    keep = set(names)
    return {n: tuple(d for d in graph[n] if d in keep) for n in names}


def missing_outside(graph: Graph, names: Sequence[str], root: Path) -> dict[str, list[str]]:
    """For each of `names`, what it needs that this build does not make and `root` lacks."""
    keep = set(names)
    missing = {n: [d for d in graph[n] if d not in keep and not (root / d / "config.json").is_file()] for n in names}
    return {n: m for n, m in missing.items() if m}


BUILD_TIMES = Path(__file__).with_name("build_times.json")


def recorded_seconds(names: Sequence[str], models_dir: Path = MODELS_DIR,
                     times: Path | None = BUILD_TIMES) -> dict[str, float | None]:
    """Each model's training seconds: from the last whole-zoo build (`times`, build_times.json),
    else the shipped model's own `wall_seconds` (ttcl_meta.json; the build that made its bytes,
    on that day's machine and load), else a recipe's reference build (reference_builds.json), else None."""
    measured: dict = {}
    if times is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            measured = json.loads(times.read_text()).get("training_seconds") or {}
    out: dict[str, float | None] = {}
    for n in names:
        v = measured.get(n) if isinstance(measured, dict) else None
        if not isinstance(v, int | float):
            try:
                v = json.loads((models_dir / n / META_FILE).read_text()).get("wall_seconds")
            except (OSError, ValueError):
                v = reference_builds().get(n, {}).get("training_seconds")
        out[n] = float(v) if isinstance(v, int | float) else None
    return out


def last_build(times: Path = BUILD_TIMES) -> str:
    """The last whole-zoo build in words (build_times.json: date, processor, models, wall time), or a
    plain pointer to the file when it cannot be read."""
    try:
        d = json.loads(times.read_text())
        return (f"the last whole-zoo build, {d['models']} models on {d['cpu_short']} on {d['date']}, took "
                f"{d['wall_seconds'] / 60:.1f} min of wall time with {d['jobs']} workers, sampling and cards included")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "the last whole-zoo build"


def chain_seconds(graph: Graph, seconds: Mapping[str, float | None]) -> dict[str, float]:
    """A model's seconds plus the longest chain of models that need it (0 s where unknown)."""
    needed_by: dict[str, list[str]] = {n: [] for n in graph}
    for n, ds in graph.items():
        for d in ds:
            needed_by[d].append(n)
    out: dict[str, float] = {}
    for n in reversed(topological_order(graph)):
        out[n] = (seconds.get(n) or 0.0) + max((out[c] for c in needed_by[n]), default=0.0)
    return out


def priority(graph: Graph, seconds: Mapping[str, float | None]) -> list[str]:
    """Which ready model to start first: longest chain behind it, then the graph's order."""
    chain = chain_seconds(graph, seconds)
    index = {n: i for i, n in enumerate(graph)}
    return sorted(graph, key=lambda n: (-chain[n], index[n]))


@dataclass(frozen=True)
class Slot:
    name: str
    worker: int
    start: float
    end: float


def simulate(graph: Graph, seconds: Mapping[str, float | None], jobs: int) -> list[Slot]:
    """The schedule `build` follows if every model takes its recorded seconds (0 where unknown)."""
    rank = priority(graph, seconds)
    free = [0.0] * max(1, jobs)
    end: dict[str, float] = {}
    slots: list[Slot] = []
    pending = list(rank)
    while pending:
        w = min(range(len(free)), key=lambda i: free[i])
        ready = [n for n in pending if all(d in end and end[d] <= free[w] for d in graph[n])]
        if not ready:  # wait for the earliest dependency to finish
            free[w] = min(end[d] for n in pending for d in graph[n] if d in end and end[d] > free[w])
            continue
        n = ready[0]
        pending.remove(n)
        end[n] = free[w] + (seconds.get(n) or 0.0)
        slots.append(Slot(n, w + 1, free[w], end[n]))
        free[w] = end[n]
    return slots


@dataclass
class Outcome:
    name: str
    meta: dict | None = None
    error: str | None = None
    internal: bool = False
    trace: str | None = None


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers


def _build_one(name: str, root: str, is_quick: bool, evaluate: bool) -> Outcome:
    """One model, in a worker process: its log lines are prefixed with its name."""
    prefix = f"[{name}]"

    def log(s: str) -> None:
        print(s if s.startswith(prefix) else f"{prefix} {s}", file=sys.stderr, flush=True)

    from ttcl.zoo.family import set_kernels

    # a worker is a fresh process per model (max_tasks_per_child=1), so the kernels hold for the whole build
    set_kernels(name)
    try:
        import logging

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress bars of parallel workers overwrite each other
        hf_logging.get_logger("transformers")  # sets up the library's handler, to prefix its lines too
        for h in logging.getLogger("transformers").handlers:
            fmt = h.formatter._fmt if h.formatter is not None and h.formatter._fmt else "%(message)s"
            h.setFormatter(logging.Formatter(f"{prefix} {fmt}"))
            h.addFilter(_known_benign)
        from ttcl.zoo.family import train_one

        return Outcome(name, meta=train_one(name, Path(root), is_quick=is_quick, log=log, evaluate=evaluate))
    except TtclError as e:
        return Outcome(name, error=str(e))
    except OSError as e:  # a file it could not read or write: the machine's state, not a bug
        return Outcome(name, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc())
    except Exception as e:  # a bug or a broken input model: one line now, the traceback under --debug
        return Outcome(name, error=f"{type(e).__name__}: {e}", internal=True, trace=traceback.format_exc())


# transformers' warnings that every zoo model would print, and that do not apply to how the zoo trains:
# training batches are right-padded under a causal mask, so no real token sees a pad and no mask is
# passed (train.py); and GPT-2's config names no loss type, so the default causal-LM loss is the one meant.
_BENIGN = ("We strongly recommend passing in an `attention_mask`", "`loss_type=None` was set in the config")


def _known_benign(record: object) -> bool:
    """A logging filter: False (drop) for the warnings in _BENIGN."""
    return not str(getattr(record, "msg", "")).startswith(_BENIGN)


@contextlib.contextmanager
def _worker_allocator() -> Iterator[None]:
    """ALLOCATOR_TUNABLES in the environment the workers are spawned with (each reads it at its start), for
    the build only; a GLIBC_TUNABLES already set is kept."""
    if "GLIBC_TUNABLES" in os.environ:
        yield
        return
    os.environ["GLIBC_TUNABLES"] = ALLOCATOR_TUNABLES
    try:
        yield
    finally:
        os.environ.pop("GLIBC_TUNABLES", None)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM to the build stops it like Ctrl-C does (the workers are stopped, not orphaned)."""
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop_workers(ex: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop running workers before Python 3.14
    procs = list((getattr(ex, "_processes", None) or {}).values())
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    ex.shutdown(wait=True, cancel_futures=True)


def build(graph: Graph, root: Path, *, jobs: int, is_quick: bool = False, evaluate: bool = True,
          log: Log = print, on_done: Callable[[str, dict], None] | None = None,
          debug: bool = False, again: Sequence[str] = ()) -> list[str]:
    """Build every model of `graph` (its dependencies inside the graph first) into `root`,
    at most `jobs` at a time; return the names in the order they finished. `again`: the options that the
    command which finishes an interrupted build repeats (--quick, --out DIR, ...)."""
    rank = priority(graph, recorded_seconds(list(graph)))
    pending = list(rank)
    done: list[str] = []
    failed: dict[str, Outcome] = {}
    blocked: dict[str, str] = {}
    running: dict[Future, str] = {}
    ctx = multiprocessing.get_context("spawn")
    jobs = max(1, min(jobs, len(graph)))

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init, max_tasks_per_child=1)

    ex = new_pool()
    try:
        with _sigterm_interrupts(), _worker_allocator():
            while pending or running:
                for n in list(pending):
                    bad = [d for d in graph[n] if d in failed or d in blocked]
                    if bad:
                        blocked[n] = bad[0]
                        pending.remove(n)
                for n in [n for n in pending if all(d in done for d in graph[n])]:
                    if len(running) >= jobs:
                        break
                    pending.remove(n)
                    running[ex.submit(_build_one, n, str(root), is_quick, evaluate)] = n
                    log(f"[zoo] {n}: started ({len(done) + len(running)}/{len(graph)}, {len(running)} running)")
                if not running:
                    break
                finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
                broken = False
                for f in finished:
                    n = running.pop(f)
                    try:
                        out = f.result()
                    except BrokenProcessPool as e:
                        out, broken = Outcome(n, error=f"its worker process died ({e})", internal=True), True
                    if out.error is None and out.meta is not None:
                        done.append(n)
                        log(f"[zoo] {n}: done ({len(done)}/{len(graph)})")
                        if on_done is not None:
                            on_done(n, out.meta)
                    else:
                        failed[n] = out
                        log(f"[zoo] {n}: FAILED: {out.error}")
                        if debug and out.trace:
                            log(out.trace.rstrip())
                if broken:  # a killed worker breaks the pool: what ran in it failed, start a new one
                    for f, n in list(running.items()):
                        failed[n] = Outcome(n, error="its worker process died", internal=True)
                        del running[f]
                    ex.shutdown(wait=True, cancel_futures=True)
                    ex = new_pool()
    except KeyboardInterrupt:
        stopped = sorted(running.values())
        _stop_workers(ex)
        not_built = [n for n in graph if n not in done]
        msg = f"interrupted: built {', '.join(done) or 'nothing'} (kept in {root})"
        if stopped:
            msg += f"; stopped {', '.join(stopped)} (their directories may be incomplete)"
        if not_built:
            msg += "; to finish: ttcl zoo train " + " ".join([*(f"--only {n}" for n in not_built), *again])
        raise ZooBuildInterrupted(msg) from None
    ex.shutdown(wait=True)
    if failed or blocked:
        lines = [f"  {n}: {o.error}" for n, o in failed.items()]
        lines += [f"  {n}: not built (needs {d}, which {'failed' if d in failed else 'was not built'})"
                  for n, d in blocked.items()]
        internal = any(o.internal for o in failed.values())
        head = f"error: {len(failed)} model(s) failed, {len(blocked)} not built; built: {', '.join(done) or 'none'}"
        tail = "" if debug or not internal else "\n(run with --debug for the traceback)"
        raise ZooBuildFailed("\n".join([head, *lines]) + tail, internal)
    return done
