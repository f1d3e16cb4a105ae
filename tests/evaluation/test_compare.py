"""Two models face by face (tcdcn.evaluation.compare, tools/compare_models.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import REPO


def test_paired_bootstrap_measures_the_difference_and_its_spread():
    from tcdcn.evaluation.compare import paired_bootstrap
    b = np.random.default_rng(0).uniform(2, 8, 200)
    exact = paired_bootstrap(b + 1.0, b)
    assert exact["mean_difference"] == pytest.approx(1.0)
    assert exact["interval_95"] == pytest.approx([1.0, 1.0]) and exact["b_better_on"] == 1.0
    a = b + np.random.default_rng(1).normal(0.5, 1.0, 200)
    noisy = paired_bootstrap(a, b)
    lo, hi = noisy["interval_95"]
    assert lo < noisy["mean_difference"] < hi and 0.2 < hi - lo < 0.6   # about 4 sd / sqrt(200)
    assert paired_bootstrap(b, a)["mean_difference"] == pytest.approx(-noisy["mean_difference"])


def test_per_face_errors_average_to_evaluate_s_nme(dataset):
    """The per-face NMEs are evaluate()'s, face by face: their mean is its nme_mean."""
    from tcdcn.data.datasets import load_samples
    from tcdcn.evaluation.compare import per_face_nme
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    samples, _, _ = load_samples("mtfl", dataset)
    model = LandmarkModel(REPO / "models" / "tcdcn_5pt", backend="opencv")
    per_face = per_face_nme(model, samples)
    assert per_face.shape == (len(samples),) and np.all(per_face > 0)
    assert per_face.mean() == pytest.approx(evaluate(model, samples, "landmarks")["nme_mean"])
    with pytest.raises(ValueError, match="found faces"):
        per_face_nme(model, samples, "detector")


def test_pooled_bootstrap_weighs_each_split_equally_and_reports_their_spread():
    from tcdcn.evaluation.compare import pooled_bootstrap
    rng = np.random.default_rng(0)
    b1, b2 = rng.uniform(2, 8, 100), rng.uniform(2, 8, 300)
    exact = pooled_bootstrap([(b1 + 1.0, b1), (b2 + 3.0, b2)])
    # the mean of the per-split means (2), not of all faces (2.5)
    assert exact["mean_difference"] == pytest.approx(2.0)
    assert exact["interval_95"] == pytest.approx([2.0, 2.0])
    assert exact["per_split"] == pytest.approx([1.0, 3.0])
    assert exact["spread_across_splits"] == pytest.approx(np.sqrt(2))
    assert exact["faces"] == [100, 300] and exact["splits"] == 2
    noisy = pooled_bootstrap([(b1 + rng.normal(0.3, 1, 100), b1), (b2 + rng.normal(0.3, 1, 300), b2)])
    lo, hi = noisy["interval_95"]
    one = pooled_bootstrap([(b1 + rng.normal(0.3, 1, 100), b1)])
    assert lo < noisy["mean_difference"] < hi and one["spread_across_splits"] is None
    # two splits narrow the interval against the smaller one alone
    assert hi - lo < one["interval_95"][1] - one["interval_95"][0]
    with pytest.raises(ValueError):
        pooled_bootstrap([(np.array([]), np.array([]))])
