"""Video tracking (tracking.Tracker): follows a moving face with the landmark model between
detections, notices when it leaves (O-Net face check) and finds it again when it returns."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from tcdcn.detection.base import Calibration


def astronaut_face() -> np.ndarray:
    import skimage.data
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return image[40:200, 140:300].copy()          # her face, 160 x 160


def clip(n_in: int = 20, n_out: int = 6, n_back: int = 8, step: int = 3):
    """Frames 320 x 240: the face slides right by `step` px per frame, leaves (grey frames),
    then comes back at its start. Returns (frames, x offset of the face or None)."""
    face = astronaut_face()
    frames, offsets = [], []
    for k in range(n_in + n_out + n_back):
        frame = np.full((240, 320, 3), 110, np.uint8)
        if k < n_in:
            x = 20 + step * k
        elif k < n_in + n_out:
            x = None
        else:
            x = 20
        if x is not None:
            frame[40:200, x:x + 160] = face
        frames.append(frame)
        offsets.append(x)
    return frames, offsets


def test_calibration_inverts():
    c = Calibration(dx=0.05, dy=-0.1, scale=0.8)
    boxes = np.array([[10.0, 20.0, 60.0, 70.0], [0.0, 0.0, 30.0, 30.0]])
    np.testing.assert_allclose(c.apply(c.invert(boxes)), boxes, atol=1e-9)


@pytest.mark.slow
def test_tracker_follows_leaves_and_refinds():
    from tcdcn.api import Detector
    from tcdcn.video.tracking import Tracker
    detector = Detector(backend="opencv")
    # the O-Net check every frame, the quality rule off: the face check alone must notice
    tracker = Tracker(detector, redetect_every=100, check_every=1, min_quality=None)
    frames, offsets = clip()
    first = None
    for k, (frame, x) in enumerate(zip(frames, offsets)):
        faces = tracker(frame)
        if x is None:
            assert faces == [], f"frame {k}: a face where there is none"
            continue
        assert len(faces) == 1, f"frame {k}: {len(faces)} faces"
        eyes = faces[0].five_points[:2]
        if first is None:
            first = (eyes, x)
        # the eyes move with the face: within 3 px of where the first frame's eyes moved to
        shift = x - first[1]
        np.testing.assert_allclose(eyes[:, 0], first[0][:, 0] + shift, atol=3.0,
                                   err_msg=f"frame {k}")
        np.testing.assert_allclose(eyes[:, 1], first[0][:, 1], atol=3.0, err_msg=f"frame {k}")
    s = tracker.stats
    assert s.frames == len(frames)
    assert s.reasons["lost"] >= 1            # the face check noticed it leaving
    assert s.reasons["empty"] >= 2           # first frame, and while nobody was there
    # between detections it did follow: far fewer detections than frames with a face
    assert s.detections <= s.frames - 15, s


@pytest.mark.slow
def test_tracker_redetects_on_its_interval_and_keeps_ids():
    from tcdcn.api import Detector
    from tcdcn.video.tracking import Tracker
    tracker = Tracker(Detector(backend="opencv"), redetect_every=5, smooth_fps=30)
    frames, offsets = clip(n_in=16, n_out=0, n_back=0)
    ids = [tracker(f)[0].track_id for f in frames]
    assert set(ids) == {0}                    # one face, one id across detections
    assert tracker.stats.reasons["interval"] == 3   # frames 5, 10, 15 after the first


@pytest.mark.slow
def test_tracker_follows_an_upside_down_face_turned():
    """A face found turned (Face.turn 180) is followed turned: its crops stay upright, the
    face check passes, and its eyes move with it without a new detection per frame."""
    from tcdcn.api import Detector
    from tcdcn.geometry import turn_image
    from tcdcn.video.tracking import Tracker
    tracker = Tracker(Detector(backend="opencv"), redetect_every=100, check_every=1)
    frames, offsets = clip(n_in=12, n_out=0, n_back=0)
    first = None
    for k, (frame, x) in enumerate(zip(frames, offsets)):
        faces = tracker(turn_image(frame, 180))
        assert len(faces) == 1 and faces[0].turn == 180, f"frame {k}"
        eyes = faces[0].five_points[:2]
        first = first if first is not None else (eyes, x)
        # turned 180: the face moves left by the same amount
        np.testing.assert_allclose(eyes[:, 0], first[0][:, 0] - (x - first[1]), atol=3.0,
                                   err_msg=f"frame {k}")
    assert tracker.stats.detections == 1, tracker.stats


@pytest.mark.slow
def test_tracker_follows_a_face_found_tilted():
    """A rolled face found only through a tilt (the upright search made blind here) is
    followed at that tilt: Face.turn 30 on every frame, eyes moving with the face, one
    detection."""
    from tcdcn.api import Detector
    from tcdcn.geometry import apply_matrix, invert_matrix, turn_image, turn_matrix
    from tcdcn.video.tracking import Tracker
    detector = Detector(backend="opencv", turns=(30,))
    # its upright search made blind: the face is found only through the tilt
    detector.detector.root.detector = lambda image, search=None: (np.zeros((0, 4)), np.zeros(0))
    tracker = Tracker(detector, redetect_every=100, check_every=1)
    frames, offsets = clip(n_in=10, n_out=0, n_back=0)
    m = turn_matrix(330, frames[0].shape)       # shown rolled 30 degrees anticlockwise
    first = None
    for k, (frame, x) in enumerate(zip(frames, offsets)):
        faces = tracker(turn_image(frame, 330))
        assert len(faces) == 1 and faces[0].turn == 30, f"frame {k}"
        eyes = faces[0].five_points[:2]
        if first is None:
            first = (apply_matrix(invert_matrix(m), eyes), x)   # in the unrolled frame
        expected = apply_matrix(m, first[0] + np.array([x - first[1], 0.0]))
        np.testing.assert_allclose(eyes, expected, atol=3.0, err_msg=f"frame {k}")
    assert tracker.stats.detections == 1, tracker.stats


@pytest.mark.slow
def test_tracker_redetects_when_quality_drops():
    """With the quality rule alone (no O-Net check), a face that leaves the frame lowers
    the followed points' quality (Face.quality, the uncertainty head): the tracker detects
    again, and gives no face while nobody is there; a model without the head is refused."""
    from tcdcn.api import Detector
    from tcdcn.video.tracking import Tracker
    tracker = Tracker(Detector(backend="opencv"), redetect_every=100, min_quality=0.5,
                      face_check=False)
    frames, offsets = clip()
    for k, (frame, x) in enumerate(zip(frames, offsets)):
        faces = tracker(frame)
        if x is None:
            assert faces == [], f"frame {k}: a face where there is none"
        else:
            assert all(0 <= f.quality <= 1 for f in faces)
    assert tracker.stats.reasons["quality"] >= 1, tracker.stats
    assert tracker.stats.reasons["lost"] == 0            # the O-Net check was off
    # the default: the quality rule on where the model has the head, off where not
    assert Tracker(Detector(backend="opencv")).min_quality == 0.3
    assert Tracker(Detector("tcdcn_68pt", backend="opencv")).min_quality is None
    with pytest.raises(ValueError, match="uncertainty head"):
        Tracker(Detector("tcdcn_68pt", backend="opencv"), min_quality=0.5)
    with pytest.raises(ValueError, match="0..1"):
        Tracker(Detector(backend="opencv"), min_quality=1.5)
