"""S-Net, the single-shot first stage of the default detector (tcdcn.detection.snet): its targets,
its net, its training tool, both backends, and how make_detector uses it."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from tcdcn.data import detector_sets
from tcdcn.detection import snet
from tcdcn.detection.base import Search
from tcdcn.models import bundled, shared
from tcdcn.training import snet as snet_training

from tests.helpers import REPO, SHARED_DATA, cascades, run

FIVE = np.array([[-0.18, -0.12], [0.18, -0.12], [0.0, 0.05], [-0.14, 0.22], [0.14, 0.22]])


def test_targets_decode_back_to_the_faces():
    """encode() then decode() of its own positive cells gives back each face's centre, side
    and points; the 3x3 cells around a positive one are neither way (-1)."""
    rng = np.random.default_rng(0)
    faces = np.array([[20.0, 30.0, 18.0], [70.0, 62.0, 40.0]])
    pts = faces[:, None, :2] + FIVE[None] * faces[:, None, 2:3] + rng.normal(0, 1, (2, 5, 2))
    label, target, mask = snet.encode(faces, pts, np.zeros((0, 3)), (96, 96))
    assert label.shape == (1, 12, 12) and target.shape == mask.shape == (13, 12, 12)
    assert (label == 1).sum() == 2 and (label == -1).sum() == 16 and set(np.unique(label)) == {-1, 0, 1}
    boxes, scores, points = snet.decode((label[0] == 1).astype(float), target, 0.5)
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order, 0] + (boxes[order, 2] - boxes[order, 0]) / 2,
                               faces[:, 0], atol=1e-4)
    np.testing.assert_allclose(boxes[order, 2] - boxes[order, 0], faces[:, 2], rtol=1e-4)
    np.testing.assert_allclose(points[order], pts, atol=1e-3)
    # the regression is learnt on the 3x3 cells around the face, only there
    assert mask[0].sum() == 18 and np.all(target[:, mask[0] == 0] == 0)


def test_targets_outside_the_range():
    """Faces a little outside the size range, tiny faces and ignore regions make their cells
    neither way; a face far larger than the range is background (another level finds it)."""
    lo, hi = snet.FACE_RANGE
    faces = np.array([[20.0, 20.0, hi * 1.2], [70.0, 20.0, lo * 0.7], [48.0, 75.0, hi * 3]])
    label, _, mask = snet.encode(faces, np.zeros((3, 5, 2)), np.array([[80.0, 80.0, 30.0]]),
                                 (96, 96))
    assert (label == 1).sum() == 0 and mask.sum() == 0
    assert label[0, 2, 2] == -1 and label[0, 2, 9] == -1 and label[0, 10, 10] == -1
    assert label[0, 9, 6] == 0   # the huge face's centre


@pytest.mark.caffe
def test_grid_matches_the_net(caffe, tmp_path):
    """grid_size() is the net's output size for any input size, and cell j looks at input
    pixel 8j: a net whose weights only pass the centre tap moves a dot at (8i, 8j) to
    cell (i, j)."""
    for h, w in ((96, 96), (120, 150), (17, 33), (16, 16)):
        path = tmp_path / "deploy.prototxt"
        path.write_text(snet.net_text(False, size=(h, w)))
        net = caffe.Net(str(path), caffe.TEST)
        assert net.blobs["reg"].data.shape == (1, 13, snet.grid_size(h), snet.grid_size(w))
    path.write_text(snet.net_text(False, size=(96, 96)))
    net = caffe.Net(str(path), caffe.TEST)
    for name in net.params:
        weights, bias = net.params[name]
        weights.data[...] = 0
        bias.data[...] = 0
        k = weights.data.shape[-1] // 2
        weights.data[:, :, k, k] = 1.0   # every output channel sums the inputs' centre taps
    data = np.zeros((1, 1, 96, 96), np.float32)
    data[0, 0, 8 * 5, 8 * 7] = 1.0
    net.blobs["data"].data[...] = data
    out = net.forward()["reg"][0, 0]
    assert np.unravel_index(np.argmax(out), out.shape) == (5, 7) and out.max() > 0
    assert np.count_nonzero(out) == 1


def test_sampler_targets_follow_the_pixels(monkeypatch):
    """Every training input's positive faces, decoded, put their points on the bright dots
    drawn at the teacher's points (rolled, scaled, mirrored and moved with the pixels; the
    photometric jitter is switched off so that the dots keep their brightness)."""
    monkeypatch.setattr(snet_training, "_jitter", lambda grey, rng: grey)
    monkeypatch.setattr(snet_training, "MOSAIC", 0.0)   # mosaics: the next test
    image = np.full((240, 320), 60, np.uint8)
    box = np.array([100.0, 60.0, 190.0, 150.0])
    centre, side = (box[:2] + box[2:]) / 2, box[2] - box[0]
    pts = centre + FIVE * side
    for x, y in np.round(pts).astype(int):
        cv2.circle(image, (int(x), int(y)), 4, 255, -1)
    rows = np.array([snet_training.label_row(0, 1, box, 0.99, pts)])
    sampler = snet_training.Sampler([image], rows, seed=1)
    checked = flipped = 0
    for _ in range(200):
        out, label, target, _ = sampler.sample()
        assert out.shape == (96, 96) and out.dtype == np.uint8
        boxes, _, found = snet.decode((label[0] == 1).astype(float), target, 0.5)
        for b, p in zip(boxes, found):
            if b[2] - b[0] < 20:   # dots of smaller faces fade when shrunk
                continue
            for x, y in np.round(p).astype(int):
                if 2 <= x < 94 and 2 <= y < 94:
                    assert out[y - 1:y + 2, x - 1:x + 2].max() > 120, (x, y)
                    checked += 1
            flipped += p[0, 0] > p[1, 0]   # left eye right of the right eye: never
    assert checked > 100 and flipped == 0
    data, label, target, mask = sampler.batch(4)
    assert data.shape == (4, 1, 96, 96) and data.dtype == np.float32 and abs(data).max() <= 1.0


def test_mosaics_keep_each_view_s_faces(monkeypatch):
    """A mosaic input holds several views' faces: each positive face's nose (next to its
    centre, so in the same view) lies on a drawn dot, and mosaics have more faces."""
    monkeypatch.setattr(snet_training, "_jitter", lambda grey, rng: grey)
    monkeypatch.setattr(snet_training, "MOSAIC", 1.0)
    image = np.full((240, 320), 60, np.uint8)
    box = np.array([100.0, 60.0, 190.0, 150.0])
    pts = (box[:2] + box[2:]) / 2 + FIVE * (box[2] - box[0])
    for x, y in np.round(pts).astype(int):
        cv2.circle(image, (int(x), int(y)), 4, 255, -1)
    sampler = snet_training.Sampler([image], np.array([snet_training.label_row(0, 1, box, 0.99, pts)]), seed=2)
    most = checked = 0
    for _ in range(100):
        out, label, target, _ = sampler.sample(96)
        boxes, _, found = snet.decode((label[0] == 1).astype(float), target, 0.5)
        most = max(most, len(found))
        for b, p in zip(boxes, found):
            x, y = np.round(p[2]).astype(int)
            if b[2] - b[0] >= 20 and 2 <= x < 94 and 2 <= y < 94:
                assert out[y - 1:y + 2, x - 1:x + 2].max() > 120, (x, y)
                checked += 1
    assert most >= 3 and checked > 30


def shipped_or_skip():
    folder = bundled("snet")
    if not (folder / "snet.caffemodel").is_file():
        pytest.skip("models/snet not trained yet")
    return folder


def test_shipped_model_is_self_describing():
    folder = shipped_or_skip()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["stride"] == snet.STRIDE and meta["face_range"] == list(snet.FACE_RANGE)
    assert meta["channels"] == list(snet.CHANNELS) and "train_snet.py" in meta["command"]
    assert meta["validation"]


@pytest.mark.caffe
def test_snet_backends_agree(caffe):
    """Our Caffe and stock OpenCV dnn give the same S-Net outputs and proposals."""
    import skimage.data
    folder = shipped_or_skip()
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    a, b = snet.SNetNet(folder, "opencv"), snet.SNetNet(folder, "caffe")
    for size in ((96, 96), (150, 131)):
        blob = ((cv2.resize(grey, size[::-1]).astype(np.float32) - snet.MEAN) * snet.SCALE)[None, None]
        outs = []
        for net in (a, b):
            with net.nets.use() as (large, _):
                large.setInput(blob)
                outs.append(large.forward(["prob", "reg"]))
        for x, y in zip(*outs):
            np.testing.assert_allclose(x, y, atol=1e-4)
    pa, pb = a.proposals(grey, 20), b.proposals(grey, 20)
    assert len(pa) >= 1
    np.testing.assert_allclose(pa, pb, atol=1e-3)


def test_snet_finds_faces_across_sizes():
    """The pyramid finds a face from the minimum size up to nearly the whole image."""
    import skimage.data
    folder = shipped_or_skip()
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[20:250, 130:330]
    net = snet.SNetNet(folder)
    for side in (24, 40, 70, 120, 200):
        canvas = np.full((240, 240), 128, np.uint8)
        small = cv2.resize(face, (side, int(side * 230 / 200)), interpolation=cv2.INTER_AREA)
        y0, x0 = (240 - small.shape[0]) // 2, (240 - small.shape[1]) // 2
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        boxes = net.proposals(canvas, 20)
        centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
        width = boxes[:, 2] - boxes[:, 0]
        near = (np.abs(centre - 120).max(axis=1) < 0.25 * side + 4) & (width > 0.4 * side) \
            & (width < 1.6 * side)
        assert near.any(), (side, boxes)


def test_proposals_of_the_same_pixels_are_kept():
    """The searches of one image with other borders and second looks show S-Net the same
    pixels: within one search (base.Search) proposals() gives the last image's proposals
    again without running the net, and runs it for other pixels or other settings; a new
    search runs it again."""
    import skimage.data
    folder = shipped_or_skip()
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[:300, 80:380]
    net, fresh = snet.SNetNet(folder), snet.SNetNet(folder)
    runs = []

    class Counted:
        def __init__(self, inner):
            self.inner = inner

        def setInput(self, blob):
            self.inner.setInput(blob)

        def forward(self, names):
            runs.append(1)
            return self.inner.forward(names)
    with net.nets.use() as (large, small):
        net.nets = shared(lambda: (Counted(large), Counted(small)))
    search = Search()
    first = net.proposals(grey, 20, search=search)
    n = len(runs)
    assert n >= 1 and len(first) >= 1
    again = net.proposals(grey.copy(), 20, search=search)
    assert len(runs) == n
    np.testing.assert_array_equal(again, first)
    again[:] = 0   # a caller's changes stay its own
    np.testing.assert_array_equal(net.proposals(grey, 20, search=search), first)
    assert len(runs) == n
    for other, min_size, threshold in ((grey[::-1].copy(), 20, None), (grey, 40, None),
                                       (grey, 20, 0.9)):
        got = net.proposals(other, min_size, threshold, search=search)
        assert len(runs) > n
        n = len(runs)
        np.testing.assert_array_equal(got, fresh.proposals(other, min_size, threshold))
    net.proposals(grey, 20, search=search)
    n = len(runs)
    net.proposals(grey, 20, search=Search())   # another search: runs again
    assert len(runs) > n
    n = len(runs)
    net.proposals(grey, 20)                    # no search given: a search of its own
    assert len(runs) > n


def test_detector_forgets_the_proposals_between_images(monkeypatch):
    """make_detector's detector keeps S-Net's proposals within one image's search only: the
    same image searched twice runs S-Net twice (a benchmark repeating an image measures
    the search, not the kept proposals), and the faces are the same."""
    import skimage.data
    shipped_or_skip()
    from tcdcn.detection.factory import make_detector
    from tcdcn.landmarks import LandmarkModel
    det = make_detector(LandmarkModel(REPO / "models" / "tcdcn_5pt"))
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    runs = []
    real = snet.SNetNet._proposals
    monkeypatch.setattr(snet.SNetNet, "_proposals",
                        lambda self, *a: runs.append(1) or real(self, *a))
    first = det.oriented(image)
    assert len(runs) == 1 and len(first[0]) == 1
    second = det.oriented(image)
    assert len(runs) == 2
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_pyramid_levels_are_resampled_as_training_inputs(monkeypatch):
    """The pyramid resamples a level as the sampler made training inputs of that scale:
    bilinearly down to 1 / PRESHRINK (a 20 px minimum face's first level, 0.8), with area
    averaging below it."""
    folder = shipped_or_skip()
    net = snet.SNetNet(folder)
    calls = []
    real = cv2.resize

    def resize(image, dsize, *args, interpolation=None, **kwargs):
        calls.append((dsize, interpolation))
        return real(image, dsize, *args, interpolation=interpolation, **kwargs)
    monkeypatch.setattr(cv2, "resize", resize)
    net.proposals(np.full((150, 150), 128, np.uint8), 20)
    assert calls == [((120, 120), cv2.INTER_LINEAR), ((40, 40), cv2.INTER_AREA)]
    calls.clear()
    net.proposals(np.full((150, 150), 128, np.uint8), 21)   # first level 0.76: area
    assert calls[0][1] == cv2.INTER_AREA and 1 / snet.PRESHRINK == 0.8


def test_missing_snet_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="snet.prototxt"):
        snet.SNetNet(tmp_path)


def test_make_detector_falls_back_to_the_classic_cascade(monkeypatch):
    """proposals="snet" shares MTCNN's nets, and where S-Net's search finds nothing at all
    the classic search (P-Net, R-Net, O-Net, with its own last resort; upright) runs and
    decides."""
    import skimage.data
    shipped_or_skip()
    from tcdcn.detection.factory import DetectorSettings, make_detector
    from tcdcn.detection.mtcnn import FALLBACK_MIN_FACE
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(REPO / "models" / "tcdcn_5pt")
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    fast = make_detector(model, DetectorSettings())
    classic = make_detector(model, DetectorSettings(proposals="pnet"))
    f, c = fast.describe()["graph"], classic.describe()["graph"]
    assert f["last_resort"]["detectors"][-1]["type"] == "turns"
    assert f["last_resort"]["detectors"][-1]["last_resort"] is not None
    assert c["last_resort"] is not None and c["last_resort"]["type"] != "turns"
    assert len({m["nets"] for m in cascades(f)}) == 1
    assert any(m["first_stage"] != "pnet" for m in cascades(f))
    # S-Net runs on the landmark model's backend (our Caffe where built), MTCNN on OpenCV
    assert {m["first_stage"]["backend"] for m in cascades(f) if m["first_stage"] != "pnet"} \
        == {model.backend}
    assert {m["backend"] for m in cascades(f)} == {"opencv"}
    assert any(m["relook_above"] < 1 for m in cascades(f))   # inside the fallback
    # the fallback's classic search skips the pyramid levels for small faces; the classic
    # cascade alone searches every size
    assert FALLBACK_MIN_FACE > 1
    assert {m["min_face_factor"] for m in cascades(f) if m["first_stage"] == "pnet"} \
        == {FALLBACK_MIN_FACE}
    assert {m["min_face_factor"] for m in cascades(c)} == {1.0}
    every = make_detector(model, DetectorSettings(fallback_min_face=1))   # mtcnn_recall's "before"
    assert {m["min_face_factor"] for m in cascades(every.describe())} == {1.0}
    b_fast, s_fast = fast.oriented(image)
    assert len(b_fast) == 1 and s_fast[0] > 0.9
    monkeypatch.setattr(snet.SNetNet, "proposals",
                        lambda self, grey, min_size, **kw: np.zeros((0, 5)))
    b, s = fast.oriented(image)
    b_classic, s_classic = make_detector(model, DetectorSettings(
        proposals="pnet", turns=(90, 180, 270))).oriented(image)
    np.testing.assert_allclose(b, b_classic)
    np.testing.assert_allclose(s, s_classic)
    with pytest.raises(ValueError, match="proposals"):
        make_detector(model, DetectorSettings(proposals="rnet"))


def test_the_fallback_pyramid_skips_the_levels_for_small_faces():
    """With min_face_factor, P-Net runs only on the pyramid levels whose 12 px window is a
    face of at least that many times min_size; the levels it keeps are the same, and a
    large face comes out exactly as with every level."""
    import skimage.data
    from tcdcn.detection import mtcnn
    with mtcnn.MTCNNDetector().nets.use() as (pnet, rnet, onet):
        shapes = []

    class Recording:   # P-Net itself, noting the input sizes it is given
        def setInput(self, blob):   # noqa: N802 (OpenCV's name)
            shapes.append(blob.shape[2:])
            pnet.setInput(blob)

        def forward(self, names):
            return pnet.forward(names)
    nets = shared(lambda: [Recording(), rnet, onet])
    image = np.full((180, 180, 3), 128, np.uint8)

    def levels(factor, min_size=20):
        det = mtcnn.MTCNNDetector(min_size=min_size, min_face_factor=factor, nets=nets)
        shapes.clear()
        det.raw(image)
        return list(shapes)
    every = levels(1.0)
    # min_size 20 at factor 0.709: windows of 20, 28.2, 39.8, 56.2, ... px
    assert len(every) == 7 and every[0] == (108, 108)
    assert levels(1.5) == every[2:]      # 30 px: the 20 and 28.2 px levels go
    assert levels(1.41) == every[1:]     # 28.2 px is kept
    assert levels(3.0) == every[4:]      # 60 px
    # a factor of 1 keeps every level for any min_size: 12 / (12 / 59) is just under 59 in
    # floating point, which must not drop the first level
    assert levels(1.0, min_size=59)[0] == (37, 37)    # ceil(180 * 12 / 59)

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    full = mtcnn.MTCNNDetector().raw_points(photo)
    large = mtcnn.MTCNNDetector(min_face_factor=mtcnn.FALLBACK_MIN_FACE)
    assert len(full[0]) == 1 and full[0][0, 2] - full[0][0, 0] > 60   # the astronaut's face
    for a, b in zip(full, large.raw_points(photo)):
        np.testing.assert_array_equal(a, b)


def test_rejected_proposals_get_one_more_look():
    """A proposal O-Net rejects (a box 1.6 times the face's side) is looked at once more, at
    the box O-Net regressed from it, and the face is found; with the second look off, or
    below mtcnn.RELOOK_ABOVE (a box that shows little of the face), it is not."""
    import skimage.data
    from tcdcn.detection import mtcnn
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    plain = mtcnn.MTCNNDetector()
    face, score = plain.raw(image)
    assert len(face) == 1 and score[0] > 0.99
    left, top, right, bottom = face[0]
    cx, cy, side = (left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top)

    class Stub:   # S-Net proposing one given box
        def __init__(self, box):
            self.box = box

        def proposals(self, grey, min_size, **kw):
            return np.array([self.box])

    def found(dx: float, scale: float, relook: float):
        h = side * scale / 2
        stub = Stub([cx + dx * side - h, cy - h, cx + dx * side + h, cy + h, 0.9])
        det = mtcnn.MTCNNDetector(first_stage=stub, relook_above=relook)
        with det.nets.use() as nets:
            nets[2].setInput(mtcnn._crops(image, np.array([stub.box]), 48))
            p_first = float(nets[2].forward("prob1")[0, 1])
        return p_first, det.raw(image)

    assert mtcnn.MTCNNDetector().relook_above == 1.0   # off but where make_detector says
    p_first, (boxes, scores) = found(0.0, 1.6, mtcnn.RELOOK_ABOVE)
    assert mtcnn.RELOOK_ABOVE < p_first <= mtcnn.THRESHOLDS[2]   # rejected at first
    assert len(boxes) == 1 and scores[0] > 0.9
    from tcdcn.detection.base import iou
    assert iou(boxes[0], face[0]) > 0.6
    assert len(found(0.0, 1.6, 1.0)[1][0]) == 0                   # no second look: missed
    p_first, (boxes, _) = found(0.3, 0.6, mtcnn.RELOOK_ABOVE)
    assert p_first <= mtcnn.RELOOK_ABOVE and len(boxes) == 0     # too doubtful to look again


@pytest.mark.caffe
def test_prune_keeps_the_most_used_channels(caffe, tmp_path):
    """snet_training.prune copies S-Net weights of the same widths unchanged, and into a
    narrower net keeps, per layer, the channels with the largest product of their filter's
    and the next layer's L1 norms, sliced consistently through the chain (each kept filter
    reads the kept channels of the layer before; both heads read conv6's)."""
    src = bundled("snet") / "snet.caffemodel"
    if not src.is_file():
        pytest.skip("models/snet not trained yet")
    wide = caffe.Net(str(bundled("snet") / "snet.prototxt"), str(src), caffe.TEST)
    deploy = tmp_path / "same.prototxt"
    deploy.write_text(snet.net_text(False))
    same = caffe.Net(str(deploy), caffe.TEST)
    assert snet_training.prune(same, src) == []
    for name in wide.params:
        for a, b in zip(same.params[name], wide.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    c1, c2, c3, c4 = snet.CHANNELS
    deploy.write_text(snet.net_text(False, channels=(c1, c2, c3 - 8, c4 - 8)))
    narrow = caffe.Net(str(deploy), caffe.TEST)
    assert snet_training.prune(narrow, src) == [f"conv{i} {w} -> {w - 8}" for i, w in
                                               ((3, c3), (4, c4), (5, c4), (6, c4))]
    kept_in = np.arange(c2)

    def weights(name):   # as prune reads them from the file: float64
        return wide.params[name][0].data.astype(np.float64)
    for i, name in enumerate(snet_training.TRUNK[2:], start=2):
        w = weights(name)[:, kept_in]
        after = (np.concatenate([weights(h) for h in snet_training.HEADS])
                 if name == "conv6" else weights(snet_training.TRUNK[i + 1]))
        use = np.abs(w).sum(axis=(1, 2, 3)) * np.abs(after).sum(axis=(0, 2, 3))
        kept = np.sort(np.argsort(-use)[:len(use) - 8])
        np.testing.assert_array_equal(narrow.params[name][0].data, w[kept])
        np.testing.assert_array_equal(narrow.params[name][1].data, wide.params[name][1].data[kept])
        kept_in = kept
    for head in snet_training.HEADS:
        np.testing.assert_array_equal(narrow.params[head][0].data,
                                      wide.params[head][0].data[:, kept_in])
    # independently of the ranking's arithmetic: a channel that nothing feeds is dropped
    wide.params["conv4"][0].data[5] = 0
    wide.params["conv4"][1].data[5] = 0
    wide.save(str(tmp_path / "dead.caffemodel"))
    deploy.write_text(snet.net_text(False, channels=(c1, c2, c3, c4 - 1)))
    one_less = caffe.Net(str(deploy), caffe.TEST)
    assert snet_training.prune(one_less, tmp_path / "dead.caffemodel")[0] == f"conv4 {c4} -> {c4 - 1}"
    assert np.abs(one_less.params["conv4"][0].data).sum(axis=(1, 2, 3)).min() > 0
    deploy.write_text(snet.net_text(False, channels=(c1, c2, c3 + 8, c4)))
    with pytest.raises(ValueError, match="conv3"):
        snet_training.prune(caffe.Net(str(deploy), caffe.TEST), src)


@pytest.mark.caffe
def test_teacher_targets_are_the_teacher_s_outputs(caffe):
    """snet_training.teach (distillation, --teacher): the soft labels are the teacher S-Net's
    face probabilities, the regression targets its regression at the cells whose
    probability reaches the proposal threshold, masked (zero) elsewhere."""
    folder = shipped_or_skip()
    teacher = caffe.Net(str(folder / "snet.prototxt"), str(folder / "snet.caffemodel"), caffe.TEST)
    import skimage.data
    rng = np.random.default_rng(3)
    data = rng.uniform(-1, 1, (3, 1, 64, 64)).astype(np.float32)
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[0:300, 80:380]
    data[0, 0] = (cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA) - snet.MEAN) * snet.SCALE
    label, target, mask = snet_training.teach(teacher, data)
    reference = caffe.Net(str(folder / "snet.prototxt"), str(folder / "snet.caffemodel"), caffe.TEST)
    reference.blobs["data"].reshape(*data.shape)
    reference.reshape()
    reference.blobs["data"].data[...] = data
    out = reference.forward()
    np.testing.assert_array_equal(label, out["prob"])
    on = out["prob"] >= snet.PROPOSAL_THRESHOLD
    assert on[0].any()   # the face
    assert mask.shape == target.shape == out["reg"].shape
    np.testing.assert_array_equal(mask, np.repeat(on, snet.N_REG, axis=1).astype(np.float32))
    np.testing.assert_array_equal(target[mask == 1], out["reg"][mask == 1])
    assert not target[mask == 0].any()


@pytest.mark.caffe
@pytest.mark.slow
def test_train_snet_resumes_and_writes_a_model(tmp_path, python_exe):
    """tools/train_snet.py on a few synthetic labelled images: snapshots, a restart resumes
    from the last one, and the written model loads in OpenCV with its model.json."""
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for i in range(3):
        image = rng.integers(0, 255, (120, 160), dtype=np.uint8)
        box = np.array([40.0, 30.0, 90.0, 80.0]) + i * 5
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
        rows.append(snet_training.label_row(i, 1, box, 0.99, (box[:2] + box[2:]) / 2 + FIVE * 50))
    np.savez(tmp_path / "labels.npz", rows=np.array(rows), images=np.array(paths))
    cmd = [python_exe, REPO / "tools" / "train_snet.py", "--labels", tmp_path / "labels.npz",
           "--run", tmp_path / "run", "--batch", "4", "--snapshot", "10"]
    first = run(cmd + ["--iters", "20"])
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run" / "snet_iter_20.solverstate").is_file()
    second = run(cmd + ["--iters", "30", "--out", tmp_path / "model"])
    assert second.returncode == 0, second.stderr
    assert "resumed from snet_iter_20.solverstate" in second.stdout
    assert not (tmp_path / "run" / "snet_iter_20.solverstate").exists()
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["iters"] == 30
    net = snet.SNetNet(tmp_path / "model")
    assert net.proposals(rng.integers(0, 255, (100, 100), dtype=np.uint8), 20,
                         threshold=0.0).shape[1] == 5
    # a narrower S-Net pruned from that one and distilled from it (--channels, --init, --teacher)
    small = run(cmd[:5] + [tmp_path / "small", "--batch", "4", "--iters", "5", "--channels",
                           "8,16,16,16", "--init", tmp_path / "model" / "snet.caffemodel",
                           "--teacher", tmp_path / "model", "--out", tmp_path / "small_model"])
    assert small.returncode == 0, small.stderr
    assert f"pruned: conv3 {snet.CHANNELS[2]} -> 16" in small.stdout
    meta = json.loads((tmp_path / "small_model" / "model.json").read_text())
    assert meta["channels"] == [8, 16, 16, 16] and "distilled" in meta["teacher"]
    assert snet.SNetNet(tmp_path / "small_model").proposals(np.zeros((64, 64), np.uint8), 20) \
        .shape[1] == 5   # loads and runs in OpenCV
    bad = run(cmd + ["--iters", "5", "--channels", "8,16"])
    assert bad.returncode == 2 and "four positive widths" in bad.stderr
    broken = tmp_path / "bad.npz"
    np.savez(broken, rows=np.array(rows), images=np.array([str(tmp_path / "gone.png")] * 3))
    bad = run(cmd[:3] + [broken] + cmd[4:] + ["--iters", "5"])
    assert bad.returncode != 0 and "gone.png" in bad.stderr + bad.stdout


def test_validation_faces_are_never_training_faces():
    """The detector validation sets' MTFL faces (framed, rolled) and S-Net's training faces
    are disjoint and together all 10,000; asking for more than a pool holds is an error."""
    if not (SHARED_DATA / "MTFL" / "training.txt").is_file():
        pytest.skip("needs ../shared/data/MTFL")
    from tcdcn.data.datasets import read_mtfl
    train = read_mtfl(SHARED_DATA / "MTFL" / "training.txt", SHARED_DATA / "MTFL",
                      check_images=False)
    framed, rolled = detector_sets.validation_faces(train)
    learnt = detector_sets.training_faces(SHARED_DATA)
    keys = [{s.source for s in part} for part in (framed, rolled, learnt)]
    assert [len(k) for k in keys] == [detector_sets.FRAMED_POOL, detector_sets.ROLLED_POOL, len(train) - detector_sets.HELD_OUT]
    assert not (keys[0] & keys[1]) and not ((keys[0] | keys[1]) & keys[2])
    assert len(keys[0] | keys[1] | keys[2]) == len(train)
    few, _ = detector_sets.validation_faces(train, 8, 0)
    assert {s.source for s in few} <= keys[0]
    with pytest.raises(ValueError, match="at most"):
        detector_sets.validation_faces(train, detector_sets.FRAMED_POOL + 1, 0)
