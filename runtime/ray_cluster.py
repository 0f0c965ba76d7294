"""The Ray cluster a wide run uses: started on 127.0.0.1 or joined, and shut down whole.

A local cluster binds every server to loopback and keeps its session files in a folder of its own; a
shutdown waits for (then kills) the actors' processes, which `ray.shutdown` leaves running, and removes
that folder. runtime/distributed.py runs shards on it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ttcl.errors import TtclRuntimeError

LOCAL = "local"


class DistributedError(TtclRuntimeError):
    """A wide run that cannot start (no Ray, no cluster) or cannot finish (a shard keeps failing)."""


class ShardFailedError(DistributedError):
    """A shard whose worker failed on every attempt (a "poison" item: a `--verifier` or a model that crashes
    the process, or one that runs it out of memory). Names the shard and its unfinished items; the CLI adds what
    the trace kept and the resume command (QA pass: Ray's raw text, no item, no word of the saved work)."""

    def __init__(self, shard: int, attempts: int, left: list[int], why: str, alone: int = 0) -> None:
        self.shard, self.left = shard, left
        shown = ", ".join(map(str, left[:8])) + (", …" if len(left) > 8 else "")
        if alone:  # each of these failed its worker alone, and nothing else of the shard finished
            super().__init__(f"shard {shard} failed {attempts} times, and then {alone} of its items each failed "
                             f"their worker alone (items {shown}: 0-based positions in the input) while none of "
                             f"its other items finished: the fault is not in one item; the last time {why}")
            return
        super().__init__(f"shard {shard} failed {attempts} times, leaving {len(left)} items unfinished (items "
                         f"{shown}: 0-based positions in the input); the last time {why}")


def _ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:
        raise DistributedError('--ray needs Ray: pip install "ttcl[ray]" (from a checkout: pip install -e ".[ray]")') from e
    return ray


def _loopback_only() -> None:
    """A local cluster lives on 127.0.0.1: every Ray server listens there and every address it dials is there.

    Ray (2.60) takes the node address from the interface that routes outward
    and listens on all interfaces, even with `_node_ip_address="127.0.0.1"`.
    Its single-machine mode (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when
    ray is imported) binds everything to loopback instead.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import sys

    consts = sys.modules.get("ray._private.ray_constants")
    if consts is not None:  # ray was imported before the variable was set: same effect, set where it is read
        consts.ENABLE_RAY_CLUSTER = False


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a `HOST:PORT` (or `ray://HOST:PORT`) that nothing listens on: Ray itself retries such an address for
    minutes before it gives up. `auto` and anything without a port are left to Ray."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if sep and port.isdigit() and not host.strip("[]"):  # Ray printed a traceback for ":6379" (QA pass)
        scheme = "ray://" if address.startswith("ray://") else ""
        raise DistributedError(f"--ray {address}: no host before the port; give HOST:PORT ({scheme}127.0.0.1:{port} "
                               "for this machine)")
    if not sep or not port.isdigit() or not host:
        return
    if not 1 <= int(port) <= 65535:
        raise DistributedError(f"--ray {address}: the port must be in 1..65535")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise DistributedError(f"--ray {address}: cannot reach a Ray cluster there ({why}); start one with "
                               "`ray start --head` on that machine, or give --ray alone for a local cluster") from e


_WORKERS: list[Any] = []  # live worker actors, reused by every run of this process (an eval sweep)
_POOL: list[Any] = []  # the accountant actor, likewise reused (its state is reset per run)
_TEMP: list[str] = []  # the session folder of the local cluster this process started


def connect(address: str = LOCAL, *, num_cpus: int = 2) -> bool:
    """Start a local cluster bound to 127.0.0.1, or join `address`. True when this call started Ray."""
    if address == LOCAL:
        _loopback_only()
    else:
        _reachable(address)
    ray = _ray()
    if ray.is_initialized():
        return False
    for attempt in (1, 2):
        try:
            if address == LOCAL:  # its session files in a folder of its own, removed with the cluster
                parent = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
                sweep_stale_sessions(parent)
                _TEMP.append(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=parent))
                with open(os.path.join(_TEMP[-1], DRIVER_PID), "w") as f:
                    f.write(str(os.getpid()))
                ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
                         log_to_driver=False, configure_logging=False, _temp_dir=_TEMP[-1])
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            return True
        except Exception as e:  # ray raises a bare Exception when its raylet misses a fixed 30 s start window
            shutdown()
            if attempt == 2 or address != LOCAL or "timed out during startup" not in str(e):
                raise DistributedError(f"--ray {address}: cannot start or join the Ray cluster: {e}") from e
    return True


SESSION_PREFIX = "ttcl-ray-"
DRIVER_PID = "ttcl-driver.pid"  # in a local cluster's session folder: the process that started it


def sweep_stale_sessions(parent: str, min_age_s: float = 60.0) -> list[str]:
    """Remove the session folders of local clusters whose driver is gone without its shutdown (a SIGKILL, a
    power cut: QA pass, their folders stayed in /tmp for good). A folder is stale when its driver pid file names a
    process that no longer exists and it is older than `min_age_s`; one without the file is left alone. Returns
    the folders removed."""
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(SESSION_PREFIX)]
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(parent, name)
        try:
            with open(os.path.join(folder, DRIVER_PID)) as f:
                pid = int(f.read().strip())
            if time.time() - os.path.getmtime(folder) < min_age_s or _alive(pid):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def connected() -> bool:
    """Whether this process is already a Ray driver (a cluster it started, or one it joined)."""
    return bool(_ray().is_initialized())


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C ignored within (main thread only): a second Ctrl-C that cut a shutdown or a settlement short left
    unrecorded spend, the actors' processes and their session folder behind, and a Ray traceback (QA pass);
    both are bounded (the reaping waits 10 s at most)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def shutdown() -> None:
    with _uninterrupted():
        _shutdown()


def _shutdown() -> None:
    ray = _ray()
    pids = _actor_pids(ray) if _TEMP and ray.is_initialized() else []  # a local cluster this process started
    _WORKERS.clear()
    _POOL.clear()
    if ray.is_initialized():
        ray.shutdown()
    _reap(pids)
    while _TEMP:  # a local cluster's session folder (Ray keeps every session's under /tmp/ray otherwise)
        shutil.rmtree(_TEMP.pop(), ignore_errors=True)


def _actor_pids(ray: Any) -> list[int]:
    """The processes of this driver's actors. `ray.shutdown` returns while they still run (reparented to init,
    busy for seconds after the command ended; QA pass), so the shutdown waits for them."""
    pids = []
    for actor in [*_WORKERS, *_POOL]:
        try:
            pids.append(int(ray.get(actor.pid.remote(), timeout=5)))
        except Exception:  # an actor that already died, or one that does not answer: nothing to wait for
            continue
    return pids


def _reap(pids: list[int], timeout: float = 10.0) -> None:
    """Wait for `pids` to end; kill those still there after `timeout` seconds (the cluster they served is gone)."""
    import signal

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:  # a zombie waits only for its new parent to reap it
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
        except OSError:
            return True

    end = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < end:
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
