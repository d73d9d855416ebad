"""The run-folder lock: one run per folder, stale locks of dead processes taken over, released on errors."""

import logging
import os
import socket
import subprocess
import sys

import pytest

from mmrobust.engine.run_lock import LOCK_NAME, RunFolderError, RunLock, pid_alive, read_holder


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_lock_records_pid_and_host_and_is_removed_on_exit(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        assert read_holder(lock.path) == (os.getpid(), socket.gethostname())
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_second_holder_refuses_with_one_line_naming_folder_and_pid(tmp_path):
    busy = rf"run folder {tmp_path} is in use by another run \(pid {os.getpid()}"
    with RunLock(tmp_path), pytest.raises(RunFolderError, match=busy):
        RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire()  # free again


def test_lock_is_released_when_the_run_raises(tmp_path):
    with pytest.raises(KeyboardInterrupt), RunLock(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{pid} {socket.gethostname()}\n")
    with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
        assert read_holder(lock.path)[0] == os.getpid()
    assert f"stale lock of process {pid}" in caplog.text


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(f"{dead_pid()} some-other-host\n")
    with pytest.raises(RunFolderError, match=rf"some-other-host\); if that run is gone, remove .*{LOCK_NAME}"):
        RunLock(tmp_path).acquire()
