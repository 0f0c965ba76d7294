"""`ttcl run/eval --ray [ADDRESS] --workers N --shards K`: the Ray cluster a wide run goes to.

Checked before anything starts (options, a `split = need` resume), started with Ctrl-C deferred so that a
cluster is never left half-started, and shut down whole however the command ends (SIGTERM included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ttcl.commands.compile import OptionError
from ttcl.commands.interrupts import DeferCtrlC, terminate
from ttcl.errors import TtclRuntimeError

RAY_HELP = "Shard the items over Ray workers: --ray starts a local cluster (127.0.0.1), --ray ADDRESS joins one."
SHARDS_HELP = ("Shards of the items (default: --workers); each gets a fixed share of a pooled budget, so fix it "
               "to get the same answers with any number of workers.")


def refuse_need_resume_before_the_cluster(trace: Path, items: list[Any]) -> None:
    """`--resume` of a `split = need` wide run with items left: refused now, as the cluster would refuse it once
    started (about 6 s later), from the trace's own header (a trace of another program is refused there too)."""
    from ttcl.runtime.distributed import need_work_held
    from ttcl.runtime.trace import read_trace

    if not trace.exists():
        return
    try:
        t = read_trace(trace)
    except TtclRuntimeError:
        return  # the run says what is wrong with it, as before
    if (t.header.budget or {}).get("split") == "need" and (t.items or t.lost) and any(it.index not in t.items for it in items):
        raise OptionError(f"--resume: `split = need` shares each shard's quota among its items at once, and "
                          f"{trace} already holds {need_work_held(len(t.items), len(t.lost))}; rerun with --overwrite")


class Wide:
    """`--ray [ADDRESS] --workers N [--shards K]`: where a run's items go (None: this process)."""

    def __init__(self, address: str | None, workers: int | None, shards: int | None) -> None:
        if address is None and (workers is not None or shards is not None):
            raise OptionError("--workers/--shards shard a run over Ray workers: add --ray (a local cluster) "
                              "or --ray ADDRESS")
        for name, v in (("--workers", workers), ("--shards", shards)):
            if v is not None and v < 1:
                raise OptionError(f"{name} {v}: expected a positive number")
        self.address = address
        self.workers = workers or 2
        self.shards = shards
        self.started = False
        self._term: Any = None

    def __enter__(self) -> Wide:
        if self.address is not None:
            from ttcl.runtime.ray_cluster import connect, connected, shutdown

            before = connected()
            with DeferCtrlC("the cluster is starting; stopping once it has, to shut it down whole") as ctrl_c:
                typer.echo(f"ray: {'starting a local cluster' if self.address == 'local' else 'joining ' + self.address}"
                           f" ({self.workers} workers)", err=True)
                try:
                    self.started = connect(self.address, num_cpus=self.workers)
                except BaseException:
                    if not before:
                        shutdown()  # whatever part of a cluster this call started
                    raise
            if ctrl_c.requested:  # a cluster cut short mid-start left its processes behind, and could crash the driver
                self.__exit__()
                raise KeyboardInterrupt
            if self.started:  # Ray's own SIGTERM handler dumps a stack and leaves the cluster: stop it whole instead
                import signal
                import threading

                if threading.current_thread() is threading.main_thread():
                    self._term = signal.signal(signal.SIGTERM, _terminated)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._term is not None:
            import signal

            signal.signal(signal.SIGTERM, self._term)
            self._term = None
        if self.started:  # only what this command started (a cluster a caller holds stays up)
            from ttcl.runtime.ray_cluster import shutdown

            shutdown()  # a local cluster stops with it; a joined one only loses this driver and its actors


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM during a wide run: leave through the cluster's shutdown, then end as SIGTERM ends a process (143)."""
    typer.echo("terminated: stopping the Ray cluster", err=True)
    terminate()


def show_workers(pids: list[int]) -> None:
    typer.echo(f"ray: worker pids {', '.join(map(str, pids))}", err=True)
