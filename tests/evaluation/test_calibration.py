"""Attribute calibration (tcdcn.evaluation.calibration, tools/calibrate_attributes.py):
temperature scaling finds a known temperature, the ECE tells calibrated from overconfident,
and the API applies model.json's temperatures without changing a label."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.helpers import REPO


def sampled(t_true: float, n: int = 20000, k: int = 3, seed: int = 0):
    """Probabilities whose labels are drawn from the same logits divided by t_true."""
    from tcdcn.landmarks import with_temperature
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = with_temperature(probs, t_true)
    labels = np.array([rng.choice(k, p=p) for p in truth])
    return probs, labels


@pytest.mark.parametrize("t_true", [0.6, 1.0, 2.0])
def test_fit_temperature_recovers_a_known_temperature(t_true):
    from tcdcn.evaluation.calibration import fit_temperature
    probs, labels = sampled(t_true)
    assert fit_temperature(probs, labels) == pytest.approx(t_true, rel=0.08)


def test_ece_tells_calibrated_from_overconfident():
    from tcdcn.evaluation.calibration import reliability
    from tcdcn.landmarks import with_temperature
    probs, labels = sampled(2.0)   # the labels are less certain than the probabilities say
    over = reliability(probs, labels)["ece"]
    fixed = reliability(with_temperature(probs, 2.0), labels)["ece"]
    assert over > 5 and fixed < 1.5
    bins = reliability(probs, labels)["bins"]
    assert sum(b["faces"] for b in bins) == len(labels)


def test_the_api_applies_the_temperatures_without_changing_a_label(tmp_path, astronaut):
    from tcdcn.api import Detector
    from tcdcn.landmarks import with_temperature
    meta = json.loads((REPO / "models" / "tcdcn_5pt" / "model.json").read_text())
    assert set(meta["attribute_temperature"]) == set(meta["attributes"])
    plain = tmp_path / "plain"
    shutil.copytree(REPO / "models" / "tcdcn_5pt", plain)
    del meta["attribute_temperature"]
    (plain / "model.json").write_text(json.dumps(meta))
    cal = Detector(backend="opencv")(astronaut)[0].attributes
    raw_det = Detector(plain, backend="opencv")
    raw = raw_det(astronaut)[0].attributes
    temps = json.loads((REPO / "models" / "tcdcn_5pt" / "model.json").read_text())["attribute_temperature"]
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    crops, _ = raw_det.model.crops(grey, np.array([raw_det(astronaut)[0].box]))
    out = raw_det.model.forward(crops)
    for task, (label, p) in cal.items():
        assert label == raw[task][0]
        expect = with_temperature(out[f"{task}_prob"], temps[task])[0].max()
        assert p == pytest.approx(expect, abs=1e-6) and p != pytest.approx(raw[task][1], abs=1e-9)


def test_ece_noise_floor_brackets_a_calibrated_model_and_not_an_overconfident_one():
    from tcdcn.evaluation.calibration import ece_noise_floor, reliability
    from tcdcn.landmarks import with_temperature
    probs, labels = sampled(1.0, n=1000)          # calibrated by construction
    floor = ece_noise_floor(probs, draws=100)
    assert 0 < floor["median"] <= floor["p90"] < 6
    # the calibrated model's own ECE lies within the floor's spread; a sharpened copy's not
    assert reliability(probs, labels)["ece"] < 2 * floor["p90"]
    sharp = with_temperature(probs, 0.4)
    assert reliability(sharp, labels)["ece"] > 2 * ece_noise_floor(sharp, draws=100)["p90"]
    # more faces: a lower floor
    big, _ = sampled(1.0, n=8000)
    assert ece_noise_floor(big, draws=50)["median"] < floor["median"]
