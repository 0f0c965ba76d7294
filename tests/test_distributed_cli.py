"""Wide runs from the command line, each on a cluster of its own (or none): `--ray` parsing, options refused
before a cluster starts, and Ctrl-C / SIGTERM / exit leaving no cluster process or folder behind."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ttcl.cli import main  # noqa: E402

pytestmark = pytest.mark.ray

ROOT = Path(__file__).parent.parent
ADAPTIVE = ROOT / "programs" / "adaptive.ttc"


def test_ray_option_takes_an_optional_address() -> None:
    from ttcl.cli import _ray_option

    assert _ray_option(["eval", "p.ttc", "--ray", "--workers", "2"]) == ["eval", "p.ttc", "--ray=local", "--workers", "2"]
    assert _ray_option(["run", "p.ttc", "--ray", "127.0.0.1:6379"]) == ["run", "p.ttc", "--ray=127.0.0.1:6379"]
    assert _ray_option(["run", "p.ttc", "--ray"]) == ["run", "p.ttc", "--ray=local"]
    # a bundled program after --ray is the program, not an address (it ran no program: "Missing argument")
    assert _ray_option(["run", "--ray", "ttcl:self_consistency", "--input", "1 +2"]) == [
        "run", "--ray=local", "ttcl:self_consistency", "--input", "1 +2"]
    assert _ray_option(["run", "p.ttc", "--ray", "ray://127.0.0.1:10001"]) == ["run", "p.ttc", "--ray=ray://127.0.0.1:10001"]


def test_an_address_without_its_port_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """`--ray 127.0.0.1` said "Got unexpected extra argument(s) (127.0.0.1)" (QA pass)."""
    for host in ("127.0.0.1", "localhost", "myhost.example.com", "127.0.0.1:", "10.0.0.5:abc"):
        assert main(["run", str(ADAPTIVE), "--input", "3 +4", "--ray", host]) == 2
        bare = host.rsplit(":", 1)[0]
        assert f"--ray {host}: a cluster's address is HOST:PORT (e.g. {bare}:6379" in capsys.readouterr().err


def test_an_address_without_its_host_is_named_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """`--ray :6379` printed Ray's own traceback ("Malformed host") before the error (QA pass)."""
    for address, hint in ((":6379", "127.0.0.1:6379"), ("ray://:10001", "ray://127.0.0.1:10001"),
                          ("[]:6379", "127.0.0.1:6379")):
        assert main(["run", str(ADAPTIVE), "--input", "3 +4", "--ray", address]) == 2
        err = capsys.readouterr().err
        assert f"--ray {address}: no host before the port; give HOST:PORT ({hint} for this machine)" in err
        assert "Traceback" not in err


def test_joining_an_address_nothing_listens_on_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Ray retried 127.0.0.1:1 for minutes, printing a warning every few seconds (found by a QA pass)."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago, and that nothing listens on now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code = main(["run", str(ADAPTIVE), "--input", "3 +4", "--ray", f"127.0.0.1:{port}"])
    assert code == 2 and time.monotonic() - t0 < 30
    assert f"--ray 127.0.0.1:{port}: cannot reach a Ray cluster there" in capsys.readouterr().err
    assert main(["run", str(ADAPTIVE), "--input", "3 +4", "--ray", "127.0.0.1:99999"]) == 2
    assert "--ray 127.0.0.1:99999: the port must be in 1..65535" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "add --ray"),
    (["--ray", "--workers", "0"], "--workers 0: expected a positive number"),
    (["--ray", "--shards", "-1"], "--shards -1: expected a positive number"),
    (["--ray", ""], '--ray "": an empty address'),  # was "Got unexpected extra argument(s) ()" (QA pass)
])
def test_bad_wide_options_are_clean_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ADAPTIVE), "--input", "3 +4", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_while_the_cluster_starts_stops_it_whole(tmp_path: Path) -> None:
    """Ctrl-C inside ray.init left Ray's agents running for a minute and could crash the driver (SIGSEGV, QA
    pass): it now waits for the start, shuts the cluster down, and exits 130."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a cluster of its own, not this module's
    proc = subprocess.Popen([sys.executable, "-m", "ttcl.cli", "run", str(ADAPTIVE), "--input", "3 +4", "--ray",
                             "--trace", str(tmp_path / "t.jsonl")], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("ray: starting a local cluster")  # said once Ctrl-C is deferred
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert "Ctrl-C: the cluster is starting; stopping once it has, to shut it down whole" in err
    assert "Traceback" not in err


def test_sigterm_during_a_wide_run_stops_the_cluster_and_exits_143(tmp_path: Path) -> None:
    """Ray's own handler printed a stack dump (`*** SIGTERM received ... PC: @`) and left with 15 (QA pass)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    before = set(Path("/tmp").glob("ttcl-ray-*"))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"{k} +{k}", "answer": str(2 * k)}) + "\n" for k in range(40)))
    proc = subprocess.Popen([sys.executable, "-m", "ttcl.cli", "run", str(ADAPTIVE), "--dataset", str(data), "--ray",
                             "--batch-items", "1", "--trace", str(tmp_path / "t.jsonl")], stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    assert proc.stderr is not None
    while not (line := proc.stderr.readline()).startswith("ray: worker pids"):
        assert line, "the run ended before its workers started"
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    assert "terminated: stopping the Ray cluster" in err
    assert "SIGTERM received" not in err and "Traceback" not in err, err
    assert set(Path("/tmp").glob("ttcl-ray-*")) <= before  # its session folder went with its cluster


def test_a_wide_run_ends_after_its_workers(tmp_path: Path) -> None:
    """`ray.shutdown` returned while the shard workers still ran, reparented to init and busy for seconds after
    exit 0 (QA pass); the command now waits for them."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"{k} +{k}", "answer": str(2 * k)}) + "\n" for k in range(8)))
    p = subprocess.run([sys.executable, "-m", "ttcl.cli", "run", str(ADAPTIVE), "--dataset", str(data), "--ray",
                        "--workers", "2", "--trace", str(tmp_path / "t.jsonl")], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("ray: worker pids "))
    pids = [int(x) for x in line.removeprefix("ray: worker pids ").split(", ")]
    assert len(pids) == 2

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
        except OSError:
            return False

    assert not [pid for pid in pids if running(pid)]


def test_a_trace_that_cannot_be_created_is_refused_before_the_cluster_starts(capsys: pytest.CaptureFixture[str]) -> None:
    """It started the cluster and then printed Ray's remote traceback around the one-line error (QA pass)."""
    code = main(["run", str(ADAPTIVE), "--input", "3 +4", "--ray", "--trace", "/proc/nowhere/t.jsonl"])
    err = capsys.readouterr().err
    assert code == 2 and "ray: starting" not in err
    assert err == "/proc/nowhere/t.jsonl: error: cannot write the trace: No such file or directory\n"


@pytest.mark.parametrize("command", ["run", "eval"])
def test_an_error_in_the_program_comes_before_the_cluster_starts(command: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`ttcl run --ray` started a cluster (seconds) before it compiled the program (left alone in the last stop's
    note); `ttcl eval --ray` compiled it first already."""
    bad = tmp_path / "bad.ttc"
    bad.write_text(ADAPTIVE.read_text().replace("return vote(", "retrun vote("))
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "3 +4", "answer": "7"}\n')
    code = main([command, str(bad), "--dataset", str(data), "--ray"])
    err = capsys.readouterr().err
    assert code == 2 and "ray: starting" not in err and "bad.ttc:" in err, err


def test_a_killed_drivers_session_folder_is_swept_by_the_next_local_cluster(tmp_path: Path) -> None:
    """A wide run killed with SIGKILL cannot remove its cluster's session folder: it stayed in /tmp for good (QA
    pass). The next local cluster removes such folders, and only those: a folder whose driver lives, one without a
    driver pid file, and a fresh one stay."""
    import subprocess
    import sys

    from ttcl.runtime.ray_cluster import DRIVER_PID, sweep_stale_sessions

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"{k} +{k}", "answer": str(2 * k)}) + "\n" for k in range(40)))
    parent = tmp_path / "tmp"
    parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ttcl", "run", str(ADAPTIVE), "--dataset", str(data), "--ray",
                             "--batch-items", "1"], stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    assert proc.stderr is not None
    while not (line := proc.stderr.readline()).startswith("ray: worker pids"):
        assert line, "the run ended before its workers started"
    mine = [p for p in Path("/tmp").glob("ttcl-ray-*") if (p / DRIVER_PID).is_file()
            and (p / DRIVER_PID).read_text() == str(proc.pid)]
    assert len(mine) == 1
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert mine[0].is_dir()  # the kill left it
    os.utime(mine[0], (time.time() - 120, time.time() - 120))
    alive = parent / "ttcl-ray-alive"
    alive.mkdir()
    (alive / DRIVER_PID).write_text(str(os.getpid()))
    bare = parent / "ttcl-ray-nopid"
    bare.mkdir()
    fresh = parent / "ttcl-ray-fresh"
    fresh.mkdir()
    (fresh / DRIVER_PID).write_text(str(proc.pid))
    for p in (alive, bare):
        os.utime(p, (time.time() - 120, time.time() - 120))
    assert str(mine[0]) in sweep_stale_sessions("/tmp")  # (with any other stale one a killed run left there)
    assert not mine[0].exists()
    assert sweep_stale_sessions(str(parent)) == []
    assert alive.is_dir() and bare.is_dir() and fresh.is_dir()


def test_the_worker_pids_are_said_once_while_they_stay_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    """An eval's runs reuse the workers: `ray: worker pids` came once per run (QA pass: 5 times in one command)."""
    from ttcl.commands.wide import show_workers

    show_workers([11, 12])
    show_workers([11, 12])
    show_workers([11, 13])  # a worker replaced
    assert capsys.readouterr().err.splitlines() == ["ray: worker pids 11, 12", "ray: worker pids 11, 13"]


def test_a_device_this_machine_lacks_is_refused_before_a_local_cluster_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--ray --device cuda` on a machine without a GPU started the cluster, then was refused (QA pass)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for cmd in ("run", "eval"):
        code = main([cmd, str(ADAPTIVE), *(["--input", "3 +4"] if cmd == "run" else ["--dataset", "-"]), "--ray",
                     "--device", "cuda"])
        err = capsys.readouterr().err
        assert code == 2 and "device 'cuda' requested but CUDA is not available" in err and "ray:" not in err, err
