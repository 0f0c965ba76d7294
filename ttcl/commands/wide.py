"""`ttcl run/eval --ray [ADDRESS] --workers N --shards K`: the Ray cluster a wide run goes to.

Checked before anything starts (options, the program, the trace a run writes or resumes), started with Ctrl-C deferred so that a
cluster is never left half-started, and shut down whole however the command ends (SIGTERM included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ttcl.commands.compile import OptionError
from ttcl.commands.interrupts import AS_SIGTERM, DeferCtrlC, terminate

RAY_HELP = "Shard the items over Ray workers: --ray starts a local cluster (127.0.0.1), --ray ADDRESS joins one."
SHARDS_HELP = ("Shards of the items (default: --workers); each gets a fixed share of a pooled budget, so fix it "
               "to get the same answers with any number of workers.")


def check_trace_before_the_cluster(compiled: Any, wide: Wide, items: list[Any], trace: Path, **options: Any) -> None:
    """What the wide runner checks of `--trace` (an existing trace without --resume or --overwrite; a resume with
    another program, seed, dataset or shard plan; a `split = need` resume with items left), checked before the
    cluster starts, from the trace on disk (QA pass: each was refused only after a cluster start, 5 s later).
    `options`: the run's RunOptions that its trace header records (seed, dataset, judge, resume, overwrite)."""
    from ttcl.runtime.distributed import RayRunner
    from ttcl.runtime.run_trace import check_trace_writable
    from ttcl.runtime.runner import RunOptions

    check_trace_writable(trace)
    RayRunner(compiled, RunOptions(trace=trace, **options), workers=wide.workers, shards=wide.shards).check_trace(items)


class Wide:
    """`--ray [ADDRESS] --workers N [--shards K]`: where a run's items go (None: this process)."""

    def __init__(self, address: str | None, workers: int | None, shards: int | None) -> None:
        if address is None and (workers is not None or shards is not None):
            raise OptionError("--workers/--shards shard a run over Ray workers: add --ray (a local cluster) "
                              "or --ray ADDRESS")
        if address is not None and not address.strip():
            raise OptionError('--ray "": an empty address; give --ray alone for a local cluster, or --ray HOST:PORT '
                              "to join one")
        for name, v in (("--workers", workers), ("--shards", shards)):
            if v is not None and v < 1:
                raise OptionError(f"{name} {v}: expected a positive number")
        self.address = address
        self.workers = workers or 2
        self.shards = shards
        self.started = False
        self._term: Any = None

    def check_device(self, device: str) -> None:
        """A local cluster's workers are this machine's: a device it lacks (`--device cuda`, no GPU) is refused
        before the cluster starts (QA pass: after it). A joined cluster's workers may have what the driver has not."""
        if self.address == "local" and device != "auto" and device != "cpu":
            from ttcl.runtime.backends.transformers import pick_device

            pick_device(device)

    def __enter__(self) -> Wide:
        if self.address is not None:
            from ttcl.runtime.ray_cluster import connect, connected, shutdown

            before = connected()
            with DeferCtrlC("the cluster is starting; stopping once it has, to shut it down whole") as ctrl_c:
                typer.echo(f"ray: {'starting a local cluster' if self.address == 'local' else 'joining ' + self.address}"
                           f" ({self.workers} worker{'' if self.workers == 1 else 's'})", err=True)
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

                if threading.current_thread() is threading.main_thread():  # SIGHUP (a closed terminal) too: it
                    self._term = {sig: signal.signal(sig, _terminated) for sig in AS_SIGTERM}  # died at once (QA)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._term is not None:
            import signal

            for sig, before in self._term.items():
                signal.signal(sig, before)
            self._term = None
        if self.started:  # only what this command started (a cluster a caller holds stays up)
            from ttcl.runtime.ray_cluster import shutdown

            shutdown()  # a local cluster stops with it; a joined one only loses this driver and its actors


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (SIGHUP) during a wide run: leave through the cluster's shutdown, then end as that signal ends a
    process (143, 129)."""
    typer.echo("terminated: stopping the Ray cluster", err=True)
    terminate(signum)


_SHOWN: list[list[int]] = []  # the worker pids said last in this process


def show_workers(pids: list[int]) -> None:
    """Say the workers' pids when they are new: an eval's runs reuse them (QA pass: the line came once per run)."""
    if _SHOWN and _SHOWN[-1] == list(pids):
        return
    _SHOWN[:] = [list(pids)]
    typer.echo(f"ray: worker pids {', '.join(map(str, pids))}", err=True)
