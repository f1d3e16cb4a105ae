"""The one rule for files the project writes (tcdcn.paths.atomic_output): whole or not at
all, and a link, device or FIFO named is written through, never replaced."""
from __future__ import annotations

import json
import os
import threading

import pytest
from tcdcn.paths import atomic_output, atomic_write, write_json


def test_a_regular_file_is_replaced_whole_and_no_temporary_stays(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["r.bin"]


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_json(link, {"b": 2})
    assert link.is_symlink() and json.loads(real.read_text()) == {"b": 2}
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]


def test_a_fifo_receives_the_bytes_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and fifo.is_fifo()


def test_a_full_device_is_an_error_naming_it_and_stays_a_device():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with pytest.raises(OSError) as err:
        write_json("/dev/full", {"c": 3})
    assert err.value.filename == "/dev/full" and "space" in err.value.strerror
    assert not os.path.isfile("/dev/full")


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="folder"):
        write_json(tmp_path, {})


def test_a_long_name_is_not_made_longer_by_the_temporary(tmp_path):
    target = tmp_path / ("n" * 250 + ".json")   # 255 bytes, the usual limit
    write_json(target, [1])
    assert json.loads(target.read_text()) == [1]
