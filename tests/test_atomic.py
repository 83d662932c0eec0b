"""Atomic writes (anyclip/atomic.py): a failed or killed write leaves the previous file whole, never a part."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anyclip.atomic import atomic_write, atomic_write_text


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")

    def half_then_fail(tmp):
        Path(tmp).write_text("new, but only half")
        raise KeyboardInterrupt("stopped while writing")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_kill_minus_9_in_the_middle_of_a_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "shard.bin"
    target.write_bytes(b"old" * 1000)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from anyclip.atomic import atomic_write\n"
        "def slow(tmp):\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'new' * 500); f.flush(); print('half', flush=True); time.sleep(60); f.write(b'new' * 500)\n"
        f"atomic_write({str(target)!r}, slow)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "half"
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old" * 1000  # the half-written temporary never took the name
    leftovers = [p for p in tmp_path.iterdir() if p.name != "shard.bin"]
    assert leftovers and all(p.name.startswith(".shard.bin.") for p in leftovers)  # hidden, beside the target
