"""Ctrl-C that waits for a safe point: the first one is noted and said, and acted on there; a second one
interrupts at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a command must clean up first (a wide run's cluster); the command then exits 143,
    as a process SIGTERM ends."""

    code = 128 + signal.SIGTERM


_TERMINATED: list[int] = []  # the signal, set by `terminate`: a library may re-raise the interrupt as a plain one
# taken as SIGTERM is: a closed terminal or a dropped ssh session (SIGHUP) killed a run at once, its batch lost (QA)
AS_SIGTERM = (signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


def terminate(signum: int = signal.SIGTERM) -> None:
    """Raise the SIGTERM (or SIGHUP) interrupt, remembered for `exit_code`."""
    _TERMINATED.append(signum)
    raise Terminated


@contextmanager
def terminating() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise the interrupt (exit 143, 129), so its `finally` clauses run: a
    temporary file is removed (QA pass: `ttcl data -o` killed by SIGTERM left a 936 MB `.part` file)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, lambda signum, _: terminate(signum)) for sig in AS_SIGTERM}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def exit_code(e: KeyboardInterrupt) -> int:
    """The exit code of an interrupt: 143 for SIGTERM (129 for SIGHUP), else 130 (Ctrl-C)."""
    if _TERMINATED:
        return 128 + _TERMINATED[-1]
    return Terminated.code if isinstance(e, Terminated) else 130


class DeferCtrlC:
    """Within the block, the first Ctrl-C sets `requested` and says `why`; the caller acts on it where it is
    safe (after a run's step, after a cluster's start). A second Ctrl-C raises KeyboardInterrupt at once.
    `sigterm`: SIGTERM (a scheduler's preemption) and SIGHUP (a closed terminal) are taken the same way, and the
    command then exits 143 (129)."""

    def __init__(self, why: str, *, sigterm: bool = False) -> None:
        self.why, self.requested, self.sigterm = why, False, sigterm
        self._before: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: Any) -> None:
        term = signum in AS_SIGTERM
        if term:
            _TERMINATED.append(signum)  # however the command ends now, it ends as that signal ends a process
        if self.requested:
            raise Terminated if term else KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        name, again = (name, f"Ctrl-C or {name}") if term else ("Ctrl-C", "Ctrl-C")
        sys.stderr.write(f"\n{name}: {self.why} ({again} again to stop now)\n")

    def __enter__(self) -> DeferCtrlC:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, *AS_SIGTERM) if self.sigterm else (signal.SIGINT,):
                self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, before in self._before.items():
            signal.signal(sig, before)
        self._before = {}


def stop_after_the_running_step(resumable: bool = True) -> DeferCtrlC:
    """A run's Ctrl-C or SIGTERM: it stops after the running step (nothing finished is lost); a second one stops
    at once (the running batch is lost; `--resume` charges the pool for it). `resumable` False: a `split = need`
    run, whose trace cannot be resumed once cut short (QA pass: "keeping its work", then "cannot be resumed")."""
    return DeferCtrlC("stopping after the running step, keeping its work" if resumable else
                      "stopping after the running step (a `split = need` run cut short cannot be resumed)", sigterm=True)


def finish_the_items_in_flight() -> DeferCtrlC:
    """A wide run's Ctrl-C: its workers finish the items they started (a wide run keeps whole items) and start no
    more; a second one stops at once (the attempts in flight are then lost, and charged to the pool)."""
    return DeferCtrlC("finishing the items in flight, keeping their work")
