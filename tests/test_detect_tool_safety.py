"""tools/detect.py never loses or destroys data: failed writes are counted, an interrupted
run's records are whole and --resume finishes them exactly once, its own output is never
an input, and it follows no link in its output folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from tests.helpers import REPO, run

pytestmark = [pytest.mark.caffe, pytest.mark.slow]
DETECT = REPO / "tools" / "detect.py"


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    import skimage.data
    path = tmp_path_factory.mktemp("face") / "a.jpg"
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), cv2.resize(img, (256, 256)))
    return path


def folder_of(face: Path, where: Path, n: int) -> Path:
    where.mkdir(parents=True)
    for i in range(n):
        os.link(face, where / f"f{i:03d}.jpg")
    return where


def records(out: Path) -> list[str]:
    return [json.loads(line)["path"] for line in (out / "faces.jsonl").read_text().splitlines()]


def detect(python_exe, model_dir, *args):
    return run([python_exe, DETECT, "--model", model_dir, *args])


def test_a_failed_annotation_write_is_a_failure(model_dir, face, tmp_path, python_exe):
    folder = folder_of(face, tmp_path / "in", 2)
    out = tmp_path / "out"
    (out / "annotated" / "f000.jpg.png").mkdir(parents=True)   # a folder where the PNG goes
    long_name = folder / ("n" * 250 + ".jpg")                     # its copy's name: 258 bytes
    os.link(face, long_name)
    res = detect(python_exe, model_dir, folder, "--out", out, "--annotate")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 2 and summary["status"] == "complete"
    assert any("f000.jpg.png" in e and "cannot write" in e for e in summary["errors"])
    assert any("n" * 250 in e and "cannot write" in e for e in summary["errors"])
    assert [Path(p).name for p in records(out)] == ["f001.jpg"], "no record without its picture"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_run_is_whole_and_resumes_exactly_once(model_dir, face, tmp_path,
                                                             python_exe, sig):
    folder = folder_of(face, tmp_path / "in", 60)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"status": "complete", "stale": true}')
    proc = subprocess.Popen([python_exe, DETECT, folder, "--model", model_dir, "--out", out,
                             "--annotate", "--batch", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        jsonl = out / "faces.jsonl"
        if jsonl.is_file() and jsonl.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    summary = json.loads((out / "summary.json").read_text())
    done = records(out)
    assert 0 < len(done) < 60, "interrupted mid-run"
    assert "stale" not in summary
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and summary["status"] == "interrupted", err[-800:]
        assert summary["processed"] == len(done)
    else:
        assert summary["status"] == "running"
    pictures = {p.name for p in (out / "annotated").glob("*.png")}
    assert {Path(p).name + ".png" for p in done} <= pictures   # every record has its picture
    res = detect(python_exe, model_dir, folder, "--out", out, "--annotate", "--batch", "2",
                 "--resume")
    assert res.returncode == 0, res.stderr[-800:]
    final = records(out)
    assert sorted(final) == sorted(str(p) for p in folder.iterdir()), "each image exactly once"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["resumed"] >= len(done) - 2
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or "journal" in p.name]


def test_the_tool_s_own_output_is_never_an_input(model_dir, face, tmp_path, python_exe):
    folder = folder_of(face, tmp_path / "in", 2)
    for _ in range(3):
        res = detect(python_exe, model_dir, folder, "--out", folder / "out", "--annotate")
        assert res.returncode == 0, res.stderr[-800:]
        assert json.loads((folder / "out" / "summary.json").read_text())["inputs"] == 2
    assert not (folder / "out" / "annotated" / "out").exists()


@pytest.mark.parametrize("name", ["faces.jsonl", "annotated"])
def test_links_in_the_output_folder_are_refused(model_dir, face, tmp_path, python_exe, name):
    folder = folder_of(face, tmp_path / "in", 1)
    victim = tmp_path / "precious"
    if name == "annotated":
        victim.mkdir()
    else:
        victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    res = detect(python_exe, model_dir, folder, "--out", out, "--annotate")
    assert res.returncode == 1 and f"{out / name} is a link" in res.stderr
    assert (victim.read_text() == "keep me") if name != "annotated" else not any(victim.iterdir())


def test_track_on_still_images_is_an_error(model_dir, face, tmp_path, python_exe):
    res = detect(python_exe, model_dir, face, "--out", tmp_path / "o", "--track", "5")
    assert res.returncode == 1 and "none of the inputs is a video" in res.stderr


def test_links_that_lead_nowhere_are_counted(model_dir, face, tmp_path, python_exe):
    folder = folder_of(face, tmp_path / "in", 1)
    (folder / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    loop = tmp_path / "loop_arg"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    res = detect(python_exe, model_dir, loop, folder, "--out", out)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 4 and summary["failed"] == 3
    assert len(records(out)) == 1


def test_an_existing_file_as_out_is_an_error(model_dir, face, tmp_path, python_exe):
    (tmp_path / "out").write_text("a file")
    res = detect(python_exe, model_dir, face, "--out", tmp_path / "out")
    assert res.returncode == 1 and "exists and is not a folder" in res.stderr
    assert (tmp_path / "out").read_text() == "a file"


def test_an_unwritable_faces_file_is_an_error(model_dir, face, tmp_path, python_exe):
    out = tmp_path / "out"
    (out / "faces.jsonl").mkdir(parents=True)   # cannot be opened as a file
    res = detect(python_exe, model_dir, face, "--out", out)
    assert res.returncode == 1 and "faces.jsonl" in res.stderr and "Traceback" not in res.stderr
