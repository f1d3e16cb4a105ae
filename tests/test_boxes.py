"""The landmark-derived box rule: refitting it on the shared MTFL data reproduces the
constants in boxes.py, and derived boxes land where the training boxes are."""
from __future__ import annotations

import numpy as np
import pytest
from tcdcn.boxes import (
    MTFL_BOX_RULE,
    BoxRule,
    box_from_landmarks,
    fit_box_rule,
    five_points,
)

from tests.helpers import SHARED_DATA as SHARED  # noqa: E402


@pytest.mark.skipif(not (SHARED / "MTFL").is_dir(), reason="shared data not present")
def test_refit_on_mtfl_reproduces_the_constants():
    from tcdcn.data.datasets import attach_boxes, read_facepoint, read_mtfl
    faces = read_mtfl(SHARED / "MTFL" / "training.txt", SHARED / "MTFL", check_images=False)
    boxed = read_facepoint(SHARED / "CNN_FacePoint" / "trainImageList.txt", SHARED / "MTFL",
                           check_images=False)
    assert attach_boxes(faces, boxed) == 10000
    rule = fit_box_rule([f.landmarks for f in faces], [f.box for f in faces])
    assert rule.n_faces == MTFL_BOX_RULE.n_faces
    for name in ("dx", "dy", "k"):
        assert getattr(rule, name) == pytest.approx(getattr(MTFL_BOX_RULE, name), abs=1e-4), name
    # derived boxes agree with the real ones: median IoU well above chance
    ious = []
    for f in faces[::20]:
        a, b = box_from_landmarks(f.landmarks), np.asarray(f.box, float)
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        ious.append(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
    assert np.median(ious) > 0.8


def test_rule_geometry_on_a_known_face():
    pts = np.array([[40.0, 40.0], [60.0, 40.0], [50.0, 50.0], [42.0, 60.0], [58.0, 60.0]])
    m = pts.mean(axis=0)
    r = np.sqrt(np.mean(np.sum((pts - m) ** 2, axis=1)))
    box = box_from_landmarks(pts, BoxRule(dx=0.1, dy=-0.2, k=3.0))
    np.testing.assert_allclose([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2],
                               m + np.array([0.1, -0.2]) * r)
    assert box[2] - box[0] == pytest.approx(3.0 * r) and box[3] - box[1] == pytest.approx(3.0 * r)
    # a 68-point face uses eye centres, nose tip and mouth corners
    p68 = np.zeros((68, 2))
    p68[36:42] = [10, 10]
    p68[42:48] = [30, 10]
    p68[30] = [20, 20]
    p68[48], p68[54] = [12, 30], [28, 30]
    np.testing.assert_allclose(five_points(p68), [[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]])


def test_boxes_of_many_faces_at_once_are_the_single_face_boxes():
    """boxes_from_five_points (the detector's faces, all at once) gives each face the box of
    the rule from its own reference point and scale (boxes.reference, face by face), for
    either scheme's rule, and no boxes for no faces."""
    from tcdcn.boxes import IBUG68_BOX_RULE, boxes_from_five_points, reference
    rng = np.random.default_rng(0)
    for rule in (MTFL_BOX_RULE, IBUG68_BOX_RULE, BoxRule(dx=0.3, dy=-0.2, k=3.0)):
        for n in (1, 2, 7):
            points = rng.normal(0, rng.uniform(1, 200), (n, 5, 2)) + rng.uniform(-100, 900, 2)
            expected = []
            for p in points:
                m, r = reference(p)
                cx, cy = m + np.array([rule.dx, rule.dy]) * r
                expected.append([cx - rule.k * r / 2, cy - rule.k * r / 2,
                                 cx + rule.k * r / 2, cy + rule.k * r / 2])
            np.testing.assert_allclose(boxes_from_five_points(points, rule), expected,
                                       rtol=0, atol=1e-9)
    assert boxes_from_five_points(np.zeros((0, 5, 2)), MTFL_BOX_RULE).shape == (0, 4)


# ---- boxes a user gives (Detector(boxes=...), tools/detect.py --boxes) -----------------------

@pytest.mark.parametrize("box, words", [
    ([np.nan, 10, 50, 50], "not a finite number"),
    ([10, 10, 10, 50], "empty, inverted"),
    ([50, 10, 10, 50], "empty, inverted"),
    ([1000, 1000, 1100, 1100], "lies in the 200x100 image"),
    ([-90, 10, 10, 50], "lies in the 200x100 image"),   # 10% inside
])
def test_bad_user_boxes_are_errors_naming_the_box(box, words):
    from tcdcn.boxes import check_boxes
    with pytest.raises(ValueError, match=words) as err:
        check_boxes([[20, 20, 60, 60], box], (100, 200))
    assert str(err.value).startswith("box 1 ")


def test_user_boxes_partly_outside_the_image_are_kept():
    from tcdcn.boxes import check_boxes
    got = check_boxes([-20, -20, 60, 60], (100, 200))   # a face cut by the corner: 39% in
    assert got.shape == (1, 4)
    assert check_boxes([], (100, 200)).shape == (0, 4)
    with pytest.raises(ValueError, match="N x 4"):
        check_boxes([[1, 2, 3]], (100, 200))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

coordinate = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.integers(-10 ** 6, 10 ** 6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(coordinate, min_size=4, max_size=4), max_size=4),
       st.integers(1, 500), st.integers(1, 500))
def test_any_boxes_are_checked_or_refused(boxes, h, w):
    from tcdcn.boxes import MIN_BOX_INSIDE, check_boxes
    try:
        got = check_boxes(boxes, (h, w))
    except ValueError:
        return
    assert np.isfinite(got).all()
    for left, top, right, bottom in got:
        inside = max(0, min(right, w) - max(left, 0)) * max(0, min(bottom, h) - max(top, 0))
        assert right > left and bottom > top
        assert inside >= MIN_BOX_INSIDE * (right - left) * (bottom - top) * (1 - 1e-9)
