"""Per-point uncertainty (issue 35): the rank statistics evaluate reports, the conversion
of the net's log-scales into pixels and a quality score, and the Face fields."""
from __future__ import annotations

import numpy as np
import pytest


def test_ranks_spearman_auroc_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    from tcdcn.evaluation.metrics import auroc, ranks, spearman
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    b = a + rng.normal(size=300)
    a[::7] = a[0]                                    # ties
    np.testing.assert_allclose(ranks(a), stats.rankdata(a))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    positive = b > 1
    u = stats.mannwhitneyu(a[positive], a[~positive]).statistic
    assert auroc(a, positive) == pytest.approx(u / (positive.sum() * (~positive).sum()))


def test_auroc_extremes_and_undefined():
    from tcdcn.evaluation.metrics import auroc, spearman
    scores = np.arange(10.0)
    assert auroc(scores, scores >= 7) == 1.0
    assert auroc(-scores, scores >= 7) == 0.0
    assert auroc(np.ones(10), scores >= 7) == 0.5          # all tied: chance
    assert auroc(scores, np.zeros(10, bool)) is None       # no failures: undefined
    assert spearman(np.ones(5), scores[:5]) is None
    assert spearman(scores[:2], scores[:2]) is None


def test_point_uncertainty_in_pixels():
    from tcdcn.landmarks import point_uncertainty
    # a crop matrix that halves: 0.5 crop pixels per image pixel
    m = np.array([[0.5, 0, 3], [0, 0.5, -2], [0, 0, 1]])
    logscale = np.log([0.01, 0.01, 0.02]).tolist() + [-np.inf]   # 2 points, crop units
    got = point_uncertainty(logscale, "laplace", 40, m)
    # 0.01 crop units = 0.4 crop px = 0.8 image px per coordinate
    np.testing.assert_allclose(got, [np.hypot(0.8, 0.8), np.hypot(1.6, 0.0)])
    gauss = point_uncertainty(logscale, "gaussian", 40, m, factor=2.0)
    np.testing.assert_allclose(gauss, got * 2 * np.sqrt(2 / np.pi))
    with pytest.raises(ValueError, match="laplace or gaussian"):
        point_uncertainty(logscale, "cauchy", 40, m)


def test_quality_from_predicted_nme():
    from tcdcn.landmarks import FAILURE_NME, expected_nme, quality_from
    pts = np.array([[100.0, 100], [200, 100], [150, 150], [120, 190], [180, 190]])
    u = np.full(5, 5.0)                                  # 5 px over an eye distance of 100
    assert expected_nme(u, pts) == pytest.approx(0.05)
    assert quality_from(u, pts) == pytest.approx(1 - 0.05 / FAILURE_NME)
    assert quality_from(u * 10, pts) == 0.0                 # predicted failure
    assert quality_from(u * 0, pts) == 1.0


def test_face_dict_carries_uncertainty_only_when_present():
    from tcdcn.face import Face
    pts = np.array([[100.0, 100], [200, 100], [150, 150], [120, 190], [180, 190]])
    plain = Face(box=np.array([80.0, 60, 220, 230]), score=1.0, landmarks=pts)
    assert "uncertainty" not in plain.as_dict() and "quality" not in plain.as_dict()
    face = Face(box=plain.box, score=1.0, landmarks=pts, uncertainty=np.arange(5.0) + 0.123,
                quality=0.87654)
    d = face.as_dict()
    assert d["uncertainty"] == [0.12, 1.12, 2.12, 3.12, 4.12]
    assert d["quality"] == 0.8765


def test_uncertainty_report_ranks_errors():
    from tcdcn.evaluation.metrics import per_face, uncertainty_report
    from tcdcn.schemes import SCHEMES
    scheme = SCHEMES["5pt"]
    rng = np.random.default_rng(1)
    gt = np.tile(np.array([[100.0, 100], [200, 100], [150, 150], [120, 190], [180, 190]]),
                 (200, 1, 1))
    sd = rng.uniform(0.5, 20, 200)                          # each face's true error scale
    pred = gt + rng.normal(size=gt.shape) * sd[:, None, None]
    pred[5] = np.nan                                        # a miss: left out
    good = uncertainty_report(pred, gt, scheme, np.repeat(sd[:, None], 5, 1) / 100, sd / 100)
    bad = uncertainty_report(pred, gt, scheme, np.ones((200, 5)), -sd / 100)
    assert good["n_faces"] == 199
    rows = per_face(pred, gt, scheme, sd / 100)
    assert len(rows) == 200 and rows[5] == {"nme": None, "uncertainty": None}
    assert rows[0]["uncertainty"] == round(sd[0], 3)
    assert rows[0]["nme"] == pytest.approx(100 * np.linalg.norm(pred[0] - gt[0], axis=1).mean()
                                           / 100, abs=1e-3)
    assert per_face(pred, gt, scheme)[0]["uncertainty"] is None
    assert good["n_failures"] > 10
    assert good["spearman_face"] > 0.8 and good["auroc_failures"] > 0.9
    assert bad["spearman_face"] < -0.8 and bad["auroc_failures"] < 0.1
