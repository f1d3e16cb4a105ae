"""Invariants of cropping and augmentation, as property tests."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

# the LMDB records are caffe Datums (caffe.proto, from our Caffe build)
pytest.importorskip("caffe.proto", reason="pycaffe does not import: run tools/setup.sh")
from hypothesis import given, settings
from hypothesis import strategies as st
from tcdcn.data.augment import AugmentConfig, augment, mirror_labels, warp
from tcdcn.data.lmdb_build import permute
from tcdcn.geometry import apply_matrix, crop_matrix, invert_matrix, normalise
from tcdcn.schemes import FIVE_POINT, POSE_FLIP, SIXTY_EIGHT_POINT

# tcdcn.data.lmdb_build imports lmdb_io, which needs caffe.proto (our Caffe build)
pytestmark = pytest.mark.caffe

coords = st.floats(-200, 400, allow_nan=False)
points = st.lists(st.tuples(coords, coords), min_size=1, max_size=20).map(np.array)


@given(points, st.floats(-180, 180), st.floats(20, 300), st.tuples(coords, coords),
       st.booleans(), st.sampled_from([40, 60, 64]))
def test_transform_then_inverse_returns_the_points(pts, angle, side, centre, mirror, size):
    m = crop_matrix(np.array(centre), side, size, angle, mirror)
    back = apply_matrix(invert_matrix(m), apply_matrix(m, pts))
    np.testing.assert_allclose(back, pts, atol=1e-6 * max(1, np.abs(pts).max()))


@given(st.sampled_from([FIVE_POINT, SIXTY_EIGHT_POINT]), st.integers(0, 4))
def test_mirroring_twice_is_identity_and_swaps_named_pairs(scheme, pose):
    pts = np.arange(scheme.count * 2, dtype=float).reshape(-1, 2)
    attrs = np.array([0, 1, 0, pose])
    once, a1 = mirror_labels(pts, attrs, scheme)
    twice, a2 = mirror_labels(once, a1, scheme)
    np.testing.assert_array_equal(twice, pts)
    assert a2.tolist() == attrs.tolist()
    assert a1[3] == POSE_FLIP[pose]
    for a, b in scheme.flip_pairs:
        np.testing.assert_array_equal(once[a], pts[b])
        np.testing.assert_array_equal(once[b], pts[a])


def test_five_point_pairs_are_eyes_and_mouth_corners():
    names = FIVE_POINT.names
    assert {(names[a], names[b]) for a, b in FIVE_POINT.flip_pairs} == {
        ("left_eye", "right_eye"), ("left_mouth", "right_mouth")}


def dots_image(pts: np.ndarray, size: int = 200) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    for x, y in pts:
        cv2.circle(img, (int(round(x)), int(round(y))), 3, 255, -1)
    return img


def find_dots(img: np.ndarray) -> np.ndarray:
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((img > 100).astype(np.uint8))
    return centroids[1:]


LEVELS = (110, 145, 180, 215, 250)   # one grey level per point: dots know who they are


def identified_dots(img: np.ndarray) -> np.ndarray:
    """The centroid of the dot of each grey level (point i drawn at LEVELS[i]): each dot is
    a connected blob of the warped image, known by the level of its brightest pixels (a
    blob's resampled rim passes through the lower levels, so levels are not thresholds)."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((img > 60).astype(np.uint8))
    by_level: dict[int, list] = {level: [] for level in LEVELS}
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 8:
            continue
        peak = int(img[labels == i].max())
        level = min(LEVELS, key=lambda v: abs(v - peak))
        by_level[level].append(centroids[i])
    for level, blobs in by_level.items():
        assert len(blobs) == 1, f"level {level}: {len(blobs)} dots"
    return np.array([by_level[level][0] for level in LEVELS])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31), st.booleans())
def test_image_and_points_agree_after_augmentation(seed, mirror):
    """Dots of distinct grey levels drawn at the landmarks are found again at the
    transformed landmarks, point by point: after a mirror, the point labelled left eye is
    the dot that was the right eye (a swap missing from the labels fails here)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(70, 130, size=(5, 2))
    while np.min([np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1:]]) < 25:
        pts = rng.uniform(70, 130, size=(5, 2))
    pts = np.round(pts)   # the dots are drawn on whole pixels: label them where they are
    image = np.zeros((200, 200), np.uint8)
    for (x, y), level in zip(pts, LEVELS):
        cv2.circle(image, (int(round(x)), int(round(y))), 3, level, -1)
    cfg = AugmentConfig(mirror_p=1.0 if mirror else 0.0, jpeg_p=0.0, max_brightness=0,
                        max_contrast=0, min_scale=1.0, max_scale=1.2, max_angle=30)
    out, targets, _, _ = augment(image, pts, None, np.array([100.0, 100.0]), 120.0, 120,
                                 FIVE_POINT, rng, cfg)
    dots = identified_dots(out)          # dots[j]: where original point j went
    expected = targets * 120 - 0.5       # expected[i]: where label i says its point is
    owner = FIVE_POINT.flip_permutation() if mirror else list(range(5))
    for i in range(5):
        assert np.linalg.norm(dots[owner[i]] - expected[i]) < 1.0, (i, dots, expected)
    if mirror:   # the labels did swap: label 0 (left eye) is original point 1's dot
        assert owner[0] == 1 and owner[3] == 4


def test_plain_crop_of_the_box_maps_box_corners_to_crop_edges():
    m = crop_matrix(np.array([50.0, 80.0]), 40.0, 40)
    corners = np.array([[30.0, 60.0], [70.0, 100.0]])  # box edges (pixel-centre coords)
    np.testing.assert_allclose(normalise(apply_matrix(m, corners), 40), [[0, 0], [1, 1]])


@settings(max_examples=30)
@given(st.integers(1, 5000), st.integers(0, 1000))
def test_shuffle_is_a_permutation(n, seed):
    perm = permute(np.arange(n), n, seed)
    assert sorted(perm.tolist()) == list(range(n))
    np.testing.assert_array_equal(perm, permute(np.arange(n), n, seed))


def test_shuffle_depends_on_seed_and_mixes():
    a, b = permute(np.arange(1000), 1000, 1), permute(np.arange(1000), 1000, 2)
    assert not np.array_equal(a, b)
    # consecutive keys land far apart: not a near-identity
    assert np.mean(np.abs(np.diff(a))) > 100


def test_warp_replicates_borders():
    img = np.full((10, 10), 77, np.uint8)
    out = warp(img, crop_matrix(np.array([0.0, 0.0]), 40.0, 20), 20)
    assert (out == 77).all()
