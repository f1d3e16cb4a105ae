"""Borders before detection (search.Padded), O-Net's regression check and the framed
validation faces (data.detector_sets.framed_faces)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from tcdcn.data.datasets import Sample
from tcdcn.detection.base import Calibration
from tcdcn.detection.search import Padded


class ScoresByBorder:
    """A detector whose one 'face' (a fixed box in the unpadded image) scores by border."""

    def __init__(self, scores):
        self.scores, self.calls = scores, []
        self.calibration = Calibration()

    def raw_points(self, image, search=None):
        b = (image.shape[0] - 100) // 2            # the border Padded added (100x100 input)
        self.calls.append(b)
        score = self.scores.get(b)
        if score is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        box = np.array([[10.0 + b, 20 + b, 60 + b, 70 + b]])
        return box, np.array([score]), np.full((1, 5, 2), 30.0 + b)

    def raw(self, image, search=None):
        boxes, scores, _ = self.raw_points(image)
        return boxes, scores


def test_next_border_only_while_no_face_scores_retry_below():
    det = ScoresByBorder({10: 0.95, 25: 0.99})
    boxes, scores = Padded(det, (0.1, 0.25, 0.5), retry_below=0.9)(np.zeros((100, 100), np.uint8))
    assert det.calls == [10] and scores.tolist() == [0.95]
    np.testing.assert_allclose(boxes, [[10, 20, 60, 70]])


def test_weak_faces_try_the_next_border_and_the_most_confident_search_wins():
    det = ScoresByBorder({10: 0.7, 25: 0.8, 50: 0.75})
    padded = Padded(det, (0.1, 0.25, 0.5), retry_below=0.9)
    boxes, scores, points = padded.raw_points(np.zeros((100, 100), np.uint8))
    assert det.calls == [10, 25, 50] and scores.tolist() == [0.8]
    # back in the unpadded image's coordinates, points too
    np.testing.assert_allclose(boxes, [[10, 20, 60, 70]])
    np.testing.assert_allclose(points, 30.0)
    # a confident face at the second border stops the search there
    det = ScoresByBorder({10: 0.7, 25: 0.93, 50: 0.99})
    assert Padded(det, (0.1, 0.25, 0.5), retry_below=0.9).raw(
        np.zeros((100, 100), np.uint8))[1].tolist() == [0.93]
    assert det.calls == [10, 25]


def test_nothing_found_anywhere_is_an_empty_answer():
    det = ScoresByBorder({})
    boxes, scores = Padded(det, (0.1, 0.25), retry_below=0.9)(np.zeros((100, 100), np.uint8))
    assert det.calls == [10, 25] and boxes.shape == (0, 4) and len(scores) == 0


def test_retry_below_minus_infinity_is_the_old_rule():
    """Any face at the first border ends the search (the rule before the retry score)."""
    det = ScoresByBorder({10: 0.5, 25: 0.99})
    assert Padded(det, (0.1, 0.25), retry_below=-np.inf)(
        np.zeros((100, 100), np.uint8))[1].tolist() == [0.5]


class FakeNet:
    """OpenCV-dnn-like net answering fixed outputs (one row per input crop)."""

    def __init__(self, outputs):
        self.outputs, self.n = outputs, 0

    def setInput(self, blob):   # noqa: N802
        self.n = len(blob)

    def forward(self, names):
        return [np.repeat(self.outputs[k][None], self.n, axis=0) for k in names]


@pytest.mark.parametrize("offset, kept", [(0.3, True), (0.99, True), (1.5, False), (-2.7, False)])
def test_onet_faces_with_offsets_beyond_a_side_are_dropped(offset, kept):
    """O-Net can call a crop of mostly border 'face, 1.0' with offsets of several sides;
    such a box is dropped (mtcnn.MAX_REGRESSION), a plausible one is kept."""
    from tcdcn.detection.mtcnn import MTCNNDetector
    from tcdcn.models import shared
    # P-Net answers 'face' everywhere with no offsets; R-Net accepts without offsets
    pnet = type("P", (), {
        "setInput": lambda self, blob: setattr(self, "shape", blob.shape),
        "forward": lambda self, names: [
            np.stack([np.zeros(self.out()), np.ones(self.out())], 1),
            np.zeros((1, 4) + self.out()[1:])],
        "out": lambda self: (1, (self.shape[2] - 2) // 2 - 4, (self.shape[3] - 2) // 2 - 4)})()
    rnet = FakeNet({"prob1": np.array([0.0, 1.0]), "conv5-2": np.zeros(4)})
    onet = FakeNet({"prob1": np.array([0.0, 1.0]), "conv6-2": np.array([offset, 0.0, 0.0, 0.0]),
                    "conv6-3": np.full(10, 0.5)})
    det = MTCNNDetector(nets=shared(lambda: [pnet, rnet, onet]))
    boxes, scores = det.raw(np.zeros((60, 60, 3), np.uint8))
    assert (len(boxes) > 0) == kept


def dotted_samples(tmp_path, pts, n):
    """n samples of one image: bright 3x3 dots on grey at the five points."""
    image = np.full((300, 400, 3), 40, np.uint8)
    for x, y in pts.astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), image)
    return [Sample(path, pts, None, None, f"list.txt:{i + 1}") for i in range(n)]


def test_framed_faces_match_the_framing(tmp_path):
    """Each face is cropped to the framing's size with its points spanning about the given
    fraction of the side around the given centre, and the points move with the pixels."""
    from tcdcn.data.detector_sets import framed_faces
    pts = np.array([[150.0, 120], [210, 118], [180, 150], [158, 185], [205, 183]])
    samples = dotted_samples(tmp_path, pts, 40)
    framing = {"size": 150, "span": (0.35, 0.02), "centre": (0.5, 0.45), "centre_sd": 0.02}
    moved, crops = framed_faces(samples, seed=3, framing=framing)
    assert len(moved) == 40 and len(crops) == 40
    spans = [np.ptp(s.landmarks, axis=0).max() / 150 for s in moved]
    centres = np.array([s.landmarks.mean(axis=0) / 150 for s in moved])
    assert abs(np.mean(spans) - 0.35) < 0.02 and np.std(spans) > 0.005
    np.testing.assert_allclose(centres.mean(axis=0), [0.5, 0.45], atol=0.02)
    for s in moved[:5]:
        crop = crops[str(s.image)]
        assert crop.shape == (150, 150, 3)
        for x, y in np.round(s.landmarks).astype(int):     # the bright dots moved along
            assert crop[y - 1:y + 2, x - 1:x + 2].max() > 150
    with pytest.raises(Exception, match="list.txt:1"):
        framed_faces([Sample(Path(tmp_path / "gone.png"), pts, source="list.txt:1")])


def test_rolled_framed_faces_turn_the_points_with_the_pixels(tmp_path):
    """max_roll turns each face in the image plane within the bound (the eye line's angle
    spreads over it), the dots move with the points, and without it the framing is the
    unrolled one exactly."""
    from tcdcn.data.detector_sets import framed_faces
    pts = np.array([[150.0, 120], [210, 120], [180, 150], [158, 185], [205, 185]])
    samples = dotted_samples(tmp_path, pts, 60)
    moved, crops = framed_faces(samples, seed=3, max_roll=40)
    eyes = np.array([s.landmarks[1] - s.landmarks[0] for s in moved])
    angles = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert np.abs(angles).max() <= 40 + 1e-6 and np.abs(angles).max() > 30
    assert np.std(angles) > 15
    for s in moved[:8]:
        crop = crops[str(s.image)]
        for x, y in np.round(s.landmarks).astype(int):
            assert crop[y - 1:y + 2, x - 1:x + 2].max() > 150
    plain, plain_crops = framed_faces(samples[:5], seed=3)
    same, same_crops = framed_faces(samples[:5], seed=3, max_roll=0)
    for a, b in zip(plain, same):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(plain_crops[str(a.image)], same_crops[str(b.image)])
