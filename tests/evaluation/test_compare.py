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
