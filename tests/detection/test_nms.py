"""One non-maximum suppression for every detector (base.nms): against a brute-force
reference on random boxes, in both overlap modes."""
from __future__ import annotations

import numpy as np
import pytest
from tcdcn.detection.base import nms


def reference(boxes, scores, threshold, mode):
    def overlap(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
        return w * h / (min(area_a, area_b) if mode == "min" else area_a + area_b - w * h)
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if overlap(boxes[i], boxes[j]) <= threshold]
    return keep


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_matches_the_reference(mode):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        xy = rng.uniform(0, 100, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(4, 40, (n, 2))]
        scores = rng.uniform(-3, 3, n)          # Haar's scores can be negative
        threshold = float(rng.choice([0.3, 0.5, 0.7]))
        assert list(nms(boxes, scores, threshold, mode)) == reference(boxes, scores, threshold, mode)


def test_nms_edge_cases():
    assert len(nms(np.zeros((0, 4)), np.zeros(0))) == 0
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    assert list(nms(same, np.array([0.2, 0.9, 0.5]), 0.3)) == [1, 2]
    inner = np.array([[0, 0, 100, 100], [10, 10, 30, 30]], float)   # IoU 0.04, min-overlap 1
    assert list(nms(inner, np.array([1.0, 0.5]), 0.7, "union")) == [0, 1]
    assert list(nms(inner, np.array([1.0, 0.5]), 0.7, "min")) == [0]
    with pytest.raises(ValueError):
        nms(inner, np.array([1.0, 0.5]), 0.7, "max")
