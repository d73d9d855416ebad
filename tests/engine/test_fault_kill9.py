"""Fault tests through the real CLI: SIGKILL at every write point (the ``MMROBUST_FAULT`` test hook of
``mmrobust.engine.faults``), then ``resume=true`` -> the same weights, metrics, history and CSV log as an
uninterrupted run. Also: a second run on a locked folder refuses.

One run is killed at each write point in turn, resumed in between (10 short runs in all, instead of two per write
point). Each run is a process of its own, killed for real, that calls the CLI entry point ``mmrobust.cli.main``:
it is forked from a forkserver that imported mmrobust once, so the runs skip the ~3 s import of torch (the
locked-folder case runs the console script itself). ``mmrobust eval`` of a DMRNet run is in ``test_eval_cli.py``."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmrobust.engine.checkpoint import load_checkpoint
from mmrobust.engine.faults import FAULT_ENV
from mmrobust.engine.run_lock import LOCK_NAME, RunLock
from tests.conftest import MMROBUST, TINY_CLI

pytestmark = pytest.mark.slow
TINY = ["dataset=synthetic", *TINY_CLI, "seed=1"]  # 2 epochs of 8 steps; the best epoch is the last (1)
KILLED = -signal.SIGKILL


@dataclass
class Finished:
    returncode: int  # -9: killed by SIGKILL
    stdout: str
    stderr: str


def _main_in_child(argv: list[str], fault: str | None, log: str) -> None:
    """The child process: the CLI entry point with the fault hook set, its output to ``log``; exits with main's
    status (SystemExit) unless the hook kills it first."""
    os.environ.pop(FAULT_ENV, None)
    if fault:
        os.environ[FAULT_ENV] = fault
    os.environ["OMP_NUM_THREADS"] = "1"
    sys.stdout = sys.stderr = open(log, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    from mmrobust.cli import main

    main(argv)


_FORKSERVER = multiprocessing.get_context("forkserver")  # preloads mmrobust.cli (tests/conftest.py)


def train(run_dir: Path, *extra: str, fault: str | None = None, timeout: float = 120) -> Finished:
    """``mmrobust train`` (tiny run) in a new process forked from the preloaded forkserver."""
    log = Path(f"{run_dir}.{len(list(run_dir.parent.glob(run_dir.name + '.*.log')))}.log")
    argv = ["train", *TINY, f"hydra.run.dir={run_dir}", *extra]
    child = _FORKSERVER.Process(target=_main_in_child, args=(argv, fault, str(log)))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        raise TimeoutError(f"{argv} did not finish in {timeout} s")
    text = log.read_text() if log.exists() else ""
    return Finished(child.exitcode, text, text)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    out = train(run_dir)
    assert out.returncode == 0, out.stderr
    assert json.loads((run_dir / "results.json").read_text())["fits"]["."]["best_epoch"] == 1
    return run_dir


def assert_same_run(a, b):
    for name in ("best.ckpt", "last.ckpt"):
        ca, cb = load_checkpoint(a / "checkpoints" / name), load_checkpoint(b / "checkpoints" / name)
        assert ca["epoch"] == cb["epoch"], name
        for key in ca["model"]:
            assert torch.equal(ca["model"][key], cb["model"][key]), (name, key)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["metrics"] == rb["metrics"] and ra["fits"] == rb["fits"]
    assert json.loads((a / "history.json").read_text()) == json.loads((b / "history.json").read_text())
    assert (a / "logs/metrics.csv").read_text() == (b / "logs/metrics.csv").read_text()
    assert (a / "table.md").read_text() == (b / "table.md").read_text()
    assert not list(b.rglob("*.tmp")) and not (b / LOCK_NAME).exists()


# the kill points in the order one run reaches them: each kill is followed by a resume that reaches the next
KILLS = [
    "after:config.yaml",  # nothing saved yet: restarted with overwrite=true (resume=true refuses, strictly)
    "after:last.ckpt:epoch0",
    "after:best.ckpt:epoch1",  # between best.ckpt and last.ckpt of the last epoch
    "after:last.ckpt:epoch1",  # training finished, history.json and results.json not yet written
    "after:history.json:epoch1",  # rewritten from last.ckpt by the resume
    "before:results.json",  # killed during the final evaluation
    "after:results.json",
    "after:table",
]


def test_kill_at_every_write_point_then_resume_gives_the_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "run"
    trained = None
    for i, fault in enumerate(KILLS):
        extra = [] if i == 0 else ["overwrite=true"] if i == 1 else ["resume=true"]
        out = train(run_dir, *extra, fault=fault)
        assert out.returncode == KILLED, (fault, out.returncode, out.stderr[-2000:])
        if i == 1:
            assert "taking over the stale lock of process" in out.stdout + out.stderr  # the killed run's lock
        if fault == "after:last.ckpt:epoch1":
            trained = (run_dir / "checkpoints/last.ckpt").read_bytes()
    out = train(run_dir, "resume=true")
    assert out.returncode == 0, out.stderr
    assert (run_dir / "checkpoints/last.ckpt").read_bytes() == trained  # after training: re-evaluated, not retrained
    assert_same_run(reference, run_dir)


def test_second_run_on_a_locked_folder_refuses_with_one_line(tmp_path, cli_env):
    argv = [*MMROBUST, "train", *TINY, f"hydra.run.dir={tmp_path / 'busy'}"]
    with RunLock(tmp_path / "busy"):  # the console script itself
        out = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"run folder {tmp_path / 'busy'} is in use by another run (pid {os.getpid()}" in out.stderr
