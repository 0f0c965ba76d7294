"""Ctrl-C that waits for a safe point: the first one is noted and said, and acted on there; a second one
interrupts at once."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a command must clean up first (a wide run's cluster); the command then exits 143,
    as a process SIGTERM ends."""

    code = 128 + signal.SIGTERM


_TERMINATED: list[bool] = []  # set by `terminate`: a library may re-raise the interrupt as a plain one


def terminate() -> None:
    """Raise the SIGTERM interrupt, remembered for `exit_code`."""
    _TERMINATED.append(True)
    raise Terminated


def exit_code(e: KeyboardInterrupt) -> int:
    """The exit code of an interrupt: 143 for SIGTERM, else 130 (Ctrl-C)."""
    return Terminated.code if isinstance(e, Terminated) or _TERMINATED else 130


class DeferCtrlC:
    """Within the block, the first Ctrl-C sets `requested` and says `why`; the caller acts on it where it is
    safe (after a run's step, after a cluster's start). A second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self, why: str) -> None:
        self.why, self.requested = why, False
        self._before: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write(f"\nCtrl-C: {self.why} (Ctrl-C again to stop now)\n")

    def __enter__(self) -> DeferCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            signal.signal(signal.SIGINT, self._before)


def stop_after_the_running_step() -> DeferCtrlC:
    """A run's Ctrl-C: it stops after the running step (nothing finished is lost); a second one stops at once
    (the running batch is lost; `--resume` charges the pool for it)."""
    return DeferCtrlC("stopping after the running step, keeping its work")


def finish_the_items_in_flight() -> DeferCtrlC:
    """A wide run's Ctrl-C: its workers finish the items they started (a wide run keeps whole items) and start no
    more; a second one stops at once (the attempts in flight are then lost, and charged to the pool)."""
    return DeferCtrlC("finishing the items in flight, keeping their work")
