"""Turn retry (search.Turned): faces upside down, sideways or rolled (tilts) are found and
marked."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from tcdcn.detection.search import Turned, turn_list
from tcdcn.geometry import (
    apply_matrix,
    face_crop,
    map_boxes,
    turn_image,
    turn_matrix,
    turned_back,
    upright_box,
)

from tests.helpers import SHARED_DATA, cascades, needs_shared


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
    assert turn_list([30, -30]) == (30, 330)          # tilts, clockwise, in 0..359
    for bad in ([360], [0, 90], [12.5], ["left"]):
        with pytest.raises(ValueError, match="whole degrees"):
            turn_list(bad)


@pytest.mark.parametrize("angle", [30, 330, 45, 100])
def test_tilt_matrix_follows_the_pixels_and_the_canvas_holds_the_image(angle):
    """A tilt resamples the image onto a canvas that holds all of it; turn_matrix maps each
    pixel centre to where its content went (checked on isolated bright dots)."""
    image = np.zeros((61, 81), np.uint8)
    dots = [(10, 8), (70, 12), (40, 30), (15, 52), (72, 55)]
    for x, y in dots:
        image[y, x] = 255
    turned = turn_image(image, angle)
    m = turn_matrix(angle, image.shape)
    # the turned corners' pixel centres fit the canvas, which is no more than a pixel wider
    # on each side than they need (the smallest canvas, centred)
    corners = apply_matrix(m, np.array([[0.0, 0], [80, 0], [0, 60], [80, 60]]))
    size = np.array(turned.shape[::-1], float)
    assert corners.min() >= -1e-9 and (corners.max(axis=0) <= size - 1 + 1e-9).all()
    np.testing.assert_allclose(corners.min(axis=0), size - 1 - corners.max(axis=0), atol=1e-9)
    assert (corners.min(axis=0) < 1).all()
    for x, y in dots:
        tx, ty = apply_matrix(m, np.array([[x, y]], float))[0]
        peak = np.unravel_index(np.argmax(turned[int(ty) - 2:int(ty) + 3,
                                                 int(tx) - 2:int(tx) + 3]), (5, 5))
        assert abs(int(ty) - 2 + peak[0] - ty) <= 1 and abs(int(tx) - 2 + peak[1] - tx) <= 1


def test_quarter_turns_are_tilts_without_resampling():
    """The quarter turns' exact matrices are the tilt formula at 90, 180, 270 degrees."""
    from tcdcn.geometry import _tilt
    for angle in (90, 180, 270):
        np.testing.assert_allclose(turn_matrix(angle, (7, 11)), _tilt(angle, (7, 11))[0],
                                   atol=1e-12)


@pytest.mark.parametrize("angle", [30, 330, 90])
def test_turned_back_and_upright_box_are_inverses(angle):
    """A face found in the turned image comes back as a box of the same size about its
    mapped centre (quarter turns: the box mapped), and upright_box takes it there again."""
    shape = (120, 160)
    square = np.array([50.0, 40, 90, 80])
    reported = turned_back(square, angle, shape)[0]
    np.testing.assert_allclose(upright_box(reported, angle, shape), square, atol=1e-9)
    np.testing.assert_allclose(reported[2:] - reported[:2], [40, 40], atol=1e-9)
    centre = apply_matrix(cv2.invertAffineTransform(turn_matrix(angle, shape)),
                          np.array([[70.0, 60.0]]))[0]
    np.testing.assert_allclose((reported[:2] + reported[2:]) / 2, centre, atol=1e-9)


class FakeDetector:
    """Finds a 'face' (the bright square) only where the image shows the mark upright: the
    bright pixel of the marker above the square. Scores as given per call count."""

    def __init__(self, scores_by_turn):
        self.calls, self.scores_by_turn = [], scores_by_turn

    def __call__(self, image, search=None):
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
    assert len(det.detector.calls) == 1 + len(turn_list("auto"))   # upright, every turn
    plain, _ = det(shown)
    assert plain.shape == (1, 4)


def test_a_tilt_wins_like_a_turn_and_its_box_comes_back_about_the_face():
    """A detector that only finds a face on the 30-degree tilt's canvas: Turned reports it
    with turn 30, its box the same size about the face's centre in the image, and the
    landmark crop of that box is the box in the tilted image again."""
    image = np.zeros((80, 100), np.uint8)
    tilted_shape = turn_image(image, 30).shape
    square = np.array([[40.0, 30, 70, 60]])

    def detector(im, search=None):
        if im.shape == tilted_shape:
            return square, np.array([0.995])
        return np.zeros((0, 4)), np.zeros(0)

    det = Turned(detector, (90, 180, 270, 30, 330))
    boxes, scores = det.oriented(image)
    assert boxes.shape == (1, 5) and boxes[0, 4] == 30 and scores.tolist() == [0.995]
    np.testing.assert_allclose(boxes[0, :4], turned_back(square, 30, image.shape)[0],
                               atol=1e-9)
    np.testing.assert_allclose(upright_box(boxes[0], 30, image.shape), square[0], atol=1e-9)


def test_confident_upright_faces_skip_the_turns_and_weak_turned_ones_are_dropped():
    upright, _ = marked_image(0)
    det = Turned(FakeDetector(0.999), "auto")
    boxes, _ = det.oriented(upright)
    assert boxes[0, 4] == 0 and len(det.detector.calls) == 1
    _, shown = marked_image(180)
    weak = Turned(FakeDetector(0.9), "auto", min_score=0.98)
    boxes, scores = weak.oriented(shown)
    assert boxes.shape == (0, 5) and len(weak.detector.calls) == 1 + len(turn_list("auto"))
    off = Turned(FakeDetector(0.999), ())
    assert off.oriented(shown)[0].shape == (0, 5) and len(off.detector.calls) == 1


@pytest.mark.caffe
def test_crops_of_a_turned_box_are_the_upright_crops(model_dir):
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(model_dir)
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (90, 120), dtype=np.uint8)
    box = np.array([30.0, 20.0, 70.0, 60.0])
    for angle in (90, 180, 270, 30, 330):
        t = turn_matrix(angle, grey.shape)
        crops, mats = model.crops(grey, np.array([[*box, angle]]))
        expected, m = face_crop(turn_image(grey, angle), upright_box(box, angle, grey.shape),
                                model.size, model.crop_scale)
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
    from tcdcn.detection.search import TURN_MIN_SCORE, TURN_RETRY_BELOW
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[20:230, 130:320]
    shown = turn_image(image, 90)
    faces = Detector()(shown)
    assert len(faces) == 1 and faces[0].turn == 270 and faces[0].score >= TURN_MIN_SCORE
    plain = Detector(turns=())(shown)
    assert len(plain) == 1 and plain[0].turn == 0
    assert TURN_RETRY_BELOW <= plain[0].score < TURN_MIN_SCORE


def named_detector(calls: list):
    """Detectors that log their name to `calls` and find one box scoring `score` (None:
    nothing)."""
    def detector(name, score):
        def run(image, search=None):
            calls.append(name)
            if score is None:
                return np.zeros((0, 4)), np.zeros(0)
            return np.array([[1.0, 2, 3, 4]]), np.array([score])
        return run
    return detector


def test_later_borders_run_only_where_no_turn_wins():
    """Turned with more_borders: the first border upright, then the turns, then (only where
    no turn won) the later borders upright, whose face wins if it beats the first border's."""
    calls = []
    detector = named_detector(calls)

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
    from tcdcn.detection.factory import DetectorSettings, make_detector
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(model_dir)
    assert make_detector(model, DetectorSettings(name="haar")).describe()["graph"]["type"] \
        == "borders"
    assert make_detector(model, DetectorSettings()).describe()["graph"]["type"] == "turns"
    with pytest.raises(ValueError, match="MTCNN's face scores"):
        make_detector(model, DetectorSettings(name="haar", turns=[180]))


@pytest.mark.slow
@pytest.mark.caffe
@needs_shared("MTFL/training.txt", "MTFL")
def test_tilts_find_rolled_validation_faces_that_quarter_turns_miss():
    """MTFL training faces framed like AFLW's test images and rolled 40-60 degrees (MTCNN
    misses many faces rolled past 30): the default turns, with their 30-degree tilts, miss
    far fewer than the quarter turns alone (deterministic: fixed faces, fixed seed). The
    classic cascade's proposals: S-Net learnt rolls of up to 25 degrees, and some of these
    faces are among its training faces."""
    from tcdcn.api import Detector
    from tcdcn.data.datasets import read_mtfl
    from tcdcn.data.detector_sets import framed_faces
    from tcdcn.evaluation.evaluate import boxes_for
    train = read_mtfl(SHARED_DATA / "MTFL" / "training.txt", SHARED_DATA / "MTFL")
    moved, crops = framed_faces(train[:600], seed=0, max_roll=60)
    eyes = np.array([s.landmarks[1] - s.landmarks[0] for s in moved])
    rolled = [s for s, a in zip(moved, np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0])))
              if abs(a) >= 40]
    assert len(rolled) > 150
    misses = {}
    for name, turns in (("quarter", (90, 180, 270)), ("default", "auto")):
        found = boxes_for(rolled, "detector", Detector(turns=turns, proposals="pnet").detector,
                          crops)
        misses[name] = sum(b is None for b in found)
    assert misses["default"] + 5 < misses["quarter"], misses


def test_the_last_resort_runs_only_where_nothing_at_all_was_found():
    """Turned's last resort (a cascade with other thresholds) runs after the first border,
    the turns and the later borders have found no face at all, never where any found one."""
    calls = []
    detector = named_detector(calls)

    image = np.zeros((20, 30), np.uint8)
    t = Turned(detector("first", None), turns=(90,), turned_detector=detector("turn", None),
               more_borders=detector("more", None), last_resort=detector("last", 0.97))
    boxes, scores = t.oriented(image)
    assert calls == ["first", "turn", "more", "last"] and scores.tolist() == [0.97]
    assert boxes[0, 4] == 0
    for found_by in ("first", "more"):       # a weak face anywhere: no last resort
        calls.clear()
        t = Turned(detector("first", 0.5 if found_by == "first" else None), turns=(),
                   more_borders=detector("more", 0.5 if found_by == "more" else None),
                   last_resort=detector("last", 0.97))
        assert t.oriented(image)[1].tolist() == [0.5] and "last" not in calls


def test_first_found_stops_at_the_first_detector_that_finds_a_face():
    from tcdcn.detection.search import FirstFound
    calls = []
    detector = named_detector(calls)
    image = np.zeros((20, 30), np.uint8)
    chain = FirstFound(detector("a", None), detector("b", 0.8), detector("c", 0.99))
    boxes, scores = chain(image)
    assert calls == ["a", "b"] and scores.tolist() == [0.8] and len(boxes) == 1
    calls.clear()
    boxes, scores = FirstFound(detector("a", None), detector("b", None))(image)
    assert calls == ["a", "b"] and len(boxes) == 0 and len(scores) == 0


@pytest.mark.caffe
def test_make_detector_builds_the_last_resort_on_the_same_nets(model_dir):
    from tcdcn.detection import mtcnn
    from tcdcn.detection.factory import DetectorSettings, make_detector
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(model_dir)

    S = DetectorSettings
    det = make_detector(model, S(proposals="pnet")).describe()["graph"]
    last = cascades(det["last_resort"])
    assert last and all(m["thresholds"] == list(mtcnn.LAST_RESORT) for m in last)
    assert last[0]["nets"] == cascades(det["upright"])[0]["nets"]
    assert cascades(det["upright"])[0]["thresholds"] == list(mtcnn.THRESHOLDS)
    assert make_detector(model, S(proposals="pnet", last_resort=None)).describe()["graph"][
        "last_resort"] is None
    off = make_detector(model, S(proposals="pnet", turns=())).describe()["graph"]
    assert off["turns"] == [] and off["last_resort"] is not None
    # the default (S-Net): where its search finds nothing, the classic search runs with the
    # quarter turns (not the tilts) and every border, on the same nets, its own last resort
    # included; its turned searches look twice
    # (first S-Net once more, upright, with a second look at what O-Net rejects)
    fast = make_detector(model, S()).describe()["graph"]
    again, classic = fast["last_resort"]["detectors"]
    assert [c["relook_above"] for c in cascades(again)] == [mtcnn.RELOOK_ABOVE]
    assert cascades(again)[0]["first_stage"] != "pnet"
    assert again["pads"] == fast["upright"]["pads"] + fast["more_borders"]["pads"]
    assert classic["type"] == "turns" and classic["turns"] == [90, 180, 270]   # no tilts
    assert classic["more_borders"] is not None
    assert cascades(classic["upright"])[0]["first_stage"] == "pnet"
    assert all(c["relook_above"] == 1.0 for c in cascades(fast["upright"]) + cascades(classic))
    inner = cascades(classic["last_resort"])
    assert inner and all(m["thresholds"] == list(mtcnn.LAST_RESORT) for m in inner)
    assert inner[0]["nets"] == cascades(fast["upright"])[0]["nets"]
    assert cascades(fast["upright"])[0]["first_stage"] != "pnet"
    assert cascades(fast["upright"])[0]["recheck_below"] == mtcnn.RECHECK_BELOW
    assert cascades(fast["turned"])[0]["recheck_below"] == 1.0
