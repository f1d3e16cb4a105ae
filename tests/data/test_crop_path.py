"""One crop path: the validation LMDB's crops (lmdb_build.prepare + plain_crop) and the
inference crops (image.load_image -> image.to_grey -> geometry.face_crop) are the same
pixels for the same face box, and the matrices map the labelled points alike."""
from __future__ import annotations

import numpy as np
import pytest
from tcdcn.geometry import apply_matrix, face_crop, normalise

from tests.helpers import SHARED_DATA as SHARED  # noqa: E402


@pytest.mark.caffe   # lmdb_build writes caffe Datums
@pytest.mark.skipif(not (SHARED / "MTFL").is_dir(), reason="shared data not present")
def test_lmdb_and_inference_crops_are_the_same_pixels():
    from tcdcn.data.datasets import load_samples
    from tcdcn.data.lmdb_build import plain_crop, prepare
    from tcdcn.image import load_image, to_grey
    samples, _, _ = load_samples("mtfl", SHARED)
    # small and large faces: the large ones take the area-averaging pre-shrink
    sides = np.array([s.box[2] - s.box[0] for s in samples])
    picked = [samples[i] for i in np.argsort(sides)[[0, 1, 2, len(sides) // 2, -3, -2, -1]]]
    assert max(s.box[2] - s.box[0] for s in picked) > 2 * 1.5 * 40  # the pre-shrink ran
    for sample in picked:
        lmdb_crop, targets = plain_crop(prepare(sample, 40, 1), 40)
        crop, m = face_crop(to_grey(load_image(sample.image)), sample.box, 40)
        np.testing.assert_array_equal(crop, lmdb_crop, err_msg=str(sample.image))
        np.testing.assert_allclose(normalise(apply_matrix(m, sample.landmarks), 40), targets,
                                   atol=1e-9)


def test_crop_scale_zooms_about_the_box_centre():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(200, 300), dtype=np.uint8)
    box = np.array([100.0, 50.0, 180.0, 130.0])
    centre = np.array([[140.0, 90.0]])
    _, m1 = face_crop(image, box, 40, 1.0)
    _, m2 = face_crop(image, box, 40, 1.25)
    np.testing.assert_allclose(apply_matrix(m1, centre), [[19.5, 19.5]], atol=1e-9)
    np.testing.assert_allclose(apply_matrix(m2, centre), [[19.5, 19.5]], atol=1e-9)
    corner = np.array([[100.0, 50.0]])   # the box's top-left corner: the crop's edge at scale 1
    np.testing.assert_allclose(apply_matrix(m1, corner), [[-0.5, -0.5]], atol=1e-6)
    np.testing.assert_allclose(apply_matrix(m2, corner) + 0.5, [[4.0, 4.0]], atol=1e-6)


def test_face_crop_resamples_only_the_region_it_reads():
    """face_crop resamples only the part of the canonical region its crop reads (extent):
    the same pixels and matrix as cutting the crop out of the whole region, for faces small
    and large (the pre-shrink), inside and across the image's edges, at every crop scale."""
    from tcdcn.geometry import compose, face_region, region_crop, square_crop
    rng = np.random.default_rng(1)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(20, 500, 2))
        image = rng.integers(0, 256, (h, w), dtype=np.uint8)
        side = rng.uniform(5, 1.5 * max(h, w))
        cx, cy = rng.uniform(-0.3 * w, 1.3 * w), rng.uniform(-0.3 * h, 1.3 * h)
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        size, scale = int(rng.choice([40, 60])), float(rng.choice([0.9, 1.0, 1.25, 1.4]))
        crop, m = face_crop(image, box, size, scale)
        region, m1, c, s = face_region(image, *square_crop(box), size)   # the whole region
        whole, m2 = region_crop(region, c, s, size, scale)
        np.testing.assert_array_equal(crop, whole, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(m, compose(m2, m1))
