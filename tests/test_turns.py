"""Quarter-turn retry (detect.Turned): faces upside down or sideways are found and marked."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tcdcn.augment import apply_matrix, face_crop
from tcdcn.detect import Turned, map_boxes, turn_image, turn_list, turn_matrix


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_turn_matrix_follows_the_pixels(angle):
    rng = np.random.default_rng(angle)
    image = rng.integers(0, 255, (7, 11), dtype=np.uint8)     # not square
    turned = turn_image(image, angle)
    m = turn_matrix(angle, image.shape)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            tx, ty = apply_matrix(m, np.array([[x, y]], float))[0]
            assert turned[int(round(ty)), int(round(tx))] == image[y, x]
    box = np.array([[1.5, 2.0, 6.0, 5.5]])
    back = cv2.invertAffineTransform(m)
    np.testing.assert_allclose(map_boxes(map_boxes(box, m), back), box, atol=1e-12)


def test_turn_list_values():
    assert turn_list("auto") == turn_list(None) and 180 in turn_list("auto")
    assert turn_list(()) == () and turn_list(0) == ()
    assert turn_list([180]) == (180,)
    with pytest.raises(ValueError, match="quarter turns"):
        turn_list([45])


class FakeDetector:
    """Finds a 'face' (the bright square) only where the image shows the mark upright: the
    bright pixel of the marker above the square. Scores as given per call count."""

    def __init__(self, scores_by_turn):
        self.calls, self.scores_by_turn = [], scores_by_turn

    def __call__(self, image):
        self.calls.append(image.shape)
        ys, xs = np.nonzero(image == 200)          # the square
        my, mx = np.nonzero(image == 255)          # the mark
        if len(ys) == 0 or len(my) == 0 or not my[0] < ys.min():
            return np.zeros((0, 4)), np.zeros(0)
        box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], float)
        return box, np.array([self.scores_by_turn])


def marked_image(angle):
    image = np.zeros((40, 60), np.uint8)
    image[15:25, 20:30] = 200
    image[10, 25] = 255
    return image, turn_image(image, (360 - angle) % 360)    # shown turned back by angle


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_turned_finds_the_turn_and_maps_the_box_back(angle):
    upright, shown = marked_image(angle)
    det = Turned(FakeDetector(0.999), "auto")
    boxes, scores = det.oriented(shown)
    assert boxes.shape == (1, 5) and boxes[0, 4] == angle
    # the box in the shown image covers the square there
    ys, xs = np.nonzero(shown == 200)
    np.testing.assert_allclose(boxes[0, :4], [xs.min(), ys.min(), xs.max(), ys.max()])
    assert len(det.detector.calls) == 4          # upright, then all three turns
    plain, _ = det(shown)
    assert plain.shape == (1, 4)


def test_confident_upright_faces_skip_the_turns_and_weak_turned_ones_are_dropped():
    upright, _ = marked_image(0)
    det = Turned(FakeDetector(0.999), "auto")
    boxes, _ = det.oriented(upright)
    assert boxes[0, 4] == 0 and len(det.detector.calls) == 1
    _, shown = marked_image(180)
    weak = Turned(FakeDetector(0.9), "auto", min_score=0.98)
    boxes, scores = weak.oriented(shown)
    assert boxes.shape == (0, 5) and len(weak.detector.calls) == 4
    off = Turned(FakeDetector(0.999), ())
    assert off.oriented(shown)[0].shape == (0, 5) and len(off.detector.calls) == 1


@pytest.mark.caffe
def test_crops_of_a_turned_box_are_the_upright_crops(model_dir):
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(model_dir)
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (90, 120), dtype=np.uint8)
    box = np.array([30.0, 20.0, 70.0, 60.0])
    for angle in (90, 180, 270):
        t = turn_matrix(angle, grey.shape)
        crops, mats = model.crops(grey, np.array([[*box, angle]]))
        expected, m = face_crop(turn_image(grey, angle), map_boxes(box, t)[0], model.size,
                                model.crop_scale)
        np.testing.assert_array_equal(crops[0, 0], expected)
        p = np.array([[40.0, 30.0], [55.5, 47.25]])
        np.testing.assert_allclose(apply_matrix(mats[0], p), apply_matrix(m, apply_matrix(t, p)),
                                   atol=1e-9)


@pytest.mark.caffe
@pytest.mark.parametrize("angle", [90, 180])
def test_a_turned_face_is_found_and_marked_as_upright(angle):
    """The astronaut's face turned: the default Detector finds it in the turned image, says
    which turn, and its points are the upright image's points turned (within a pixel)."""
    import skimage.data
    from tcdcn.api import Detector
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[20:230, 130:320]
    det = Detector()
    upright = det(image)
    assert len(upright) == 1 and upright[0].turn == 0
    shown = turn_image(image, (360 - angle) % 360)
    faces = det(shown)
    assert len(faces) == 1 and faces[0].turn == angle, [(f.turn, f.score) for f in faces]
    m = turn_matrix((360 - angle) % 360, image.shape)
    expected = apply_matrix(m, upright[0].landmarks)
    assert np.abs(faces[0].landmarks - expected).max() < 1.0
    assert faces[0].as_dict()["turn"] == angle
    # without the retry the face is missed or marked as if upright: far from its points
    plain = Detector(turns=())(shown)
    assert not plain or min(np.abs(f.landmarks - expected).max() for f in plain) > 3


@pytest.mark.caffe
def test_a_sideways_face_seen_upright_only_through_a_wider_border_is_turned():
    """The astronaut turned by 90 degrees: the first border shows no face, a wider one her
    sideways face 'upright' with a fair score (between TURN_RETRY_BELOW and TURN_MIN_SCORE).
    The turns are tried before the wider borders, so the right turn wins; without turns the
    wider border's sideways face is what is found."""
    import skimage.data
    from tcdcn.api import Detector
    from tcdcn.detect import TURN_MIN_SCORE, TURN_RETRY_BELOW
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[20:230, 130:320]
    shown = turn_image(image, 90)
    faces = Detector()(shown)
    assert len(faces) == 1 and faces[0].turn == 270 and faces[0].score >= TURN_MIN_SCORE
    plain = Detector(turns=())(shown)
    assert len(plain) == 1 and plain[0].turn == 0
    assert TURN_RETRY_BELOW <= plain[0].score < TURN_MIN_SCORE


def test_later_borders_run_only_where_no_turn_wins():
    """Turned with more_borders: the first border upright, then the turns, then (only where
    no turn won) the later borders upright, whose face wins if it beats the first border's."""
    calls = []

    def detector(name, score):
        def run(image):
            calls.append(name)
            if score is None:
                return np.zeros((0, 4)), np.zeros(0)
            return np.array([[1.0, 2, 3, 4]]), np.array([score])
        return run

    image = np.zeros((20, 30), np.uint8)
    t = Turned(detector("first", 0.5), turns=(),
               more_borders=detector("more", 0.95))
    boxes, scores = t.oriented(image)
    assert calls == ["first", "more"] and scores.tolist() == [0.95] and boxes[0, 4] == 0
    calls.clear()
    t = Turned(detector("first", 0.92), turns=(),
               more_borders=detector("more", 0.95))
    assert t.oriented(image)[1].tolist() == [0.92] and calls == ["first"]
    calls.clear()
    t = Turned(detector("first", 0.6), turns=(),
               more_borders=detector("more", None))
    assert t.oriented(image)[1].tolist() == [0.6] and calls == ["first", "more"]


@pytest.mark.caffe
def test_haar_runs_upright_only(model_dir):
    """The turns' thresholds are MTCNN's probabilities: Haar (level weights) runs upright,
    and asking it for turns is an error that says so."""
    from tcdcn.evaluation import make_detector
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(model_dir)
    assert not isinstance(make_detector(model, "haar"), Turned)
    assert isinstance(make_detector(model, "mtcnn"), Turned)
    with pytest.raises(ValueError, match="MTCNN's face scores"):
        make_detector(model, "haar", turns=[180])
