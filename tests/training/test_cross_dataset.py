"""TCDCN's auxiliary tasks across data sets: tools/mix_lmdb.py's records, the masked
68-point loss (a face without 68 points moves no 68-point weight; its gradient by finite
differences), and tools/train.py / tools/ablate.py on a tiny mixed LMDB."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

pytest.importorskip("caffe.proto", reason="pycaffe does not import: run tools/setup.sh")
from tcdcn.boxes import five_points
from tcdcn.data.datasets import DataError
from tcdcn.data.lmdb_build import BuildConfig, build
from tcdcn.data.lmdb_io import decode_datum, read_lmdb
from tcdcn.data.lmdb_mix import cross_label_layout, from_aux, mix, mixed_length
from tcdcn.schemes import TASKS, UNLABELLED

from tests.helpers import REPO, run


def template68() -> np.ndarray:
    """A drawn 68-point face in unit coordinates, in the iBUG order (jaw, brows, nose,
    eyes, mouth)."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.c_[0.5 + 0.45 * np.cos(t), 0.4 + 0.55 * np.sin(t)]
    brows = np.r_[np.c_[np.linspace(0.15, 0.45, 5), np.full(5, 0.3)],
                  np.c_[np.linspace(0.55, 0.85, 5), np.full(5, 0.3)]]
    nose = np.r_[np.c_[np.full(4, 0.5), np.linspace(0.38, 0.58, 4)],
                 np.c_[np.linspace(0.4, 0.6, 5), np.full(5, 0.63)]]
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False) + np.pi
    eyes = np.r_[np.c_[0.32 + 0.08 * np.cos(a), 0.42 + 0.03 * np.sin(a)],
                 np.c_[0.68 + 0.08 * np.cos(a), 0.42 + 0.03 * np.sin(a)]]
    o = np.linspace(0, 2 * np.pi, 12, endpoint=False) + np.pi
    i = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi
    mouth = np.r_[np.c_[0.5 + 0.17 * np.cos(o), 0.78 + 0.06 * np.sin(o)],
                  np.c_[0.5 + 0.10 * np.cos(i), 0.78 + 0.03 * np.sin(i)]]
    pts = np.r_[jaw, brows, nose, eyes, mouth]
    assert pts.shape == (68, 2)
    return pts


def write_300w(folder, n: int, seed: int = 0):
    """n images with a drawn face and its .pts (1-based, as 300-W's)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for k in range(n):
        side = rng.uniform(50, 70)
        pts = template68() * side + rng.uniform(20, 120 - side - 20, 2) + rng.normal(0, 1, (68, 2))
        img = np.full((120, 120), 60, np.uint8)
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, 220, -1)
        cv2.imwrite(str(folder / f"face{k:03d}.jpg"), img)
        body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts)
        (folder / f"face{k:03d}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    return folder


@pytest.fixture
def inputs(dataset, tmp_path, python_exe):
    """(300-W LMDB, MTFL LMDB): tiny, 40 px; the 300-W one by make_lmdb.py, whose recorded
    command lets a released model rebuild its validation split."""
    faces = write_300w(tmp_path / "w300", 16)
    main, aux = tmp_path / "main", tmp_path / "aux"
    out = run([python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "300w", "--root", faces,
               "--out", main, "--samples", "150", "--val-fraction", "0.25", "--seed", "1",
               "--workers", "1"])
    assert out.returncode == 0, out.stderr[-2000:]
    build(BuildConfig(dataset="mtfl", root=dataset, out=aux, samples=120, val_fraction=0.25,
                      seed=1, workers=1))
    return main, aux


def records(folder):
    return [decode_datum(v) for _, v in read_lmdb(folder)]


def test_the_aux_share_is_exact_and_evenly_spread():
    for f in (0.5, 0.25, 0.3, 0.9):
        picks = [from_aux(i, f) for i in range(1000)]
        assert sum(picks) == math.floor(1000 * f)
        # any window of 20 records holds the share within one record
        window = [sum(picks[i:i + 20]) for i in range(980)]
        assert max(window) - min(window) <= 1
    assert mixed_length(100, 100, 0.5) == 200
    assert mixed_length(150, 120, 0.5) == 241          # the aux set runs out first
    assert mixed_length(150, 120, 0.25) == 200         # the main set does
    with pytest.raises(ValueError):
        mixed_length(10, 10, 1.0)


def test_mixed_records_carry_every_label_in_one_layout(inputs, tmp_path):
    main, aux = inputs
    out = tmp_path / "mixed"
    m = mix(main, aux, out, aux_fraction=0.25)
    layout = cross_label_layout(68)
    assert m["label_layout"] == layout and m["label_dim"] == 136 + 1 + 10 + len(TASKS)
    main_recs, aux_recs = records(main / "train_lmdb"), records(aux / "train_lmdb")
    mixed = records(out / "train_lmdb")
    assert len(mixed) == mixed_length(150, 120, 0.25) == m["counts"]["train_records"] == 200
    aux_manifest = json.loads((aux / "manifest.json").read_text())
    ia = im = 0
    for i, (image, label, _) in enumerate(mixed):
        assert len(label) == m["label_dim"]
        if from_aux(i, 0.25):
            src_image, src_label, _ = aux_recs[ia]
            ia += 1
            assert label[136] == 0 and not label[:136].any()
            np.testing.assert_array_equal(label[137:147], src_label[:10])
            for t in TASKS:
                assert label[layout[t.name][0]] == src_label[aux_manifest["label_layout"][t.name][0]]
        else:
            src_image, src_label, _ = main_recs[im]
            im += 1
            assert label[136] == 1
            np.testing.assert_array_equal(label[:136], src_label)
            np.testing.assert_allclose(label[137:147],
                                       five_points(src_label.reshape(68, 2).astype(np.float64)).ravel(),
                                       rtol=0, atol=1e-6)
            assert (label[147:] == UNLABELLED).all()
        np.testing.assert_array_equal(image, src_image)
    assert (ia, im) == (50, 150) == (m["cross_dataset"]["aux_records"],
                                     m["cross_dataset"]["main_records"])
    val = records(out / "val_lmdb")
    assert len(val) == len(records(main / "val_lmdb")) == m["counts"]["val_records"] > 0
    assert all(label[136] == 1 for _, label, _ in val)
    assert (out / "val_list.txt").read_text() == (main / "val_list.txt").read_text()
    # the main set's make_lmdb command stays the one to rebuild its faces by
    assert m["command"] == json.loads((main / "manifest.json").read_text())["command"]


def test_sets_that_cannot_be_mixed_are_refused_and_nothing_is_left(inputs, dataset, tmp_path):
    main, aux = inputs
    with pytest.raises(DataError, match="main set must hold dense landmarks"):
        mix(aux, main, tmp_path / "swapped")
    big = tmp_path / "aux48"
    build(BuildConfig(dataset="mtfl", root=dataset, out=big, samples=20, val_fraction=0.25,
                      seed=1, workers=1, size=48))
    with pytest.raises(DataError, match="crop sizes differ.*40 px.*48 px"):
        mix(main, big, tmp_path / "sizes")
    with pytest.raises(DataError, match="manifest.json not found"):
        mix(main, tmp_path / "nowhere", tmp_path / "none")
    assert not any(p.name.startswith((".swapped", "swapped", ".sizes", "sizes", ".none", "none"))
                   for p in tmp_path.iterdir())


def _mixed_net(caffe, inputs, tmp_path, batch: int, loss: str = "wing", stage: str = "multitask"):
    from tcdcn.training.net import NetOptions, train_net
    main, aux = inputs
    out = tmp_path / "mixed"
    if not out.exists():
        mix(main, aux, out, aux_fraction=0.5)
    opts = NetOptions(scheme="68pt", cross_dataset=True, labelled_fraction=0.5,
                      landmark_loss=loss)
    proto = train_net(str(out / "train_lmdb"), str(out / "val_lmdb"), stage, opts, batch=batch)
    path = tmp_path / f"net_{loss}_{batch}.prototxt"
    path.write_text(str(proto))
    caffe.set_random_seed(3)
    return caffe.Net(str(path), caffe.TRAIN), proto


@pytest.mark.caffe
def test_a_face_without_68_points_moves_no_68_point_weight(caffe, inputs, tmp_path):
    net, proto = _mixed_net(caffe, inputs, tmp_path, batch=1)
    loss = next(l for l in proto.layer if l.name == "landmark_loss")
    assert list(loss.loss_weight) == [2.0]          # 1 / the labelled share
    seen = set()
    for _ in range(4):                              # records 0, 1, 2, 3: main, aux, main, aux
        net.clear_param_diffs()
        net.forward()
        net.backward()
        mask = float(net.blobs["landmark_mask"].data.ravel()[0])
        dense = [np.abs(p.diff).max() for p in net.params["fc_landmarks"]]
        five = np.abs(net.params["fc_landmarks_5pt"][0].diff).max()
        gender = np.abs(net.params["fc_gender"][0].diff).max()
        if mask == 0:
            assert float(net.blobs["landmark_loss"].data) == 0
            assert max(dense) == 0, dense            # no 68-point weight moves
            assert five > 0 and gender > 0           # its own tasks do
        else:
            assert float(net.blobs["landmark_loss"].data) > 0
            assert min(dense) > 0 and five > 0
            assert gender == 0                       # 300-W faces have no attributes
        seen.add(mask)
    assert seen == {0.0, 1.0}


@pytest.mark.caffe
@pytest.mark.parametrize("loss", ["euclidean", "wing"])
def test_masked_loss_gradient_matches_finite_differences(caffe, inputs, tmp_path, loss):
    """d(weighted landmark loss)/d(fc_landmarks bias) on a batch of one 300-W and one MTFL
    face: backward against central differences of the forward pass."""
    net, proto = _mixed_net(caffe, inputs, tmp_path, batch=2, loss=loss)
    net.forward()
    assert sorted(net.blobs["landmark_mask"].data.ravel().tolist()) == [0.0, 1.0]
    after_data = next(l.name for l in proto.layer if l.type == "Slice")
    weight = 2.0

    def dense_loss() -> float:
        net.forward(start=after_data)
        return weight * float(net.blobs["landmark_loss"].data)

    net.clear_param_diffs()
    net.forward(start=after_data)
    net.backward()
    bias = net.params["fc_landmarks"][1]
    analytic = bias.diff.copy()
    eps = 1e-2
    rng = np.random.default_rng(0)
    for j in rng.choice(136, 12, replace=False):
        keep = float(bias.data[j])
        bias.data[j] = keep + eps
        up = dense_loss()
        bias.data[j] = keep - eps
        down = dense_loss()
        bias.data[j] = keep
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - analytic[j]) <= 2e-2 * abs(numeric) + 2e-4, (j, numeric, analytic[j])
    # the comparison compared something: the 300-W face's gradient is not zero
    assert np.abs(analytic).max() > 1e-3


@pytest.mark.slow
@pytest.mark.caffe
def test_train_multitask_on_the_mix_then_landmarks_on_300w(inputs, tmp_path, python_exe):
    """--landmark-lmdb: the multitask stage reads the mixed LMDB (every head), the
    landmark stages the 300-W one (the dense head alone); every stage stops on the 68-point
    validation loss; the released deploy net has the dense head only."""
    main, aux = inputs
    mixed = tmp_path / "mixed"
    out = run([python_exe, REPO / "tools" / "mix_lmdb.py", "--main", main, "--aux", aux,
               "--out", mixed])
    assert out.returncode == 0, out.stderr[-2000:]
    # half and half until the 120 MTFL records run out: 241 records, 121 of them 300-W's
    assert "train: 241 records (121 from" in out.stdout and "120 from" in out.stdout, out.stdout
    runs = tmp_path / "run"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", mixed, "--landmark-lmdb", main,
               "--run", runs, "--max-iter", "20", "10", "10", "--test-interval", "10",
               "--batch", "8", "--patience", "2", "--threads", "1", "--loss", "wing", "--lr", "0.01"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((runs / "state.json").read_text())
    assert list(state["stages"]) == ["multitask", "landmarks", "finetune"]
    assert all(s["measure"] == "landmark" for s in state["stages"].values())
    assert state["net_options"]["cross_dataset"] and state["net_options"]["labelled_fraction"] == 0.5
    multitask = (runs / "multitask" / "train_val.prototxt").read_text()
    finetune = (runs / "finetune" / "train_val.prototxt").read_text()
    assert str((mixed / "train_lmdb").resolve()) in multitask and "fc_gender" in multitask
    assert str((main / "train_lmdb").resolve()) in finetune
    assert "fc_gender" not in finetune and "landmark_mask" not in finetune
    rel = tmp_path / "model"
    out = run([python_exe, REPO / "tools" / "release_model.py", "--run", runs, "--out", rel,
               "--validation-only", "--root", tmp_path / "w300", "--calibration-faces", "0"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    meta = json.loads((rel / "model.json").read_text())
    deploy = (rel / meta["files"]["deploy"]).read_text()
    assert "fc_landmarks" in deploy and "fc_gender" not in deploy and "5pt" not in deploy
    assert meta["attributes"] == {} and not meta["net_options"]["cross_dataset"]
    # compare_models pools pairs of different splits only
    same = run([python_exe, REPO / "tools" / "compare_models.py", rel, rel, "--also", rel, rel,
                "--root", tmp_path / "w300"])
    assert same.returncode == 2 and "validates on the same faces" in same.stderr, same.stderr
    # a --landmark-lmdb that is not the mix's dense set is refused before any work
    bad = run([python_exe, REPO / "tools" / "train.py", "--lmdb", mixed, "--landmark-lmdb", aux,
               "--run", tmp_path / "bad", "--max-iter", "2", "2", "2"])
    assert bad.returncode != 0 and "--landmark-lmdb" in bad.stderr and "attributes" in bad.stderr
    assert not (tmp_path / "bad" / "multitask").exists()


@pytest.mark.slow
@pytest.mark.caffe
def test_ablation_suite_runs_the_mixed_variant_beside_its_baseline(inputs, tmp_path, python_exe):
    """tools/ablate.py --suite 68pt --aux-lmdb: the mixed LMDB is built once under OUT, the
    variant's stage 1 (multitask, on the mix) gets the baseline's landmark-stage budget, and
    both are measured on the same validation faces."""
    main, aux = inputs
    ab = tmp_path / "abl"
    args = [python_exe, REPO / "tools" / "ablate.py", "--suite", "68pt", "--lmdb", main,
            "--aux-lmdb", aux, "--out", ab, "--root", tmp_path / "w300", "--max-iter", "1", "10",
            "10", "--test-interval", "10", "--lr", "0.01",
            "--only", "5-point conv1-3, frozen in stage 1, then trained",
            "5-point conv1-3, frozen in stage 1 with MTFL"]
    out = run(args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((ab / "ablations.json").read_text())
    mixed = next(v for k, v in results.items() if "MTFL" in k)
    plain = next(v for k, v in results.items() if k.endswith("then trained"))
    assert mixed["budget"] == [10, 1, 10] and plain["budget"] == [1, 10, 10]
    assert mixed["lmdb"].endswith("lmdb_mix") and "--landmark-lmdb" in mixed["flags"]
    assert (ab / "lmdb_mix" / "manifest.json").is_file()
    assert mixed["val_nme"] > 0 and plain["val_nme"] > 0
    # without --aux-lmdb the variant is skipped, not failed
    again = run([python_exe, REPO / "tools" / "ablate.py", "--suite", "68pt", "--lmdb", main,
                 "--out", tmp_path / "abl2", "--only", "5-point conv1-3, frozen in stage 1 with"])
    assert again.returncode == 0 and "skipped (needs --aux-lmdb)" in again.stdout, again.stderr


@pytest.mark.slow
@pytest.mark.caffe
def test_aux_in_finetune_keeps_every_task_on_while_the_trunk_trains(inputs, tmp_path, python_exe):
    main, aux = inputs
    mixed = tmp_path / "mixed"
    mix(main, aux, mixed)
    runs = tmp_path / "run"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", mixed, "--run", runs,
               "--stages", "multitask", "finetune", "--aux-in-finetune", "--max-iter", "10", "1",
               "10", "--test-interval", "10", "--batch", "8", "--threads", "1", "--lr", "0.01",
               "--loss", "wing", "--lr-policy", "poly"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Parse((runs / "finetune" / "train_val.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    weights = {l.name: list(l.loss_weight) for l in net.layer if l.loss_weight}
    assert weights["gender_loss"] == [pytest.approx(0.1)] and weights["landmark5_loss"] == [1.0]
    assert weights["landmark_loss"] == [2.0]
    solver = (runs / "finetune" / "solver.prototxt").read_text()
    assert "weight_decay: 0\n" in solver and 'lr_policy: "poly"' in solver
    bad = run([python_exe, REPO / "tools" / "train.py", "--lmdb", mixed, "--run", tmp_path / "b",
               "--landmark-lmdb", main, "--aux-in-finetune"])
    assert bad.returncode == 2 and "not with --landmark-lmdb" in bad.stderr
