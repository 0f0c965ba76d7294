"""What an interrupted or failed run kept, read back from its trace, and the command that continues it."""

from __future__ import annotations

from pathlib import Path

from ttcl.errors import TtclRuntimeError


def stamp(trace: Path | None) -> tuple[int, int, int] | None:
    """Which file the trace path names, and when it last changed (None: no file)."""
    try:
        st = trace.stat() if trace is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)


def interrupted_message(trace: Path | None, total: int, earlier: tuple[int, int, int] | None = None) -> str:
    """What Ctrl-C kept, read back from the trace on disk, and the command that continues the run. `earlier`:
    with --overwrite, the trace file's stamp before the command began (an earlier run's, not this one's)."""

    if trace is None:
        return ("interrupted: nothing was saved (no --trace)\n"
                "  hint: run with --trace FILE.jsonl so that Ctrl-C keeps finished work and --resume continues it")
    if earlier is not None and stamp(trace) == earlier:
        return (f"interrupted before the run began: {trace} still holds the earlier run (--overwrite had not yet "
                "started it over)\n  hint: run the same command again")
    from ttcl.runtime.trace import read_trace

    try:
        t = read_trace(trace)
    except TtclRuntimeError:
        return f"interrupted: {trace} holds no finished work yet"
    steps = sum(1 for recs in t.partial.values() for r in recs if r.status in ("ok", "shrunk"))
    kept = f"{len(t.items)} of {total} items finished and saved to {trace}"
    if (t.header.budget or {}).get("split") == "need" and len(t.items) < total and (t.items or t.partial or t.lost):
        return (f"interrupted: {kept}; `split = need` shares the pool among all items at once, so a run it "
                "cut short cannot be resumed\n  hint: rerun with --overwrite (docs/language.md, \"Pooled budgets\")")
    rest = (f"; the {total - len(t.items)} unfinished items run again from the start on --resume (a wide run keeps "
            "whole items)" if getattr(t.header, "shards", None)  # no step of an unfinished wide item is replayed
            else f", and {steps} finished steps of {len(t.partial)} unfinished items (--resume replays them)")
    # a second Ctrl-C (or a kill) cut work short: under a pooled budget its worst case stays charged (QA pass: unsaid)
    pooled = (t.header.budget or {}).get("pooled") or {}
    cut = {u: (t.cut_short or {}).get(u, 0.0) + sum(r.cost.get(u, 0.0) for r in t.lost) for u in pooled}
    cut_text = ", ".join(f"{v:.4g} {u}" for u, v in cut.items() if v > 0)
    charged = f"\n  the pool stays charged {cut_text} for work cut short (its worst case)" if cut_text else ""
    return f"interrupted: {kept}{rest}{charged}\n  resume with: {_resume_command()}"


def _resume_command() -> str:
    """This command line again, with --resume in place of --overwrite."""
    import shlex
    import sys

    args = sys.argv[1:] if sys.argv[1:2] == ["run"] else ["run", "PROGRAM", "...same options..."]
    args = [a for a in args if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    return f"ttcl {shlex.join(args)}"


def shard_failed_message(e: Exception, trace: Path | None, total: int) -> str:
    """A wide run whose shard failed for good: the error, then what the trace kept and how to go on."""
    if trace is None:
        return f"{e}\n  nothing was saved (no --trace); with --trace FILE.jsonl the finished items are kept"
    from ttcl.runtime.trace import read_trace

    try:
        t = read_trace(trace)
    except TtclRuntimeError:
        return f"{e}\n  {trace} holds no finished item"
    kept = f"{len(t.items)} of {total} items finished and are saved in {trace}"
    if (t.header.budget or {}).get("split") == "need":
        return f"{e}\n  {kept}; a `split = need` run cut short cannot be resumed: rerun with --overwrite"
    return f"{e}\n  {kept}; once the cause is mended, resume with: {_resume_command()}"
