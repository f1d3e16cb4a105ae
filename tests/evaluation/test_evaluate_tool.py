"""tools/evaluate.py on inputs that used to crash it or pass as success: each is a clear
error naming the value or the list line, and its outputs are never lost."""
from __future__ import annotations

import json
import os

import pytest

from tests.helpers import REPO, needs_shared, run

EVALUATE = REPO / "tools" / "evaluate.py"
MODEL_5 = REPO / "models" / "tcdcn_5pt"
MODEL_68 = REPO / "models" / "tcdcn_68pt"


def evaluate(python_exe, *args):
    return run([python_exe, EVALUATE, *args], env={**os.environ, "GLOG_minloglevel": "2"})


def mtfl_list(dataset, tmp_path, edit=None):
    """The dataset fixture's MTFL list, its first line's ten coordinates changed by `edit`."""
    lines = (dataset / "MTFL" / "training.txt").read_text().strip().splitlines()
    if edit:
        fields = lines[0].split()
        fields[1:11] = edit(fields[1:11])
        lines[0] = " ".join(fields)
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda c: ["50"] * 10, "list.txt:1: the eye points coincide"),
    (lambda c: ["1e300"] + c[1:], "list.txt:1: point 1 .* lies far outside"),
    (lambda c: [str(float(c[0]) + 1000)] + c[1:], "list.txt:1: point 1 .* lies far outside"),
])
def test_faces_that_cannot_be_measured_are_named(dataset, tmp_path, python_exe, edit, words):
    lst = mtfl_list(dataset, tmp_path, edit)
    res = evaluate(python_exe, "--model", MODEL_5, "--dataset", "mtfl", "--root", dataset,
                   "--list", lst, "--boxes", "landmarks")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert __import__("re").search(words, res.stderr), res.stderr[-500:]


def test_an_empty_list_is_an_error(dataset, tmp_path, python_exe):
    (tmp_path / "empty.txt").write_text("")
    res = evaluate(python_exe, "--model", MODEL_5, "--dataset", "mtfl", "--root", dataset,
                   "--list", tmp_path / "empty.txt")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "no faces" in res.stderr or "empty" in res.stderr


def test_a_missing_list_is_named(dataset, tmp_path, python_exe):
    res = evaluate(python_exe, "--model", MODEL_5, "--dataset", "mtfl", "--root", dataset,
                   "--list", tmp_path / "nothere.txt")
    assert res.returncode == 1 and "nothere.txt" in res.stderr


def test_a_model_of_another_scheme_is_an_error(dataset, tmp_path, python_exe):
    res = evaluate(python_exe, "--model", MODEL_68, "--dataset", "mtfl", "--root", dataset,
                   "--list", mtfl_list(dataset, tmp_path))
    assert res.returncode == 1 and "5 points, but the model tcdcn_68pt predicts 68" in res.stderr


@pytest.mark.parametrize("scale", ["-1", "0", "100"])
def test_crop_scales_out_of_range_are_errors(dataset, tmp_path, python_exe, scale):
    res = evaluate(python_exe, "--model", MODEL_5, "--dataset", "mtfl", "--root", dataset,
                   "--list", mtfl_list(dataset, tmp_path), "--crop-scale", scale)
    assert res.returncode == 1 and "--crop-scale must be from" in res.stderr


def test_outputs_go_into_new_folders_and_never_over_each_other(dataset, tmp_path, python_exe):
    lst = mtfl_list(dataset, tmp_path)
    common = ["--model", MODEL_5, "--dataset", "mtfl", "--root", dataset, "--list", lst,
              "--boxes", "list"]
    same = evaluate(python_exe, *common, "--json", tmp_path / "r.json", "--ced", tmp_path / "r.json")
    assert same.returncode == 1 and "is the --json report's path" in same.stderr
    assert not (tmp_path / "r.json").exists()
    res = evaluate(python_exe, *common, "--json", tmp_path / "a" / "r.json",
                   "--ced", tmp_path / "b" / "c.png")
    assert res.returncode == 0, res.stderr[-500:]
    assert json.loads((tmp_path / "a" / "r.json").read_text())["n_faces"] > 0
    assert (tmp_path / "b" / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_full_device_is_an_error_and_stays_a_device(dataset, tmp_path, python_exe):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    res = evaluate(python_exe, "--model", MODEL_5, "--dataset", "mtfl", "--root", dataset,
                   "--list", mtfl_list(dataset, tmp_path), "--boxes", "list",
                   "--json", "/dev/full", "--ced", tmp_path / "c.png")
    assert res.returncode == 1 and "cannot write /dev/full" in res.stderr
    assert not os.path.isfile("/dev/full")


@needs_shared("300W/afw", "300-W AFW")
def test_300w_from_a_folder_without_a_list(tmp_path, python_exe):
    from tests.helpers import SHARED_DATA
    res = evaluate(python_exe, "--model", MODEL_68, "--dataset", "300w", "--root",
                   SHARED_DATA / "300W" / "afw", "--json", tmp_path / "afw.json")
    assert res.returncode == 0, res.stderr[-500:]
    assert json.loads((tmp_path / "afw.json").read_text())["n_faces"] > 300
    assert (tmp_path / "afw.png").is_file()
