"""One Detector shared by threads: every call keeps its own search (base.Search) and every
thread runs its own copy of each net (models.shared), so 8 threads calling one Detector on
different images get exactly what one thread gets, image by image."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

THREADS, PER_THREAD = 8, 50


def varied_images(astronaut: np.ndarray, n: int) -> list[np.ndarray]:
    """n different images of three sizes: the astronaut's face cropped, scaled, mirrored,
    dimmed, some grey, some turned a quarter, some with the face cut off (no face)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        side = int(rng.integers(170, 300))   # the face: about x 180-290, y 30-160
        x0 = int(rng.integers(max(0, 300 - side), 175))
        y0 = int(rng.integers(max(0, 170 - side), 25))
        if i % 9 == 4:   # the face cut off: the whole search, and no face
            x0, y0 = 0, 512 - side
        crop = astronaut[y0:y0 + side, x0:x0 + side]
        size = (120, 150, 180)[i % 3]
        image = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        if i % 10 == 1:
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        if i % 4 == 2:
            image = image[:, ::-1]
        if i % 7 == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        out.append(np.ascontiguousarray((image * rng.uniform(0.6, 1.0)).astype(np.uint8)))
    return out


def as_numbers(faces) -> list:
    return [(f.box.tolist(), f.score, f.landmarks.tolist(), sorted(f.attributes.items()), f.turn)
            for f in faces]


def shared_by_threads(detector, images: list[np.ndarray]) -> tuple[list, list]:
    """Each image's faces, called image by image in one thread, and from THREADS threads
    at once (each thread its own PER_THREAD images), calls interleaved."""
    alone = [as_numbers(detector(im)) for im in images]
    chunks = [images[k::THREADS] for k in range(THREADS)]

    def work(chunk):
        return [as_numbers(detector(im)) for im in chunk]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, chunks))
    threaded = [None] * len(images)
    for k, chunk_results in enumerate(results):
        threaded[k::THREADS] = chunk_results
    return alone, threaded


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("caffe", marks=pytest.mark.caffe), "opencv"])
def test_one_detector_shared_by_eight_threads_equals_one_thread(backend, astronaut):
    """Both backends: pycaffe's nets (S-Net and the landmark model) and OpenCV's."""
    from tcdcn.api import Detector
    detector = Detector(backend=backend)
    images = varied_images(astronaut, THREADS * PER_THREAD)
    alone, threaded = shared_by_threads(detector, images)
    assert sum(len(f) for f in alone) > len(images) // 3   # faces were found in many
    assert sum(not f for f in alone) > 10                  # and none in some
    wrong = [i for i, (a, b) in enumerate(zip(alone, threaded)) if a != b]
    assert not wrong, f"{len(wrong)} of {len(images)} images differ under threads: {wrong[:10]}"


def test_a_lock_instead_of_copies_gives_the_same_faces(astronaut):
    """sharing="lock": one copy of each net, one thread at a time, the same answers."""
    from tcdcn.api import Detector
    images = varied_images(astronaut, 2 * THREADS)
    copies = Detector(backend="opencv")
    locked = Detector(backend="opencv", sharing="lock")
    alone, _ = shared_by_threads(copies, images)
    _, threaded = shared_by_threads(locked, images)
    assert alone == threaded
    with pytest.raises(ValueError, match="sharing"):
        Detector(backend="opencv", sharing="none")


def test_batch_with_a_bad_image_raises_or_counts_it(astronaut, tmp_path):
    """Detector.batch: a bad item raises an error naming its place (and file); with an
    errors list, the good images' faces come back and the bad one is counted there."""
    from tcdcn.api import Detector, ImageError
    detector = Detector(backend="opencv")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    items = [astronaut, str(broken), astronaut[:256, 100:356], tmp_path / "missing.png"]
    with pytest.raises(ImageError, match=r"image 1 of the batch: .*broken\.jpg") as err:
        detector.batch(items)
    assert err.value.index == 1
    errors: list = []
    results = detector.batch(items, errors=errors)
    assert [i for i, _ in errors] == [1, 3] and "missing.png" in str(errors[1][1])
    assert results[1] == [] and results[3] == []
    for i in (0, 2):
        assert as_numbers(results[i]) == as_numbers(detector(items[i]))
