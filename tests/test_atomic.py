"""tflite_fg.atomic: the final name only ever holds a complete file, and no temp file outlives its writer."""
import os
import subprocess
import sys

import pytest

from tflite_fg import atomic
from tflite_fg.atomic import atomic_write


def test_writes_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["f.bin"]


@pytest.mark.parametrize("where", ["open", "fsync", "replace"])
def test_interrupt_at_any_point_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "checkpoint.npz"
    atomic_write(path, b"complete")
    real = {"open": os.open, "fsync": os.fsync, "replace": os.replace}[where]

    def interrupted(*args, **kwargs):
        if where == "open":
            real(*args, **kwargs)  # the file exists, then Ctrl-C lands before its descriptor is kept
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new and longer")
    monkeypatch.undo()
    assert path.read_bytes() == b"complete" and os.listdir(tmp_path) == ["checkpoint.npz"]


def test_temp_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".checkpoint.npz.{dead}.0123abcd.tmp"
    alive = tmp_path / f".checkpoint.npz.{os.getppid()}.0123abcd.tmp"  # a running writer's temp is kept
    other = tmp_path / f".other.npz.{dead}.0123abcd.tmp"
    for p in (stale, alive, other):
        p.write_bytes(b"")
    atomic_write(tmp_path / "checkpoint.npz", b"x")
    assert not stale.exists() and alive.exists() and other.exists()
